"""--sync_bn: which runs synchronise BatchNorm, and a converted model keeps the ordinary names (so
checkpoints resume exactly and the saved model loads as plain BatchNorm)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from transformers import AutoModelForSemanticSegmentation

from hf_segcompare.engine.sync_batchnorm import (
    batchnorm_layers,
    convert_to_sync_batchnorm,
    resolve_sync_batchnorm,
)
from hf_segcompare.errors import UsageError
from hf_segcompare.models import create_model, list_models

from .conftest import run_seg_in_process

TINY_MODELS = [f"{name.split('-')[0]}-tiny" for name in list_models()]


@pytest.mark.parametrize("name", TINY_MODELS)
def test_every_architecture_has_batchnorm_and_syncs_only_on_several_gpu_processes(name):
    model = create_model(name)
    assert batchnorm_layers(model) > 0  # the CNNs, SETR's PUP head and SegFormer's decode head alike
    decided = {(requested, world, device): resolve_sync_batchnorm(requested, model, world, device).enabled
               for requested in (None, False) for world in (1, 2, 4) for device in ("cuda", "cpu")}
    assert [key for key, enabled in decided.items() if enabled] == [(None, 2, "cuda"), (None, 4, "cuda")]
    assert resolve_sync_batchnorm(True, model, 2, "cuda").reason == "as asked (--sync_bn)"
    assert "each of the 4 CPU processes keeps its own" in resolve_sync_batchnorm(None, model, 4, "cpu").reason
    with pytest.raises(UsageError, match="--sync_bn: torch's SyncBatchNorm runs on CUDA GPUs only.*drop --sync_bn"):
        resolve_sync_batchnorm(True, model, 2, "cpu")


def test_a_model_without_batchnorm_never_syncs():
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4))
    choice = resolve_sync_batchnorm(None, plain, 8, "cuda")
    assert not choice.enabled and choice.layers == 0 and choice.reason == "the model has no BatchNorm layer"


@pytest.mark.parametrize("name", TINY_MODELS)
def test_a_converted_model_keeps_the_batchnorm_names_and_saves_as_plain_batchnorm(name, tmp_path):
    torch.manual_seed(0)
    plain = create_model(name)
    plain_state = {key: value.clone() for key, value in plain.state_dict().items()}
    converted = convert_to_sync_batchnorm(create_model(name))
    converted.load_state_dict(plain_state)  # strict: the checkpoint of a plain run fits, and back
    assert sum(isinstance(layer, nn.SyncBatchNorm) for layer in converted.modules()) == batchnorm_layers(plain)
    assert not [layer for layer in converted.modules() if type(layer) is nn.BatchNorm2d]
    assert list(converted.state_dict()) == list(plain_state)

    converted.save_pretrained(tmp_path)
    reloaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
    assert not [layer for layer in reloaded.modules() if isinstance(layer, nn.SyncBatchNorm)]
    pixel_values = torch.randn(1, 3, 64, 64)
    with torch.no_grad():  # in evaluation SyncBatchNorm uses the running statistics, as BatchNorm does
        torch.testing.assert_close(reloaded(pixel_values).logits, plain.eval()(pixel_values).logits)


def test_a_one_process_run_records_why_batchnorm_is_not_synchronised_and_refuses_sync_bn_on_cpu(
        voc_tree, tmp_path, capsys):
    output_dir = tmp_path / "out"
    args = ["--model", "deeplabv3plus-tiny", "--from_scratch", "--recipe", "demo", "--dataset_name", "voc",
            "--data_dir", str(voc_tree), "--max_steps", "1", "--per_device_train_batch_size", "2",
            "--save_strategy", "no", "--do_eval", "false"]
    status, stderr, _ = run_seg_in_process([*args, "--output_dir", str(output_dir)], capsys)
    assert status == 0, stderr[-3000:]
    choice = json.loads((output_dir / "results.json").read_text())["training_setup"]["sync_batchnorm"]
    assert choice["enabled"] is False and choice["reason"] == "one process, so BatchNorm already sees the whole batch"
    assert "- BatchNorm: not synchronised (" in (output_dir / "README.md").read_text()

    status, stderr, _ = run_seg_in_process([*args, "--output_dir", str(tmp_path / "refused"), "--sync_bn"], capsys)
    assert status == 2 and stderr.startswith("error: --sync_bn: torch's SyncBatchNorm runs on CUDA GPUs only")
    assert not (tmp_path / "refused").exists()
