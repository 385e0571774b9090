"""Pretrained starting points from local checkpoints in each format, and a fast failure offline."""

from __future__ import annotations

import time

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from transformers import SegformerForSemanticSegmentation, ViTModel

from hf_segcompare.data import VOC_CLASSES, id2label
from hf_segcompare.models import create_model
from hf_segcompare.arguments import ModelArguments
from hf_segcompare.models.pretrained import PretrainedUnavailable, load_pretrained_encoder
from hf_segcompare.training import load_model

from .conftest import free_port


def _assert_fresh_voc_head(model, head_weight: torch.Tensor):
    assert model.config.id2label == id2label() and head_weight.shape[0] == len(VOC_CLASSES)
    assert torch.isfinite(head_weight).all() and 1e-4 < head_weight.float().std() < 10


@pytest.mark.parametrize("fmt", [".pth", ".safetensors"])
def test_smp_encoder_state_dict_file(fmt, tmp_path):
    torch.manual_seed(1)
    state = torchvision.models.resnet18(weights=None).state_dict()  # the torchvision layout, fc included
    path = tmp_path / f"resnet18{fmt}"
    torch.save(state, path) if fmt == ".pth" else save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    model = load_model(ModelArguments(model="unet-tiny", pretrained=str(path)), id2label())
    loaded = model.smp.encoder.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key
    _assert_fresh_voc_head(model, model.smp.segmentation_head[0].weight)
    assert model.config.pretrained_from == str(path)


def test_vit_model_folder(tmp_path):
    torch.manual_seed(2)
    model = create_model("vit-tiny")
    source = ViTModel(model.config, add_pooling_layer=False)
    source.save_pretrained(tmp_path / "vit")
    load_pretrained_encoder(model, "vit-tiny", str(tmp_path / "vit"))
    for key, value in source.state_dict().items():
        assert torch.equal(model.vit.state_dict()[key], value), key
    _assert_fresh_voc_head(model, model.decode_head.classifier.weight)


def test_segformer_checkpoint_with_another_head(tmp_path):
    """A SegFormer segmentation checkpoint (150 ADE20K-like classes): encoder kept, head rebuilt for VOC."""
    torch.manual_seed(3)
    model = create_model("segformer-tiny")
    config = model.config.__class__(**{**model.config.to_dict(), "num_labels": 150,
                                       "id2label": {i: f"c{i}" for i in range(150)},
                                       "label2id": {f"c{i}": i for i in range(150)}})
    source = SegformerForSemanticSegmentation(config)
    source.save_pretrained(tmp_path / "segformer")
    load_pretrained_encoder(model, "segformer-tiny", str(tmp_path / "segformer"))
    for key, value in source.segformer.state_dict().items():
        assert torch.equal(model.segformer.state_dict()[key], value), key
    _assert_fresh_voc_head(model, model.decode_head.classifier.weight)


def test_a_file_of_the_wrong_encoder_is_refused_by_name(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"something.weight": torch.zeros(3)}, path)
    with pytest.raises(PretrainedUnavailable, match=r"--model unet-tiny: .*other\.pth.*not a resnet18 encoder"):
        load_model(ModelArguments(model="unet-tiny", pretrained=str(path)), id2label())


@pytest.mark.parametrize("model, source", [("segformer-b0", None), ("vit", None), ("unet", None)])
def test_an_unreachable_hub_fails_within_seconds_with_both_ways_out(model, source, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    started = time.monotonic()
    with pytest.raises(PretrainedUnavailable) as raised:
        load_model(ModelArguments(model=model, pretrained=source), id2label())
    assert time.monotonic() - started < 10
    message = str(raised.value)
    assert f"--model {model}" in message and "--from_scratch" in message and "local path" in message
    assert {"segformer-b0": "nvidia/mit-b0", "vit": "google/vit-base-patch16-224-in21k", "unet": "imagenet"}[model] in message
