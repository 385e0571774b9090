"""Pretrained starting points from local checkpoints in each format, the input normalisation they
bring with them, and a fast failure offline."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from transformers import SegformerForSemanticSegmentation, SegformerModel, ViTModel

from hf_segcompare.config.arguments import ModelArguments
from hf_segcompare.engine.trainer import SegTrainer
from hf_segcompare.errors import UsageError
from hf_segcompare.labels import VOC_CLASSES, VOC_LABELS
from hf_segcompare.models import create_model, model_normalization
from hf_segcompare.pipeline.loading import load_model

from .conftest import free_port, run_seg_in_process


def _assert_fresh_voc_head(model, head_weight: torch.Tensor):
    assert model.config.id2label == VOC_LABELS.id2label and head_weight.shape[0] == len(VOC_CLASSES)
    assert torch.isfinite(head_weight).all() and 1e-4 < head_weight.float().std() < 10


def test_a_torchvision_resnet_file_loads_into_the_unet_encoder(tmp_path):
    """The torchvision layout (its classifier fc.* included) fits smp's ResNet-50 encoder."""
    torch.manual_seed(1)
    state = torchvision.models.resnet50(weights=None).state_dict()
    path = tmp_path / "resnet50.pth"
    torch.save(state, path)
    model = load_model(ModelArguments(model="unet", pretrained=str(path)), VOC_LABELS)
    loaded = model.smp.encoder.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key
    _assert_fresh_voc_head(model, model.smp.segmentation_head[0].weight)
    assert model.config.pretrained_from == str(path)


def test_an_encoder_safetensors_file_loads_into_a_tiny_cnn(tmp_path):
    torch.manual_seed(1)
    state = {
        key: value.contiguous() for key, value in create_model("deeplabv3plus-tiny").smp.encoder.state_dict().items()
    }
    save_file(state, str(tmp_path / "encoder.safetensors"))
    torch.manual_seed(2)
    model = create_model("deeplabv3plus-tiny", pretrained=str(tmp_path / "encoder.safetensors"))
    for key, value in state.items():
        assert torch.equal(model.smp.encoder.state_dict()[key], value), key
    assert model_normalization(model).mean == (0.485, 0.456, 0.406)  # a bare file states none: the registry's


def _vit_folder(path, mean, std):
    """A ViTModel checkpoint folder whose preprocessor config states `mean`/`std`, as Google's do."""
    source = ViTModel(create_model("vit-tiny").config, add_pooling_layer=False)
    source.save_pretrained(path)
    (path / "preprocessor_config.json").write_text(json.dumps(
        {"image_processor_type": "ViTImageProcessor", "image_mean": mean, "image_std": std}))
    return source


def test_vit_model_folder(tmp_path):
    torch.manual_seed(2)
    source = _vit_folder(tmp_path / "vit", [0.5] * 3, [0.5] * 3)
    model = create_model("vit-tiny", pretrained=str(tmp_path / "vit"))
    for key, value in source.state_dict().items():
        assert torch.equal(model.vit.state_dict()[key], value), key
    _assert_fresh_voc_head(model, model.decode_head.classifier.weight)


def test_a_vit_start_of_mean_and_std_half_is_trained_evaluated_and_saved_with_half(voc_tree, tmp_path, capsys):
    """Google's ViT weights expect mean = std = 0.5: the transforms and the saved processor use it."""
    _vit_folder(tmp_path / "vit", [0.5] * 3, [0.5] * 3)
    model = create_model("vit-tiny", pretrained=str(tmp_path / "vit"))
    from hf_segcompare.data import load_voc

    dataset = load_voc(voc_tree, cache_dir=tmp_path / "arrow")
    trainer = SegTrainer(model, _args(tmp_path), dataset["train"], dataset["validation"])
    sample = dataset["validation"][0]
    pixels = torch.from_numpy(np.asarray(sample["image"].convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
    height, width = pixels.shape[1:]
    evaluated = trainer.eval_dataset[0]["pixel_values"][:, :height, :width]
    assert torch.allclose(evaluated, (pixels - 0.5) / 0.5, atol=1e-6)
    trained = trainer.train_dataset[0]["pixel_values"]
    assert trained.min() >= -1.0 - 1e-6 and trained.max() <= 1.0 + 1e-6  # ImageNet's would reach 2.6

    output = tmp_path / "run"
    status, stderr, _ = run_seg_in_process(["--model", "vit-tiny", "--pretrained", str(tmp_path / "vit"),
                                            "--dataset_name", "voc", "--data_dir", str(voc_tree), "--output_dir",
                                            str(output), "--max_steps", "1", "--do_eval", "false"], capsys)
    assert status == 0, stderr[-2000:]
    saved = json.loads((output / "preprocessor_config.json").read_text())
    assert saved["image_mean"] == [0.5] * 3 and saved["image_std"] == [0.5] * 3
    assert json.loads((output / "results.json").read_text())["normalization"] == {"mean": [0.5] * 3, "std": [0.5] * 3}


def test_the_sources_normalisation_wins_over_the_registrys(tmp_path):
    """A SegFormer start whose preprocessor config states other values than ImageNet's (the registry's)."""
    torch.manual_seed(3)
    SegformerModel(create_model("segformer-tiny").config).save_pretrained(tmp_path / "mit")
    (tmp_path / "mit" / "preprocessor_config.json").write_text(json.dumps({"image_mean": [0.3, 0.4, 0.5],
                                                                            "image_std": [0.2, 0.2, 0.2]}))
    model = create_model("segformer-tiny", pretrained=str(tmp_path / "mit"))
    assert model_normalization(model).mean == (0.3, 0.4, 0.5) and model_normalization(model).std == (0.2, 0.2, 0.2)
    assert create_model("segformer-tiny").config.image_mean == [0.485, 0.456, 0.406]


def _args(tmp_path):
    from hf_segcompare.config.arguments import from_recipe

    return from_recipe("vit-tiny", "demo", output_dir=str(tmp_path / "trainer"))


def test_segformer_checkpoint_with_another_head(tmp_path):
    """A SegFormer segmentation checkpoint (150 ADE20K-like classes): encoder kept, head rebuilt for VOC."""
    torch.manual_seed(3)
    model = create_model("segformer-tiny")
    config = model.config.__class__(**{**model.config.to_dict(), "num_labels": 150,
                                       "id2label": {i: f"c{i}" for i in range(150)},
                                       "label2id": {f"c{i}": i for i in range(150)}})
    source = SegformerForSemanticSegmentation(config)
    source.save_pretrained(tmp_path / "segformer")
    model = create_model("segformer-tiny", pretrained=str(tmp_path / "segformer"))
    for key, value in source.segformer.state_dict().items():
        assert torch.equal(model.segformer.state_dict()[key], value), key
    _assert_fresh_voc_head(model, model.decode_head.classifier.weight)


def test_a_file_of_the_wrong_encoder_is_refused_by_name(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"something.weight": torch.zeros(3)}, path)
    with pytest.raises(UsageError, match=r"--model unet-tiny: .*other\.pth.*not a tu-test_resnet encoder state dict"):
        load_model(ModelArguments(model="unet-tiny", pretrained=str(path)), VOC_LABELS)


@pytest.mark.parametrize("model", ["segformer-b0", "vit", "unet"])
def test_an_unreachable_hub_fails_within_seconds_with_both_ways_out(model, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    started = time.monotonic()
    with pytest.raises(UsageError) as raised:
        load_model(ModelArguments(model=model), VOC_LABELS)
    assert time.monotonic() - started < 10
    message = str(raised.value)
    assert f"--model {model}" in message and "--from_scratch" in message and "local path" in message
    assert {"segformer-b0": "nvidia/mit-b0", "vit": "google/vit-base-patch16-224-in21k", "unet": "imagenet"}[
        model
    ] in message


def test_pipeline_and_segment_agree_on_a_non_square_image(tmp_path, capfd):
    """For all four architectures the saved processor keeps the aspect ratio: `pipeline` and
    `segment` give the same class for every pixel of a 70x45 image."""
    from transformers import pipeline

    from hf_segcompare.evaluation.inference import SegImageProcessor, segment

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (45, 70, 3), dtype=np.uint8))
    for name in ("unet-tiny", "deeplabv3plus-tiny", "vit-tiny", "segformer-tiny"):
        torch.manual_seed(0)
        model = create_model(name).eval()
        folder = tmp_path / name
        model.save_pretrained(folder)
        SegImageProcessor.for_model(model).save_pretrained(folder)
        piped = np.full((45, 70), -1)
        for entry in pipeline("image-segmentation", model=str(folder))(image):
            piped[np.asarray(entry["mask"]) > 0] = model.config.label2id[entry["label"]]
        ours = segment(model, image)
        assert ours.shape == (45, 70) and len(np.unique(ours)) > 1, name
        assert np.array_equal(piped, ours), name
    # The pipeline no longer logs that our registered classes are "not supported" (they are).
    assert "is not supported for image-segmentation" not in capfd.readouterr().err
