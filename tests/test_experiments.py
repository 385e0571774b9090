"""Named experiments: one command trains each model in its own launch, survives an interruption
between models, and ends with the comparison page."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from transformers import SegformerModel

from hf_segcompare.errors import UsageError
from hf_segcompare.models import create_model
from hf_segcompare.pipeline.experiments import (
    ExperimentStopped,
    get_experiment,
    model_commands,
    model_state,
    tiny_variant,
)

from .conftest import REPO_ROOT, script_env
from .hub_server import HubServer

RUN_EXPERIMENT = REPO_ROOT / "scripts" / "run_experiment.py"
TOKEN = "hf_segcompare_test_token_0123456789"
LAUNCH = "--num_machines 1 --num_processes 1 --mixed_precision no --dynamo_backend no"


def _pretrained_sources(folder) -> list[str]:
    """Local encoder weights for the two tiny models of article-2 (the Hub cannot be reached here)."""
    torch.manual_seed(0)
    encoder = {key: value.contiguous()
               for key, value in create_model("deeplabv3plus-tiny").smp.encoder.state_dict().items()}
    save_file(encoder, str(folder / "resnet.safetensors"))
    SegformerModel(create_model("segformer-tiny").config).save_pretrained(folder / "mit")
    return [f"deeplabv3plus={folder / 'resnet.safetensors'}", f"segformer-b0={folder / 'mit'}"]


def _experiment_command(output_dir, voc_tree, sources) -> list[str]:
    return [sys.executable, str(RUN_EXPERIMENT), "article-2", "--tiny", "--output_dir", str(output_dir),
            "--launch", LAUNCH, "--pretrained", *sources, "--",
            "--dataset_name", "voc", "--data_dir", str(voc_tree), "--crop_size", "64", "--max_steps", "2",
            "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "4"]


def test_article_2_finished_then_published_pushes_each_model_as_it_is_and_the_page(voc_tree, tmp_path):
    """article-2 from local pretrained sources runs both models; the same command again with a Hub
    owner trains nothing and pushes each finished model as it is, then the page linking them.
    (An interrupted experiment resuming is tested with seeds, below.)"""
    output_dir = tmp_path / "article-2"
    command = _experiment_command(output_dir, voc_tree, _pretrained_sources(tmp_path))
    env = script_env(tmp_path)
    first_run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert first_run.returncode == 0, first_run.stderr[-3000:]
    first = output_dir / "deeplabv3plus-tiny" / "results.json"
    assert json.loads(first.read_text())["status"] == "complete"
    weights = output_dir / "deeplabv3plus-tiny" / "model.safetensors"
    first_written, first_train = weights.stat().st_mtime_ns, json.loads(first.read_text())["train"]

    # The same command again, now publishing: the finished models are skipped and pushed as they are,
    # and the page, with both, is pushed linking to their repos.
    with HubServer() as server:
        hub_env = {**env, "HF_ENDPOINT": server.endpoint, "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0",
                   "HF_TOKEN": TOKEN}
        completed = subprocess.run(command[:3] + ["--push_to_hub", "--hub_owner", "tester"] + command[3:],
                                   cwd=tmp_path, env=hub_env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:] + completed.stdout[-3000:]
    for repo in ("tester/article-2-deeplabv3plus-tiny", "tester/article-2-segformer-tiny"):
        assert {"model.safetensors", "README.md", "results.json"} <= set(server.repos[repo]["files"])
        assert f"]({server.endpoint}/{repo})" in (output_dir / "comparison" / "comparison.md").read_text()
    assert server.repos["tester/article-2-comparison"]["files"]["comparison.md"].decode() == (
        output_dir / "comparison" / "comparison.md").read_text()
    assert TOKEN not in completed.stdout + completed.stderr
    assert "deeplabv3plus-tiny: finished" in completed.stdout and completed.stdout.count(", skipped") == 2
    assert weights.stat().st_mtime_ns == first_written  # not trained again
    assert json.loads(first.read_text())["train"] == first_train
    second = json.loads((output_dir / "segformer-tiny" / "results.json").read_text())
    assert second["status"] == "complete" and second["recipe"]["name"] == "quick-15"
    assert second["args"]["model"]["pretrained"] == str(tmp_path / "mit")
    page = (output_dir / "comparison" / "comparison.md").read_text()
    rows = [line for line in page.splitlines() if line.startswith(("| deeplabv3plus-tiny |", "| segformer-tiny |",
                                                                   "| [deeplabv3plus-tiny]", "| [segformer-tiny]"))]
    assert len(rows) == 4, page  # the set-up table and the results table each hold both models
    assert "pretrained encoder" in page and "quick-15" in page
    assert "differ in more than the architecture" not in page  # same recipe, budget, data, device


def test_a_folder_holding_another_run_stops_the_experiment(tmp_path):
    experiment = get_experiment("article-1")
    commands = model_commands(experiment, tmp_path, ["--max_steps", "2"], tiny=True)
    folder = tmp_path / "unet-tiny"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps({
        "model": "unet-tiny", "architecture": "x", "family": "cnn", "parameters": 1, "dataset": {},
        "peak_memory": {}, "environment": {}, "args": {}, "status": "complete"}))
    with pytest.raises(ExperimentStopped, match="not trained by this experiment"):
        model_state(tmp_path, "unet-tiny", commands["unet-tiny"])
    assert model_state(tmp_path, "vit-tiny", commands["vit-tiny"]) == "to run"
    # An interrupted run (a checkpoint, no record) started with other options is not resumed under these.
    (tmp_path / "experiment.json").write_text(json.dumps({"commands": {"vit-tiny": commands["vit-tiny"] + ["-x"]}}))
    (tmp_path / "vit-tiny" / "checkpoint-4").mkdir(parents=True)
    with pytest.raises(ExperimentStopped, match="would mix two settings"):
        model_state(tmp_path, "vit-tiny", commands["vit-tiny"])
    assert model_state(tmp_path, "vit-tiny", commands["vit-tiny"] + ["-x"]) == "to run"


def test_the_experiment_decides_model_recipe_start_and_folder(tmp_path):
    article_1 = get_experiment("article-1")
    commands = model_commands(article_1, tmp_path, ["--dataset_name", "voc"])
    assert list(commands) == ["unet", "vit"]
    assert commands["vit"][:5] == ["--model", "vit", "--recipe", "quick-10", "--from_scratch"]
    assert tiny_variant("segformer-b0") == "segformer-tiny"
    with pytest.raises(UsageError, match="--recipe"):
        model_commands(article_1, tmp_path, ["--recipe", "demo"])
    with pytest.raises(UsageError, match="random weights"):
        model_commands(article_1, tmp_path, [], pretrained=["unet=/models/r50.pth"])
    with pytest.raises(UsageError, match="not vit"):
        model_commands(get_experiment("article-2"), tmp_path, [], pretrained=["vit=/x"])
    with pytest.raises(UsageError, match="unknown experiment"):
        get_experiment("article-3")
    seeded = model_commands(article_1, tmp_path, ["--max_steps", "4"], tiny=True, seeds=[0, 1])
    assert list(seeded) == ["unet-tiny-seed0", "unet-tiny-seed1", "vit-tiny-seed0", "vit-tiny-seed1"]
    assert seeded["vit-tiny-seed1"][-4:] == ["--seed", "1", "--max_steps", "4"]
    folder = seeded["vit-tiny-seed1"][seeded["vit-tiny-seed1"].index("--output_dir") + 1]
    assert folder == str(tmp_path / "vit-tiny-seed1")
    with pytest.raises(UsageError, match="--seed"):
        model_commands(article_1, tmp_path, ["--seed", "3"], seeds=[0, 1])
    with pytest.raises(UsageError, match="each seed once"):
        model_commands(article_1, tmp_path, [], seeds=[0, 0])


def test_seeds_train_every_model_per_seed_resume_after_a_kill_and_a_rerun_skips_them_all(tmp_path):
    """The issue's command, on the embedded synthetic data: killed while its third run trains, run
    again (the rest trains, the page shows mean ± sd), and once more (nothing trains)."""
    output_dir = tmp_path / "article-1"
    command = [sys.executable, str(RUN_EXPERIMENT), "article-1", "--tiny", "--seeds", "0", "1", "--output_dir",
               str(output_dir), "--launch", LAUNCH, "--", "--max_steps", "4", "--crop_size", "64"]
    env = script_env(tmp_path)
    with open(tmp_path / "first.log", "w") as log:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        plan_file, deadline = output_dir / "experiment.json", time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            if plan_file.is_file() and "vit-tiny-seed0" in json.loads(plan_file.read_text()).get("commands", {}):
                break
            time.sleep(0.2)
        assert process.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    finished = [f"unet-tiny-seed{seed}" for seed in (0, 1)]
    assert all((output_dir / name / "results.json").is_file() for name in finished)
    assert not (output_dir / "vit-tiny-seed1").exists() and not (output_dir / "comparison").exists()
    written = {name: (output_dir / name / "model.safetensors").stat().st_mtime_ns for name in finished}

    completed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert all(f"{name}: finished" in completed.stdout for name in finished)
    records = {f"{model}-seed{seed}": json.loads((output_dir / f"{model}-seed{seed}" / "results.json").read_text())
               for model in ("unet-tiny", "vit-tiny") for seed in (0, 1)}
    assert {name: record["args"]["training"]["seed"] for name, record in records.items()} == {
        "unet-tiny-seed0": 0, "unet-tiny-seed1": 1, "vit-tiny-seed0": 0, "vit-tiny-seed1": 1}
    assert all(record["status"] == "complete" and record["train"]["steps"] == 4 for record in records.values())
    page = (output_dir / "comparison" / "comparison.md").read_text()
    for model in ("unet-tiny", "vit-tiny"):
        mious = [records[f"{model}-seed{seed}"]["final_eval"]["eval_mean_iou"] for seed in (0, 1)]
        assert f"| {model} | 0, 1 | {np.mean(mious):.4f} ± {np.std(mious, ddof=1):.4f} |" in page
    assert "spread across seeds" in page and "| unet-tiny (seed 0) |" in page

    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count(", skipped") == 4
    assert all((output_dir / name / "model.safetensors").stat().st_mtime_ns == written[name] for name in finished)
    assert (output_dir / "comparison" / "comparison.md").read_text() == page


def test_a_model_that_cannot_start_stops_the_experiment_with_what_to_pass(voc_tree, tmp_path):
    """The tiny variants have no default pretrained weights: the first model fails, nothing more runs."""
    output_dir = tmp_path / "article-2"
    completed = subprocess.run(
        [sys.executable, str(RUN_EXPERIMENT), "article-2", "--tiny", "--output_dir", str(output_dir),
         "--launch", LAUNCH, "--", "--dataset_name", "voc", "--data_dir", str(voc_tree)],
        cwd=tmp_path, env=script_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert completed.returncode == 1
    last = completed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: deeplabv3plus-tiny stopped") and "--pretrained deeplabv3plus=SOURCE" in last
    assert "segformer-tiny" not in json.loads((output_dir / "experiment.json").read_text())["commands"]
    assert not (output_dir / "comparison").exists()
