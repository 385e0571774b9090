"""scripts/export.py --format onnx: all four architectures export with dynamic batch, height and width,
and onnxruntime predicts what PyTorch predicts on the run's validation images and at other sizes."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime
import torch
from PIL import Image
from transformers import AutoModelForSemanticSegmentation

from hf_segcompare.evaluation.inference import SegImageProcessor, segment
from hf_segcompare.models import list_models
from hf_segcompare.pipeline.export import LogitsAtInputSize

from .conftest import REPO_ROOT, run_script_in_process, run_seg_in_process

EXPORT = REPO_ROOT / "scripts" / "export.py"
TINY_MODELS = [f"{name.split('-')[0]}-tiny" for name in list_models()]


def test_all_four_architectures_export_to_onnx_and_agree_with_pytorch(voc_tree, tmp_path, capsys):
    for name in TINY_MODELS:
        run_dir = tmp_path / name
        # SegFormer under mmsegmentation's protocol: its processor pads to no multiple (1) but to 32 px at least
        protocol = ["--protocol", "mmseg", "--short_side", "64"] if name.startswith("segformer") else []
        status, stderr, _ = run_seg_in_process(
            ["--model", name, "--from_scratch", "--recipe", "demo", "--dataset_name", "voc", "--data_dir",
             str(voc_tree), "--output_dir", str(run_dir), "--max_steps", "1", "--per_device_train_batch_size", "2",
             "--save_strategy", "no", "--do_eval", "false", *protocol], capsys)
        assert status == 0, stderr[-3000:]
        card_before = (run_dir / "README.md").read_text()

        status, stderr, stdout = run_script_in_process(EXPORT, [str(run_dir), "--format", "onnx", "--images", "4"],
                                                       capsys)
        assert status == 0, stderr[-3000:]
        record = json.loads((run_dir / "export.json").read_text())
        assert record["argmax_agreement"] >= 0.999 and record["max_abs_logit_difference"] < 1e-3, (name, record)
        assert record["checked_on"]["images"] == 4
        batch, channels, height, width = record["inputs"]["pixel_values"]
        assert channels == 3 and all(isinstance(axis, str) for axis in (batch, height, width)), record["inputs"]
        card = (run_dir / "README.md").read_text()
        assert card.startswith(card_before.split("## Framework versions")[0].rstrip()[:2000])
        assert "## Export" in card and f"argmax agreement {100 * record['argmax_agreement']:.4f} %" in card

        # the dynamic axes hold: another batch, and sizes of every kind (multiples of 32 or not, 1 px)
        session = onnxruntime.InferenceSession(str(run_dir / "model.onnx"), providers=["CPUExecutionProvider"])
        processor = SegImageProcessor.from_pretrained(run_dir)
        model = AutoModelForSemanticSegmentation.from_pretrained(run_dir).eval()
        wrapped = LogitsAtInputSize(model, processor.padding_fill(), processor.size_divisor, processor.min_size).eval()
        assert (processor.size_divisor, processor.min_size) == ((1, 32) if protocol else (32, 1))
        for shape in ((3, 3, 96, 160), (1, 3, 100, 100), (2, 3, 1, 37), (1, 3, 33, 1)):
            pixel_values = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
            with torch.no_grad():
                expected = wrapped(pixel_values).numpy()
            exported = session.run(None, {"pixel_values": pixel_values.numpy()})[0]
            assert exported.shape == expected.shape == (shape[0], model.config.num_labels, *shape[2:]), shape
            assert (exported.argmax(1) == expected.argmax(1)).mean() >= 0.999, shape
            assert np.abs(exported - expected).max() < 1e-3, shape
        # the graph's argmax is the class map segment() gives, for an image of no multiple of 32 (under the mmseg
        # protocol the graph answers at the resized image's size: its logits are brought back to the image's)
        image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (100, 70, 3), dtype=np.uint8))
        logits = torch.from_numpy(session.run(None, {"pixel_values": processor.normalized(image).numpy()})[0])
        assert logits.shape[-2:] == ((91, 64) if protocol else (100, 70))
        classes = torch.nn.functional.interpolate(logits, size=(100, 70), mode="bilinear").argmax(1)[0].numpy()
        assert (classes == segment(model, image, processor)).mean() >= 0.999


def test_export_refuses_a_folder_without_a_finished_run(tmp_path, capsys):
    status, stderr, _ = run_script_in_process(EXPORT, [str(tmp_path)], capsys)
    assert status == 2 and stderr.startswith(f"error: {tmp_path} has no results.json: pass the output folder")


def test_a_damaged_saved_model_is_one_line_naming_it_in_export_predict_and_evaluation(voc_tree, tmp_path, capsys):
    run_dir = tmp_path / "run"
    status, stderr, _ = run_seg_in_process(
        ["--model", "segformer-tiny", "--from_scratch", "--recipe", "demo", "--dataset_name", "voc", "--data_dir",
         str(voc_tree), "--output_dir", str(run_dir), "--max_steps", "1", "--per_device_train_batch_size", "2",
         "--save_strategy", "no", "--do_eval", "false"], capsys)
    assert status == 0, stderr[-3000:]
    weights = run_dir / "model.safetensors"
    intact = weights.read_bytes()
    for damage in (intact[: len(intact) // 2], np.random.default_rng(0).bytes(len(intact))):
        weights.write_bytes(damage)
        predict = REPO_ROOT / "scripts" / "predict.py"
        for script, argv in ((EXPORT, [str(run_dir)]), (predict, ["--model", str(run_dir), "--input", str(tmp_path)])):
            status, stderr, _ = run_script_in_process(script, argv, capsys)
            lines = stderr.strip().splitlines()
            assert status == 2 and len(lines) == 1, stderr[-3000:]
            assert "model.safetensors" in lines[0] and "cannot be read" in lines[0] and "damaged" in lines[0]
        status, stderr, _ = run_seg_in_process(
            ["--model", "segformer-tiny", "--model_name_or_path", str(run_dir), "--do_train", "false",
             "--dataset_name", "voc", "--data_dir", str(voc_tree), "--output_dir", str(tmp_path / "eval")], capsys)
        assert status == 2 and f"error: --model_name_or_path {run_dir}: its weights cannot be read (model.safetensors" \
            in stderr, stderr[-3000:]
