"""The switches a run turns on for its device: chosen for a GPU, all off (and exact) on a CPU."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainingArguments

from hf_segcompare.config.arguments import SegTrainingArguments, parse_args
from hf_segcompare.engine.device_settings import MAX_WORKERS, device_defaults
from hf_segcompare.engine.trainer import SegTrainer
from hf_segcompare.errors import UsageError
from hf_segcompare.models import create_model
from hf_segcompare.pipeline.run import run
from hf_segcompare.report.results import SCHEMA_VERSION

CPU_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason="checks what a CPU run chooses")


def test_a_gpu_gets_mixed_precision_tf32_and_workers_a_cpu_none_of_them():
    assert device_defaults(cuda=True, bf16_supported=True, tf32_supported=True, cores=16) == {
        "bf16": True, "fp16": False, "tf32": True, "dataloader_num_workers": MAX_WORKERS}
    older = device_defaults(cuda=True, bf16_supported=False, tf32_supported=False, cores=4)
    assert older == {"bf16": False, "fp16": True, "tf32": None, "dataloader_num_workers": 3}
    assert device_defaults(cuda=True, cores=1)["dataloader_num_workers"] == 1
    assert device_defaults(cuda=False, cores=16) == {"bf16": False, "fp16": False, "tf32": None,
                                                     "dataloader_num_workers": 0}


@CPU_ONLY
def test_on_a_cpu_every_gpu_switch_is_off_unless_the_user_turned_it_on():
    chosen = SegTrainingArguments(output_dir="unused")
    assert (chosen.bf16, chosen.fp16, chosen.tf32, chosen.dataloader_num_workers) == (False, False, None, 0)
    assert chosen.dataloader_persistent_workers is False and chosen.channels_last is None
    given = SegTrainingArguments(output_dir="unused", bf16=True, use_cpu=True, dataloader_num_workers=2)
    assert (given.bf16, given.fp16, given.dataloader_num_workers) == (True, False, 2)
    with pytest.raises(UsageError, match="--bf16 without a CUDA GPU: add --use_cpu"):
        parse_args(["--model", "unet", "--bf16"])
    _, _, parsed = parse_args(["--model", "unet", "--bf16", "--use_cpu", "--channels_last"])  # bare switches: true
    assert parsed.bf16 is True and parsed.fp16 is False and parsed.channels_last is True


def test_channels_last_puts_a_cnns_weights_in_that_format(tmp_path):
    model = create_model("unet-tiny")
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    trainer = SegTrainer(model, args, channels_last=True)
    convolutions = [module.weight for module in trainer.model.modules()
                    if isinstance(module, torch.nn.Conv2d) and module.kernel_size != (1, 1)]
    assert convolutions and all(w.is_contiguous(memory_format=torch.channels_last) for w in convolutions)
    assert trainer.speed_settings()["channels_last"] is True


@CPU_ONLY
def test_a_cpu_run_with_the_defaults_is_the_run_with_every_switch_off(voc_tree, tmp_path):
    """The defaults change nothing on a CPU: same weights, same scores, and the record and card say so."""
    common = ["--model", "unet-tiny", "--from_scratch", "--recipe", "demo", "--dataset_name", "voc", "--data_dir",
              str(voc_tree), "--cache_dir", str(tmp_path / "cache"), "--max_steps", "3", "--save_strategy", "no",
              "--per_device_train_batch_size", "4", "--seed", "5"]
    default = run(*parse_args([*common, "--output_dir", str(tmp_path / "default")]))
    off = run(*parse_args([*common, "--output_dir", str(tmp_path / "off"), "--bf16", "false", "--fp16", "false",
                           "--tf32", "false", "--channels_last", "false", "--dataloader_num_workers", "0",
                           "--torch_compile", "false"]))
    assert default.speed == off.speed == {
        "mixed_precision": "fp32", "tf32": False, "channels_last": False, "torch_compile": False,
        "dataloader_num_workers": 0, "dataloader_persistent_workers": False, "dataloader_pin_memory": False}
    assert default.final_eval["eval_mean_iou"] == off.final_eval["eval_mean_iou"]
    assert default.final_eval["eval_loss"] == off.final_eval["eval_loss"]
    first = load_file(tmp_path / "default" / "model.safetensors")
    second = load_file(tmp_path / "off" / "model.safetensors")
    assert all(torch.equal(first[key], second[key]) for key in first)
    recorded = json.loads((tmp_path / "default" / "results.json").read_text())
    assert recorded["speed"]["mixed_precision"] == "fp32" and recorded["schema_version"] == SCHEMA_VERSION == 11
    card = (tmp_path / "default" / "README.md").read_text()
    assert "fp32 throughout, TF32 off, contiguous (NCHW) memory format, eager mode, data prepared in the main" in card


def _compiler() -> str | None:
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


@pytest.mark.skipif(_compiler() is None, reason="torch.compile's inductor backend needs a C compiler; none on PATH")
def test_torch_compile_trains_and_evaluates_a_tiny_model(voc_tree, tmp_path):
    from torch._dynamo.utils import counters

    counters.clear()
    results = run(*parse_args([
        "--model", "segformer-tiny", "--from_scratch", "--recipe", "demo", "--dataset_name", "voc", "--data_dir",
        str(voc_tree), "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "compiled"),
        "--max_steps", "2", "--save_strategy", "no", "--per_device_train_batch_size", "4",
        "--torch_compile", "--torch_compile_backend", "aot_eager",
    ]))
    assert results.speed["torch_compile"] is True
    assert counters["stats"]["unique_graphs"] > 0  # dynamo did compile the model
    assert 0 <= results.final_eval["eval_mean_iou"] <= 1
    saved = load_file(tmp_path / "compiled" / "model.safetensors")
    assert not any(key.startswith("_orig_mod") for key in saved)  # saved under the model's own names
