"""Push and pull through the real huggingface_hub client, against a Hub-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import sys

import pytest

from .conftest import REPO_ROOT, launch, script_env
from .hub_server import HubServer

TOKEN = "hf_segcompare_test_token_0123456789"

PULL = """
import json, sys, torch
import hf_segcompare
from huggingface_hub import ModelCard
from transformers import AutoModelForSemanticSegmentation
hf_segcompare.register_auto_classes()  # as the card says
repo, local = sys.argv[1], sys.argv[2]
pulled = AutoModelForSemanticSegmentation.from_pretrained(repo).eval()
saved = AutoModelForSemanticSegmentation.from_pretrained(local).eval()
x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    same = torch.equal(pulled(x).logits, saved(x).logits)
card = ModelCard.load(repo)
miou = {r.metric_type: r.metric_value for r in card.data.eval_results}["mean_iou"]
print(json.dumps({"same_logits": same, "card_mean_iou": miou}))
"""


def _env(tmp_path, server):
    env = script_env(tmp_path)
    env.update(HF_ENDPOINT=server.endpoint, HF_HUB_DISABLE_XET="1", HF_HUB_OFFLINE="0")
    env.pop("HF_TOKEN", None)
    return env


def _files_hold(folder, secret: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


# One of the toolkit's own adapters through the whole launch-train-push-pull path (segformer-tiny is
# pushed by the retry test below, deeplabv3plus-tiny pulled by id; every architecture's save and load
# through the Auto classes is tested in test_models.py).
@pytest.mark.fast  # the real huggingface_hub client end to end: in the subset run on the lower bounds
@pytest.mark.parametrize("model", ["unet-tiny"])
def test_push_then_pull_gives_the_same_model_and_card(model, voc_tree, tmp_path):
    import subprocess

    output_dir = tmp_path / "out"
    repo = f"tester/{model}"
    with HubServer() as server:
        completed = launch(
            [
                "--model", model, "--from_scratch", "--recipe", "demo", "--dataset_name", "voc", "--data_dir",
                str(voc_tree), "--output_dir", str(output_dir), "--max_steps", "2", "--save_strategy", "steps",
                "--save_steps", "1", "--push_to_hub", "--hub_model_id", repo, "--hub_token", TOKEN,
            ],
            tmp_path,
            env=_env(tmp_path, server),
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        pushed = server.repos[repo]["files"]
        assert {"model.safetensors", "config.json", "preprocessor_config.json", "README.md", "results.json",
                "learning_curve.png", "sample_predictions.png"} <= set(pushed)
        assert not any(name.startswith("checkpoint-") or name == "training_args.bin" for name in pushed)
        pull = subprocess.run([sys.executable, "-c", PULL, repo, str(output_dir)], capture_output=True, text=True,
                              env=_env(tmp_path, server), timeout=300)
        assert pull.returncode == 0, pull.stderr[-3000:]
        commit = server.repos[repo]["sha"]
    pulled = json.loads(pull.stdout.strip().splitlines()[-1])
    results = json.loads((output_dir / "results.json").read_text())
    # The local record names the commit it was pushed as (the pushed copy cannot name its own commit).
    assert results["hub"] == {"repo_id": repo, "commit_url": f"{server.endpoint}/{repo}/commit/{commit}"}
    assert f"pushed: {server.endpoint}/{repo}/commit/{commit}" in completed.stdout
    assert json.loads(pushed["results.json"])["hub"] is None
    assert pulled["same_logits"] is True
    assert pulled["card_mean_iou"] == results["final_eval"]["eval_mean_iou"]
    assert f'from_pretrained("{repo}")' in (output_dir / "README.md").read_text()
    # The token is nowhere: no file written, no pushed file, no line printed.
    assert _files_hold(output_dir, TOKEN) == []
    assert not any(TOKEN.encode() in content for content in pushed.values())
    assert TOKEN not in completed.stdout + completed.stderr


def test_a_failing_hub_keeps_everything_and_says_how_to_retry(voc_tree, tmp_path):
    import subprocess

    output_dir = tmp_path / "out"
    with HubServer(fail_with=500) as server:
        # The token through HF_TOKEN, as the README advises: accelerate echoes a failed command line.
        env = {**_env(tmp_path, server), "HF_TOKEN": TOKEN}
        completed = launch(["--model", "segformer-tiny", "--from_scratch", "--recipe", "demo", "--dataset_name", "voc",
                            "--data_dir", str(voc_tree), "--output_dir", str(output_dir), "--max_steps", "2",
                            "--push_to_hub", "--hub_model_id", "tester/broken"], tmp_path, env=env)
    sent = [{k.lower(): v for k, v in headers.items()} for _, _, headers in server.requests]
    assert any(h.get("authorization") == f"Bearer {TOKEN}" for h in sent), "HF_TOKEN was not used"
    assert completed.returncode != 0
    import shlex

    assert (f"Retry with: {shlex.quote(sys.executable)} -m hf_segcompare.cli.push {shlex.quote(str(output_dir))} "
            "--hub_model_id tester/broken") in completed.stderr
    for name in ("model.safetensors", "config.json", "README.md", "results.json", "learning_curve.png"):
        assert (output_dir / name).is_file(), name
    assert TOKEN not in completed.stdout + completed.stderr and _files_hold(output_dir, TOKEN) == []

    # The retry, once the Hub is back, publishes the same folder.
    with HubServer() as server:
        retry = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "push.py"), str(output_dir),
                                "--hub_model_id", "tester/broken", "--token", TOKEN],
                               capture_output=True, text=True, env=_env(tmp_path, server), timeout=120)
        assert retry.returncode == 0, retry.stderr[-2000:]
        assert "model.safetensors" in server.repos["tester/broken"]["files"]
        commit = server.repos["tester/broken"]["sha"]
    assert json.loads((output_dir / "results.json").read_text())["hub"]["commit_url"].endswith(f"/commit/{commit}")
    assert TOKEN not in retry.stdout + retry.stderr


def test_model_name_or_path_takes_a_hub_id(voc_tree, tmp_path):
    import subprocess

    from hf_segcompare.evaluation.inference import SegImageProcessor
    from hf_segcompare.models import create_model

    saved = tmp_path / "saved"
    model = create_model("deeplabv3plus-tiny")
    model.save_pretrained(saved)
    SegImageProcessor.for_model(model).save_pretrained(saved)
    output_dir = tmp_path / "eval"
    with HubServer() as server:
        env = _env(tmp_path, server)
        # huggingface_hub reads HF_ENDPOINT at import: push from a process that has it set.
        pushed = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "push.py"), str(saved),
                                 "--hub_model_id", "tester/dlv3p", "--token", TOKEN],
                                capture_output=True, text=True, env=env, timeout=120)
        assert pushed.returncode == 0, pushed.stderr[-2000:]
        completed = launch(["--model", "deeplabv3plus-tiny", "--model_name_or_path", "tester/dlv3p", "--do_train",
                            "false", "--recipe", "demo", "--dataset_name", "voc", "--data_dir", str(voc_tree),
                            "--output_dir", str(output_dir)], tmp_path, env=env)
        assert completed.returncode == 0, completed.stderr[-3000:]
        assert any("/resolve/" in path and "model.safetensors" in path for _, path, _ in server.requests)
    results = json.loads((output_dir / "eval_voc_validation.json").read_text())
    assert results["train"] is None and results["final_eval"]["eval_mean_iou"] is not None
    assert results["args"]["model"]["model_name_or_path"] == "tester/dlv3p"


def test_model_name_or_path_with_the_hub_unreachable_fails_fast_saying_what_to_pass(tmp_path):
    import time

    from .conftest import free_port, run_plain

    env = {**script_env(tmp_path), "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}", "HF_HUB_OFFLINE": "0"}
    started = time.monotonic()
    completed = run_plain(["--model", "segformer-tiny", "--model_name_or_path", "someone/segformer-voc",
                           "--do_train", "false"], tmp_path, env=env)
    assert time.monotonic() - started < 60  # interpreter start-up included; the check itself takes milliseconds
    assert completed.returncode == 2 and "Traceback" not in completed.stderr
    assert "--model_name_or_path someone/segformer-voc: not a local folder, and as a Hub id" in completed.stderr
    assert "--from_scratch" in completed.stderr


def test_model_name_or_path_that_is_neither_a_folder_nor_a_hub_id_is_named(tmp_path):
    from hf_segcompare.config.arguments import UsageError
    from hf_segcompare.pipeline.loading import require_saved_model_reachable

    missing = tmp_path / "outputs" / "segformr-b0"
    with pytest.raises(UsageError, match=f"--model_name_or_path {missing}: no such folder, and not a Hub id"):
        require_saved_model_reachable(str(missing))


def test_push_with_a_bad_repo_id_is_bad_input(tmp_path, capsys):
    from .conftest import run_script_in_process

    (tmp_path / "out").mkdir()
    status, stderr, _ = run_script_in_process(REPO_ROOT / "scripts" / "push.py",
                                              [str(tmp_path / "out"), "--hub_model_id", "not a repo id!"], capsys)
    assert status == 2 and stderr.startswith("error: --hub_model_id 'not a repo id!' is not a Hub repo id (")
