"""scripts/run_seg.py end to end, launched with accelerate as a user would, on a tiny VOC tree."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hf_segcompare.config.arguments import DataArguments, ModelArguments, parse_args
from hf_segcompare.evaluation.cost import flops_per_image
from hf_segcompare.labels import VOC_CLASSES
from hf_segcompare.models import count_parameters, create_model, list_models
from hf_segcompare.pipeline.run import run

from .conftest import TINY_TREE, free_port, launch, run_seg_in_process

TINY_MODELS = [name for name in list_models(include_test_variants=True) if name.endswith("-tiny")]


def _voc_args(voc_tree, output_dir) -> list[str]:
    # The demo recipe: the published ones train 512 px crops at batch 16, for VOC.
    return ["--recipe", "demo", "--dataset_name", "voc", "--data_dir", str(voc_tree), "--output_dir", str(output_dir)]


def _assert_complete(results: dict, model: str) -> None:
    assert results["model"] == model
    assert results["parameters"] == count_parameters(create_model(model))
    train = results["train"]
    assert train["wall_time_s"] > 0 and train["samples_per_second"] > 0 and train["steps"] == 4
    assert results["peak_memory"]["bytes"] > 50 * 2**20
    assert results["peak_memory"]["kind"] in ("cpu_peak_rss", "cuda_max_allocated")
    assert results["dataset"]["train_samples"] == TINY_TREE["num_train"]
    assert results["dataset"]["validation_samples"] == TINY_TREE["num_val"]
    assert results["dataset"]["eval_size"] == 64 and results["dataset"]["crop_size"] == 64
    assert results["dataset"]["eval_padding"] == "batch" and "mixed_precision" in results["speed"]
    assert len(results["evaluations"]) == 2  # --eval_steps 2 over 4 steps
    final = results["final_eval"]
    assert 0.0 <= final["eval_mean_iou"] <= 1.0 and 0.0 <= final["eval_overall_accuracy"] <= 1.0
    assert sum(key.startswith("eval_iou_") for key in final) == 21
    assert results["train_loss"] and all(entry["loss"] > 0 for entry in results["train_loss"])
    assert results["environment"]["torch"] and results["args"]["training"]["hub_token"] == "<HUB_TOKEN>"
    inference = results["inference"]  # what the trained model costs, measured by the run
    assert inference["input_size"] == [64, 64] and inference["batch_size"] == 8
    assert inference["flops_per_image"] == flops_per_image(create_model(model), 64, 64)
    assert inference["latency_ms_batch_1"] > 0 and inference["throughput_images_per_s"] > 0


@pytest.mark.parametrize("model", TINY_MODELS)
def test_each_model_trains_and_writes_complete_results(model, voc_tree, tmp_path, capsys):
    """Through run_seg's main() in this process (no launcher and interpreter start-up to wait for);
    `accelerate launch` as a user runs it: tests/test_package.py and the two-process tests here."""
    output_dir = tmp_path / "out"
    args = ["--model", model, "--from_scratch", *_voc_args(voc_tree, output_dir), "--max_steps", "4",
            "--per_device_train_batch_size", "4", "--eval_strategy", "steps", "--eval_steps", "2",
            "--logging_steps", "1", "--save_strategy", "no"]
    status, stderr, stdout = run_seg_in_process(args, capsys)
    assert status == 0, stderr[-3000:]
    _assert_complete(json.loads((output_dir / "results.json").read_text()), model)
    assert (output_dir / "model.safetensors").exists() and (output_dir / "config.json").exists()
    assert f"{model}: " in stdout and "validation mean_iou" in stdout


@pytest.fixture(scope="module")
def trained_checkpoint(voc_tree, tmp_path_factory):
    """segformer-tiny trained long enough to predict several classes (so the metric is not trivial),
    evaluated once at the end."""
    work = tmp_path_factory.mktemp("trained")
    output_dir = work / "segformer-tiny"
    completed = launch(
        ["--model", "segformer-tiny", "--from_scratch", *_voc_args(voc_tree, output_dir), "--max_steps", "40",
         "--per_device_train_batch_size", "4", "--learning_rate", "3e-3", "--eval_strategy", "no",
         "--do_eval", "true", "--save_strategy", "no"],
        work,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return output_dir


def test_two_processes_evaluate_exactly_like_one(trained_checkpoint, voc_tree, tmp_path):
    """7 validation images, eval batch 3: each process sees 4 (3 + a partial 1), one of the 8 a duplicate to drop.

    The two-process evaluation runs as the README shows it, into the trained folder itself: it adds
    its own record and leaves the training record alone. The flip evaluation takes the per-image
    protocol path, which must split over processes as exactly as the batched one."""
    training_record = (trained_checkpoint / "results.json").read_bytes()
    curve = (trained_checkpoint / "learning_curve.png").read_bytes()
    finals = {}
    for processes in (1, 2):
        output_dir = tmp_path / "eval1" if processes == 1 else trained_checkpoint
        completed = launch(
            ["--model", "segformer-tiny", "--model_name_or_path", str(trained_checkpoint), "--do_train", "false",
             *_voc_args(voc_tree, output_dir), "--per_device_eval_batch_size", "3", "--eval_flip"],
            tmp_path, num_processes=processes,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        results = json.loads((output_dir / "eval_voc_validation.json").read_text())
        assert f"results: {output_dir / 'eval_voc_validation.json'}" in completed.stdout
        assert results["environment"]["num_processes"] == processes
        assert results["train"] is None
        finals[processes] = {f"{prefix}{k}": v for prefix, scores in (("", results["final_eval"]),
                                                                      ("flip ", results["augmented_eval"]))
                             for k, v in scores.items()
                             if k.startswith("eval_") and k not in ("eval_runtime", "eval_samples_per_second",
                                                                     "eval_steps_per_second")}
    assert results["environment"]["distributed_type"] == "DistributedType.MULTI_CPU"
    assert (trained_checkpoint / "results.json").read_bytes() == training_record
    assert (trained_checkpoint / "learning_curve.png").read_bytes() == curve
    card = (trained_checkpoint / "README.md").read_text()
    assert "- Optimizer `" in card
    assert "`eval_voc_validation.json` | `voc` | single-scale, native resolution, whole image | 7 | 2 |" in card
    assert "`eval_voc_validation.json` | `voc` | flip, native resolution, whole image | 7 | 2 |" in card
    assert not (tmp_path / "eval1" / "results.json").exists()
    present = [k for k, v in finals[1].items() if k.startswith("eval_iou_") and v is not None]
    assert len(present) >= 3, "the checkpoint should predict several classes"
    for key in ("eval_mean_iou", "eval_mean_accuracy", "eval_overall_accuracy", "eval_boundary_iou",
                *present, *(key.replace("eval_iou_", "eval_boundary_iou_") for key in present)):
        assert finals[2][key] == finals[1][key], key
        assert finals[2][f"flip {key}"] == finals[1][f"flip {key}"], key
    # The per-image counts (interval, pairing) are the same file, row for row; so is the interval.
    # The calibration sums add softmax probabilities, and accelerate completes the last batch of a
    # two-process evaluation with repeated images: that batch runs at another batch size, whose CPU
    # kernels may round the logits differently in the last bits. Every count is exact; the ECE
    # agrees to float precision.
    one = np.load(tmp_path / "eval1" / "eval_voc_validation.per_image.npz")
    two = np.load(trained_checkpoint / "eval_voc_validation.per_image.npz")
    assert sorted(one.files) == sorted(two.files) and len(one["ids"]) == 7
    for name in one.files:
        if name == "calibration":
            assert np.array_equal(one[name][:, [0, 2]], two[name][:, [0, 2]])  # pixels, correct pixels per bin
            assert np.allclose(one[name], two[name], rtol=1e-6, atol=0)
        else:
            assert np.array_equal(one[name], two[name]), name
    for prefix in ("", "flip "):
        assert finals[2][f"{prefix}eval_ece"] == pytest.approx(finals[1][f"{prefix}eval_ece"], rel=1e-6)
    one_process = json.loads((tmp_path / "eval1" / "eval_voc_validation.json").read_text())
    assert one_process["bootstrap"] == results["bootstrap"]
    assert results["augmented_eval"]["protocol"]["name"] == "flip"


def test_unknown_model_exits_2_listing_the_valid_names(tmp_path, capsys):
    status, stderr, _ = run_seg_in_process(["--model", "pspnet", "--from_scratch"], capsys)
    assert status == 2
    assert "pspnet" in stderr
    for name in list_models():
        assert name in stderr


def test_without_from_scratch_it_stops_at_once_and_says_what_to_pass(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    status, stderr, _ = run_seg_in_process(["--model", "unet", "--output_dir", str(tmp_path / "out")], capsys)
    assert status == 2
    assert "--from_scratch" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("layout", ["missing", "no_split_list"])
def test_bad_data_folder_fails_before_any_model_is_built(layout, tmp_path, monkeypatch, capsys):
    data_dir = tmp_path / "data"
    if layout == "no_split_list":
        (data_dir / "JPEGImages").mkdir(parents=True)
    expected = str(data_dir) if layout == "missing" else str(data_dir / "ImageSets" / "Segmentation" / "train.txt")

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built before the data was checked")

    monkeypatch.setattr("hf_segcompare.pipeline.run.load_model", no_model)
    model_args, data_args, training_args = parse_args(
        ["--model", "unet", "--from_scratch", "--dataset_name", "voc", "--data_dir", str(data_dir),
         "--output_dir", str(tmp_path / "out")]
    )
    with pytest.raises(FileNotFoundError, match=expected.replace(".", r"\.")):
        run(model_args, data_args, training_args)
    # And through the script: exit status 2, the path in the message.
    status, stderr, _ = run_seg_in_process(["--model", "unet", "--from_scratch", "--dataset_name", "voc", "--data_dir",
                                            str(data_dir), "--output_dir", str(tmp_path / "out")], capsys)
    assert status == 2 and expected in stderr


def test_recipe_fills_defaults_and_the_command_line_wins():
    _, _, defaults = parse_args(["--model", "segformer-b0", "--from_scratch"])
    assert defaults.learning_rate == 2e-3 and defaults.output_dir == "outputs/segformer-b0"
    assert defaults.do_train and defaults.do_eval
    _, _, overridden = parse_args(["--model", "segformer-b0", "--from_scratch", "--learning_rate", "1e-4",
                                   "--output_dir", "elsewhere"])
    assert overridden.learning_rate == 1e-4 and overridden.output_dir == "elsewhere"
    _, _, unet = parse_args(["--model", "unet-tiny", "--from_scratch"])
    assert unet.learning_rate == 1e-3 and unet.output_dir == "outputs/unet-tiny"


def test_checkpoint_of_another_model_is_refused(trained_checkpoint, voc_tree, tmp_path):
    model_args = ModelArguments(model="vit-tiny", model_name_or_path=str(trained_checkpoint))
    _, _, training_args = parse_args(["--model", "vit-tiny", "--output_dir", str(tmp_path)])
    data_args = DataArguments(dataset_name="voc", data_dir=str(voc_tree))
    with pytest.raises(ValueError, match="holds a segformer-tiny model but --model is vit-tiny"):
        run(model_args, data_args, training_args)


def test_an_invalid_sample_stops_the_run_naming_it(voc_tree, tmp_path, capsys):
    import shutil

    from PIL import Image

    data = tmp_path / "data"
    shutil.copytree(voc_tree, data)
    mask_path = data / "VOCdevkit/VOC2012/SegmentationClass/synth_000002.png"
    mask = np.array(Image.open(mask_path))
    mask[0, 0] = 99
    Image.fromarray(mask).save(mask_path)
    args = ["--model", "unet", "--from_scratch", *_voc_args(data, tmp_path / "out")]
    status, stderr, _ = run_seg_in_process([*args, "--cache_dir", str(tmp_path / "cache")], capsys)
    assert status == 2
    assert "train id 'synth_000002'" in stderr and "mask values [99]" in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "out").exists()


def test_voc_without_a_copy_downloads_and_offline_fails_fast_saying_where_to_put_it(tmp_path, capsys):
    import time

    closed_port = free_port()
    started = time.monotonic()
    status, stderr, _ = run_seg_in_process(["--model", "unet", "--from_scratch", "--dataset_name", "voc",
                                            "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "o"),
                                            "--voc_url", f"http://127.0.0.1:{closed_port}/VOCtrainval_11-May-2012.tar"],
                                           capsys)
    assert status == 2
    assert f"put it at {tmp_path / 'cache' / 'voc' / 'VOCtrainval_11-May-2012.tar'}" in stderr
    assert "Traceback" not in stderr
    assert time.monotonic() - started < 10


def test_a_parquet_dataset_with_custom_columns_trains(voc_tree, tmp_path, capsys):
    from hf_segcompare.data import load_voc

    reference = load_voc(voc_tree, cache_dir=tmp_path / "cache")
    folder = tmp_path / "parquet"
    folder.mkdir()
    for split in ("train", "validation"):
        reference[split].rename_columns({"image": "img", "label": "mask"}).to_parquet(folder / f"{split}.parquet")
    # The masks hold VOC's class ids; a dataset of one's own says so (here: its id2label.json).
    (folder / "id2label.json").write_text(json.dumps(dict(enumerate(VOC_CLASSES))))
    output_dir = tmp_path / "out"
    status, stderr, _ = run_seg_in_process(
        [
            "--model", "segformer-tiny", "--from_scratch", "--recipe", "demo", "--dataset_name", str(folder),
            "--image_column_name", "img", "--label_column_name", "mask", "--output_dir", str(output_dir),
            "--max_steps", "2", "--save_strategy", "no", "--cache_dir", str(tmp_path / "cache"),
        ],
        capsys,
    )
    assert status == 0, stderr[-3000:]
    results = json.loads((output_dir / "results.json").read_text())
    assert results["dataset"]["name"] == str(folder)
    assert results["dataset"]["class_names"] == list(VOC_CLASSES)
    assert results["dataset"]["label_source"] == str(folder / "id2label.json")
    assert results["dataset"]["validation_samples"] == TINY_TREE["num_val"]
    assert results["final_eval"]["eval_mean_iou"] is not None


def test_the_same_seed_repeats_a_run_exactly(voc_tree, tmp_path):
    """The model is built after seeding: two runs with one --seed end with identical weights."""
    from safetensors.torch import load_file

    weights = []
    for attempt in ("a", "b"):
        output_dir = tmp_path / attempt
        run(*parse_args(["--model", "unet-tiny", "--from_scratch", *_voc_args(voc_tree, output_dir), "--max_steps", "2",
                         "--per_device_train_batch_size", "4", "--eval_strategy", "no", "--save_strategy", "no",
                         "--seed", "7", "--cache_dir", str(tmp_path / "cache")]))
        weights.append(load_file(output_dir / "model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


def test_a_warmup_as_long_as_the_run_stops_before_training_saying_what_to_pass(voc_tree, tmp_path):
    """transformers' polynomial schedule would divide by zero at the last step, after all the training."""
    from hf_segcompare.config.arguments import UsageError

    args = parse_args(["--model", "segformer-tiny", "--from_scratch", *_voc_args(voc_tree, tmp_path / "out"),
                       "--max_steps", "3", "--warmup_steps", "3", "--eval_strategy", "no", "--save_strategy", "no",
                       "--cache_dir", str(tmp_path / "cache")])
    with pytest.raises(
        UsageError, match=r"warm-up \(3 steps\) is as long as the whole run \(3 steps\).*--warmup_steps"
    ):
        run(*args)
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_two_machines_train_and_evaluate_and_write_the_results_once(voc_tree, tmp_path):
    """Two accelerate "machines" on 127.0.0.1, one process each, as a multi-node job runs."""
    import subprocess
    import sys

    from .conftest import RUN_SEG, script_env

    port = free_port()
    machines = []
    for rank in (0, 1):
        home = tmp_path / f"machine{rank}"  # each machine its own disk: caches and output folder
        home.mkdir()
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "2",
                   "--machine_rank", str(rank), "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
                   "--num_processes", "2", "--mixed_precision", "no", "--dynamo_backend", "no", str(RUN_SEG),
                   "--model", "segformer-tiny", "--from_scratch", *_voc_args(voc_tree, home / "out"),
                   "--max_steps", "4", "--logging_steps", "1", "--eval_strategy", "no", "--do_eval", "true",
                   "--save_strategy", "no", "--per_device_eval_batch_size", "3"]
        machines.append(subprocess.Popen(command, cwd=home, env=script_env(home), stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, text=True))
    outputs = [machine.communicate(timeout=600) for machine in machines]
    for machine, (_, stderr) in zip(machines, outputs):
        assert machine.returncode == 0, stderr[-3000:]

    results = json.loads((tmp_path / "machine0" / "out" / "results.json").read_text())
    assert results["environment"]["num_processes"] == 2
    assert results["environment"]["distributed_type"] == "DistributedType.MULTI_CPU"
    sync = results["training_setup"]["sync_batchnorm"]  # CPU processes: torch cannot synchronise them
    assert sync["enabled"] is False and sync["layers"] > 0 and "each of the 2 CPU processes" in sync["reason"]
    assert results["train"]["steps"] == 4 and len(results["train_loss"]) == 4
    assert all(entry["loss"] > 0 for entry in results["train_loss"])
    # Written once, by the main process of machine 0: nothing on machine 1, and one summary line.
    assert not [path.name for path in (tmp_path / "machine1" / "out").glob("*") if not path.name.startswith(".")]
    assert "validation mean_iou" in outputs[0][0] and "validation mean_iou" not in outputs[1][0]

    # The same weights evaluated by one process give the same figures.
    run(*parse_args(["--model", "segformer-tiny", "--model_name_or_path", str(tmp_path / "machine0" / "out"),
                     "--do_train", "false", *_voc_args(voc_tree, tmp_path / "one"),
                     "--cache_dir", str(tmp_path / "cache")]))
    single = json.loads((tmp_path / "one" / "eval_voc_validation.json").read_text())["final_eval"]
    for key in ("eval_mean_iou", "eval_mean_accuracy", "eval_overall_accuracy"):
        assert results["final_eval"][key] == single[key], key
