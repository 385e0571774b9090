"""Off the happy path: a run that cannot produce a trustworthy number stops loudly and publishes
nothing, an interrupted run resumes exactly, and every bad input is one ``error:`` line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hf_segcompare.config.arguments import parse_args
from hf_segcompare.pipeline.run import run

from .conftest import run_seg_in_process

TINY_MODELS = ["segformer-tiny", "vit-tiny", "unet-tiny", "deeplabv3plus-tiny"]


class SimulatedKill(BaseException):
    """Stands for SIGKILL: not an Exception, so no handler of ours cleans up after it."""


def _train_args(voc_tree, output_dir, cache_dir, *extra) -> list[str]:
    # 16 training images at batch 4: 4 steps an epoch, so step 6 is in the second epoch and a
    # resume from step 2 skips batches inside an epoch.
    return ["--recipe", "demo", "--dataset_name", "voc", "--data_dir", str(voc_tree), "--output_dir", str(output_dir),
            "--cache_dir", str(cache_dir), "--per_device_train_batch_size", "4", "--max_steps", "6",
            "--eval_strategy", "steps", "--eval_steps", "2", "--save_strategy", "steps", "--save_steps", "2",
            "--logging_steps", "1", "--seed", "11", "--warmup_steps", "1", *extra]


def _kill_while_saving(monkeypatch, step: int) -> None:
    """Kill the run while it writes checkpoint-`step`: weights and optimizer are on disk (the
    optimizer file empty, as a kill mid-write leaves it), trainer_state.json is not."""
    from transformers.trainer_callback import TrainerState

    save_to_json = TrainerState.save_to_json

    def save_or_die(self, json_path):
        if f"checkpoint-{step}" in str(json_path):
            (Path(json_path).parent / "optimizer.pt").write_bytes(b"")
            raise SimulatedKill(json_path)
        save_to_json(self, json_path)

    monkeypatch.setattr(TrainerState, "save_to_json", save_or_die)


@pytest.mark.parametrize("model", TINY_MODELS)
def test_a_killed_run_resumes_exactly_skipping_the_half_written_checkpoint(model, voc_tree, tmp_path, monkeypatch,
                                                                           caplog):
    cache = tmp_path / "cache"
    run(*parse_args(["--model", model, "--from_scratch", *_train_args(voc_tree, tmp_path / "whole", cache)]))
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())

    interrupted = tmp_path / "interrupted"
    with monkeypatch.context() as patch:
        _kill_while_saving(patch, step=4)
        with pytest.raises(SimulatedKill):
            run(*parse_args(["--model", model, "--from_scratch", *_train_args(voc_tree, interrupted, cache)]))
    assert (interrupted / "checkpoint-2" / "trainer_state.json").is_file()
    assert not (interrupted / "checkpoint-4" / "trainer_state.json").exists()
    assert not (interrupted / "results.json").exists()

    with caplog.at_level("WARNING", logger="hf_segcompare.engine.checkpoints"):
        run(*parse_args(["--model", model, "--from_scratch",
                         *_train_args(voc_tree, interrupted, cache, "--resume_from_checkpoint", "last")]))
    assert f"skipping {interrupted / 'checkpoint-4'}" in caplog.text
    resumed = json.loads((interrupted / "results.json").read_text())
    assert resumed["train"]["resumed_from"] == "checkpoint-2" and resumed["status"] == "complete"

    expected, actual = load_file(tmp_path / "whole" / "model.safetensors"), load_file(interrupted / "model.safetensors")
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    assert [(e["step"], e["loss"]) for e in resumed["train_loss"]] == [
        (e["step"], e["loss"]) for e in whole["train_loss"]
    ]
    assert len(whole["train_loss"]) == 6
    # Every evaluation, the one before the kill included, with the same figures.
    assert [(e["step"], e["eval_mean_iou"]) for e in resumed["evaluations"]] == \
        [(e["step"], e["eval_mean_iou"]) for e in whole["evaluations"]] and len(whole["evaluations"]) == 3


def test_a_damaged_last_checkpoint_resumes_from_the_one_before_it(voc_tree, tmp_path, capsys, caplog):
    """Random bytes in the last checkpoint's weights: the run says so, naming it and the checkpoint
    it resumes from instead, and finishes; asked for by name, it is one line naming the intact one."""
    output = tmp_path / "out"
    args = ["--model", "segformer-tiny", "--from_scratch", *_train_args(voc_tree, output, tmp_path / "c"),
            "--save_total_limit", "3"]
    status, stderr, _ = run_seg_in_process(args, capsys)
    assert status == 0, stderr[-3000:]
    weights = output / "checkpoint-6" / "model.safetensors"
    weights.write_bytes(np.random.default_rng(0).bytes(weights.stat().st_size))
    status, stderr, _ = run_seg_in_process([*args, "--resume_from_checkpoint", str(output / "checkpoint-6")], capsys)
    line = _one_error_line(stderr)
    assert status == 2 and "checkpoint-6: it cannot be read (model.safetensors: " in line
    assert f"Pass {output / 'checkpoint-4'}, the newest intact checkpoint, or 'last'." in line
    with caplog.at_level("WARNING", logger="hf_segcompare.engine.checkpoints"):
        status, stderr, _ = run_seg_in_process(args, capsys)
    assert status == 0 and "Traceback" not in stderr, stderr[-3000:]
    assert f"skipping {output / 'checkpoint-6'}: it cannot be read (model.safetensors: " in caplog.text
    assert "; resuming from checkpoint-4" in caplog.text
    record = json.loads((output / "results.json").read_text())
    assert record["train"]["resumed_from"] == "checkpoint-4" and record["train"]["steps"] == 6


def test_one_run_per_output_folder_at_a_time(voc_tree, tmp_path, capsys):
    """A second run into a folder in use stops at once, naming the folder and the running process;
    the first finishes intact. A lock left by a killed process does not stand in the way."""
    import subprocess
    import sys
    import time

    from .conftest import RUN_SEG, script_env

    output = tmp_path / "out"
    args = ["--model", "segformer-tiny", "--from_scratch", *_train_args(voc_tree, output, tmp_path / "c"),
            "--max_steps", "12", "--save_steps", "6", "--eval_steps", "6"]
    first = subprocess.Popen([sys.executable, str(RUN_SEG), *args], cwd=tmp_path, env=script_env(tmp_path),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (output / "run_args.json").exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    status, stderr, _ = run_seg_in_process(args, capsys)
    line = _one_error_line(stderr)
    assert status == 2 and f"--output_dir {output} is in use by another run (process {first.pid} on " in line
    stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr[-3000:]
    assert json.loads((output / "results.json").read_text())["train"]["steps"] == 12
    # A holder killed without a word: the kernel dropped its lock, and the next run goes ahead.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; "
                               "from hf_segcompare.engine.run_lock import RunLock; RunLock(sys.argv[1]).acquire(); "
                               "print('locked', flush=True); time.sleep(600)",
                               str(tmp_path / "other")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait()
    status, stderr, _ = run_seg_in_process([*args[:-6], "--output_dir", str(tmp_path / "other"), "--max_steps", "2"],
                                           capsys)
    assert status == 0, stderr[-3000:]


@pytest.mark.parametrize("processes", [0, 1, 2])  # 0: python scripts/run_seg.py; else accelerate launch
def test_ctrl_c_is_one_line_naming_what_a_rerun_resumes_and_exit_130(processes, voc_tree, tmp_path):
    """Ctrl-C in a terminal signals every process of the job; under accelerate launch the launcher then
    sends the run SIGTERM at once, which must not cut the one line short (nor may each process print it)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from .conftest import RUN_SEG, free_port, script_env

    output = tmp_path / "out"
    args = [str(RUN_SEG), "--model", "segformer-tiny", "--from_scratch",
            *_train_args(voc_tree, output, tmp_path / "c"), "--max_steps", "400", "--eval_strategy", "no",
            "--do_eval", "false"]
    if processes == 2:
        args += ["--per_device_train_batch_size", "2"]
    launcher = [] if not processes else [
        "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--num_processes", str(processes),
        *(["--multi_gpu", "--main_process_port", str(free_port())] if processes > 1 else [])]
    # As from a terminal: its own process group, every member of which the signal reaches, with SIGINT's
    # default handler (a suite started in the background with '&' ignores SIGINT, and children inherit that).
    run = subprocess.Popen([sys.executable, *launcher, *args], cwd=tmp_path, env=script_env(tmp_path),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # Any whole checkpoint will do: with --save_total_limit 1, checkpoint-2 lives only until
    # checkpoint-4 is written, a window a poll can miss on a fast machine.
    deadline = time.monotonic() + 240
    while not any(output.glob("checkpoint-*/trainer_state.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert run.poll() is None, "the run ended before a checkpoint was seen"
    os.killpg(run.pid, signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130
    line = _one_error_line(stderr)
    assert line.startswith("error: interrupted at step ") and " of 400: nothing was published; rerunning the " \
        "same command resumes from checkpoint-" in line
    assert not (output / "results.json").exists()


def _interrupted_at_step_2(voc_tree, tmp_path, monkeypatch) -> tuple[Path, list[str]]:
    """A segformer-tiny run of 6 steps killed while writing checkpoint-4: checkpoint-2 to resume from."""
    output = tmp_path / "out"
    args = ["--model", "segformer-tiny", "--from_scratch", *_train_args(voc_tree, output, tmp_path / "c")]
    with monkeypatch.context() as patch:
        _kill_while_saving(patch, step=4)
        with pytest.raises(SimulatedKill):
            run(*parse_args(args))
    return output, args


def test_a_resume_with_a_changed_learning_rate_is_refused_or_applied_and_listed(voc_tree, tmp_path, monkeypatch,
                                                                              capsys):
    output, args = _interrupted_at_step_2(voc_tree, tmp_path, monkeypatch)
    status, stderr, _ = run_seg_in_process([*args, "--learning_rate", "1e-6"], capsys)
    line = _one_error_line(stderr)
    assert status == 2 and "resuming from checkpoint-2 with other options than the run it continues " \
        "(learning_rate 0.002 -> 1e-06)" in line and "--allow_changed_options" in line
    status, stderr, stdout = run_seg_in_process([*args, "--learning_rate", "1e-6", "--allow_changed_options"], capsys)
    assert status == 0, stderr[-3000:]
    assert "resuming with changed options: learning_rate 0.002 -> 1e-06 from step 2" in stdout
    record = json.loads((output / "results.json").read_text())
    assert record["changed_on_resume"] == [
        {"option": "learning_rate", "before": 0.002, "after": 1e-06, "at_step": 2}]
    assert "Changed when resumed at step 2: `learning_rate` 0.002 → 1e-06 (from then on)." in \
        (output / "README.md").read_text()
    # The rate the steps after the resume trained with is the new one (the checkpoint held the old).
    state = json.loads((output / "checkpoint-6" / "trainer_state.json").read_text())
    rates = {entry["step"]: entry["learning_rate"] for entry in state["log_history"] if "learning_rate" in entry}
    assert rates[2] > 1e-4 and 0 < max(rate for step, rate in rates.items() if step > 2) <= 1e-6


def test_a_resume_on_another_process_count_is_refused_unless_allowed(voc_tree, tmp_path, monkeypatch, capsys):
    """The interrupted run's record says it ran on 2 processes (global batch 8); resuming here on one."""
    output, args = _interrupted_at_step_2(voc_tree, tmp_path, monkeypatch)
    recorded = json.loads((output / "run_args.json").read_text())
    recorded["_run"].update(num_processes=2, global_batch_size=8)
    (output / "run_args.json").write_text(json.dumps(recorded))
    status, stderr, _ = run_seg_in_process(args, capsys)
    line = _one_error_line(stderr)
    assert status == 2 and "(global_batch_size 8 -> 4; num_processes 2 -> 1)" in line
    status, stderr, _ = run_seg_in_process([*args, "--allow_changed_options"], capsys)
    assert status == 0, stderr[-3000:]
    record = json.loads((output / "results.json").read_text())
    assert [change["option"] for change in record["changed_on_resume"]] == ["global_batch_size", "num_processes"]
    assert "`num_processes` 2 → 1" in (output / "README.md").read_text()


def test_a_resume_cannot_change_the_model_or_the_optimizers_groups(voc_tree, tmp_path, monkeypatch, capsys):
    output, args = _interrupted_at_step_2(voc_tree, tmp_path, monkeypatch)
    status, stderr, _ = run_seg_in_process([*args, "--lr_multipliers", "decode_head=10", "--allow_changed_options"],
                                           capsys)
    line = _one_error_line(stderr)
    assert status == 2 and "(lr_multipliers '' -> 'decode_head=10'): those cannot change mid-run" in line


# ----------------------------------------------------------------------------- helpers


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-2000:]
    return lines[0]


@pytest.fixture
def no_data_loading(monkeypatch):
    """Fails the test if the run gets as far as loading data."""
    def refuse(*args, **kwargs):
        raise AssertionError("the data was loaded before the bad input was reported")

    monkeypatch.setattr("hf_segcompare.pipeline.run.load_data", refuse)


def _mount_tmpfs(folder, options: str):
    """Mount a tmpfs at `folder` (root only); skip the test where that is not allowed."""
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip() or 'not root'})")
    return lambda: subprocess.run(["umount", "-l", str(folder)], check=False)


# ----------------------------------------------------------------------------- divergence


def test_a_diverging_run_stops_at_the_first_nonfinite_step_and_publishes_nothing(voc_tree, tmp_path, capsys):
    output_dir = tmp_path / "out"
    status, stderr, _ = run_seg_in_process(
        ["--model", "segformer-tiny", "--from_scratch", *_train_args(voc_tree, output_dir, tmp_path / "cache"),
         "--learning_rate", "1e6", "--save_steps", "1", "--save_total_limit", "1"], capsys)
    line = _one_error_line(stderr)
    assert status == 1 and "training diverged at step" in line and "--learning_rate" in line
    step = int(line.split("at step ")[1].split()[0])
    results = json.loads((output_dir / "results.json").read_text())
    assert results["status"] == "diverged" and results["final_eval"] is None and results["diverged"]["step"] == step
    # Stopped within the first non-finite step: every logged loss before it is finite.
    assert [entry["step"] for entry in results["train_loss"]] == list(range(1, step))
    assert not (output_dir / "README.md").exists() and not (output_dir / "model.safetensors").exists()
    kept = sorted(output_dir.glob("checkpoint-*"))
    assert [path.name for path in kept] == [f"checkpoint-{step - 1}"]
    for tensor in load_file(kept[0] / "model.safetensors").values():
        assert torch.isfinite(tensor).all()
    # Nothing downstream takes it for a result.
    from hf_segcompare.errors import PushError, UsageError
    from hf_segcompare.report.page import read_runs
    from hf_segcompare.report.push import push_folder

    with pytest.raises(UsageError, match="did not finish"):
        read_runs([output_dir])
    with pytest.raises(PushError, match="did not finish"):
        push_folder(output_dir, "someone/diverged")
    # The same command again: the diverged run is finished, not resumed towards the same fault.
    before = {path.name: path.read_bytes() for path in output_dir.rglob("*") if path.is_file()
              and not path.name.startswith(".")}
    status, stderr, _ = run_seg_in_process(
        ["--model", "segformer-tiny", "--from_scratch", *_train_args(voc_tree, output_dir, tmp_path / "cache"),
         "--learning_rate", "1e6", "--save_steps", "1", "--save_total_limit", "1"], capsys)
    line = _one_error_line(stderr)
    assert status == 2 and f"holds a run that diverged at step {step}" in line and "--overwrite_output_dir" in line
    assert f"--resume_from_checkpoint {kept[0]} with --allow_changed_options" in line
    assert before == {path.name: path.read_bytes() for path in output_dir.rglob("*") if path.is_file()
                      and not path.name.startswith(".")}


# ----------------------------------------------------------------------------- not evaluated


@pytest.mark.parametrize("option", [["--do_eval", "false"], ["--eval_strategy", "no"]])
def test_a_run_without_evaluation_finishes_with_a_card_that_says_so(option, voc_tree, tmp_path, capsys):
    output_dir = tmp_path / "out"
    status, stderr, _ = run_seg_in_process(["--model", "segformer-tiny", "--from_scratch", "--recipe", "demo",
                                    "--dataset_name", "voc", "--data_dir", str(voc_tree), "--output_dir",
                                    str(output_dir), "--max_steps", "2", "--save_strategy", "no", *option], capsys)
    assert status == 0, stderr[-2000:]
    results = json.loads((output_dir / "results.json").read_text())
    assert results["status"] == "complete" and results["evaluations"] == [] and results["final_eval"] is None
    card = (output_dir / "README.md").read_text()
    assert "**Not evaluated.**" in card and "model-index" not in card and "| mean IoU |" not in card


# ----------------------------------------------------------------------------- evaluation beside training


def test_evaluating_a_trained_folder_keeps_its_training_record_and_card(voc_tree, tmp_path):
    trained = tmp_path / "trained"
    run(*parse_args(["--model", "segformer-tiny", "--from_scratch", *_train_args(voc_tree, trained, tmp_path / "c")]))
    record_before = (trained / "results.json").read_bytes()
    curve_before = (trained / "learning_curve.png").read_bytes()
    run(*parse_args(["--model", "segformer-tiny", "--model_name_or_path", str(trained), "--do_train", "false",
                     "--dataset_name", "voc", "--data_dir", str(voc_tree), "--output_dir", str(trained),
                     "--cache_dir", str(tmp_path / "c"), "--eval_scales", "0.5", "1.0", "--eval_flip"]))
    assert (trained / "results.json").read_bytes() == record_before
    assert (trained / "learning_curve.png").read_bytes() == curve_before
    evaluation = json.loads((trained / "eval_voc_validation.json").read_text())
    assert evaluation["train"] is None and evaluation["final_eval"]["eval_mean_iou"] is not None
    card = (trained / "README.md").read_text()
    assert "## Training data and procedure" in card and "- Optimizer `" in card and "learning_curve.png" in card
    assert "`eval_voc_validation.json`" in card and "### Evaluations after training" in card
    # One line for its single-scale figure, one for its test-time-augmented one.
    for name, scores in (("single-scale", evaluation["final_eval"]),
                         ("multi-scale (0.5, 1) + flip", evaluation["augmented_eval"])):
        assert (f"| `eval_voc_validation.json` | `voc` | {name}, native resolution, whole image | 7 | 1 | "
                f"{scores['eval_mean_iou']:.4f} |") in card
    # The training record's own figure is still what the card reports first.
    final = json.loads(record_before)["final_eval"]["eval_mean_iou"]
    assert f"| mean IoU | {final:.4f} |" in card


# ----------------------------------------------------------------------------- resume options


def test_resume_options_name_what_cannot_be_resumed(voc_tree, tmp_path, capsys):
    output_dir = tmp_path / "out"
    status, stderr, _ = run_seg_in_process(["--model", "segformer-tiny", "--from_scratch",
                                    *_train_args(voc_tree, output_dir, tmp_path / "c"), "--max_steps", "2",
                                    "--num_train_epochs", "1"], capsys)
    assert status == 2 and "pass one of them" in _one_error_line(stderr)

    status, stderr, _ = run_seg_in_process(
        [
            "--model", "segformer-tiny", "--from_scratch", "--output_dir", str(output_dir),
            "--resume_from_checkpoint", "true",
        ],
        capsys,
    )
    assert status == 2 and "holds no complete checkpoint" in _one_error_line(stderr)

    broken = output_dir / "checkpoint-3"
    broken.mkdir(parents=True)
    (broken / "optimizer.pt").write_bytes(b"")
    status, stderr, _ = run_seg_in_process(
        [
            "--model", "segformer-tiny", "--from_scratch", "--output_dir", str(output_dir),
            "--resume_from_checkpoint", str(broken),
        ],
        capsys,
    )
    assert status == 2 and f"{broken}: incomplete checkpoint (no trainer_state.json" in _one_error_line(stderr)


def test_a_finished_folder_is_refused_and_overwrite_clears_the_old_run(voc_tree, tmp_path, capsys):
    output_dir = tmp_path / "out"
    args = ["--model", "segformer-tiny", "--from_scratch", "--recipe", "demo", "--dataset_name", "voc",
            "--data_dir", str(voc_tree), "--output_dir", str(output_dir), "--max_steps", "2", "--save_strategy", "no"]
    assert run_seg_in_process(args, capsys)[0] == 0
    stale = output_dir / "checkpoint-99"  # e.g. from an older, longer run: a later resume would pick it
    stale.mkdir()
    (stale / "trainer_state.json").write_text("{}")
    (stale / "model.safetensors").write_bytes(b"")
    (output_dir / "notes.txt").write_text("mine")
    status, stderr, _ = run_seg_in_process([*args, "--resume_from_checkpoint", "false"], capsys)
    assert status == 2 and "holds a finished run" in _one_error_line(stderr) and "--overwrite_output_dir" in stderr
    assert run_seg_in_process([*args, "--overwrite_output_dir", "true"], capsys)[0] == 0
    assert not stale.exists() and (output_dir / "notes.txt").read_text() == "mine"
    assert json.loads((output_dir / "results.json").read_text())["status"] == "complete"


def test_num_train_epochs_replaces_the_recipes_step_budget_and_the_budget_is_printed(voc_tree, tmp_path, capsys):
    _, _, published = parse_args(["--model", "segformer-b0", "--dataset_name", "voc", "--num_train_epochs", "1"])
    assert published.max_steps == -1 and published.num_train_epochs == 1
    _, _, recipe = parse_args(["--model", "segformer-b0", "--dataset_name", "voc"])
    assert recipe.max_steps == 20_000
    status, _, stdout = run_seg_in_process(
        [
            "--model", "segformer-tiny", "--from_scratch", "--recipe", "demo", "--dataset_name", "voc", "--data_dir",
            str(voc_tree), "--output_dir", str(tmp_path / "out"), "--num_train_epochs", "1", "--warmup_steps", "0",
            "--per_device_train_batch_size", "8", "--save_strategy", "no", "--eval_strategy", "no",
        ],
        capsys,
    )
    assert status == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["train"]["steps"] == 2  # 16 images at batch 8
    assert "training budget: 2 optimizer steps at a global batch of 8 (1.00 epochs of 16 images), set by " \
           "--num_train_epochs 1" in stdout


# ----------------------------------------------------------------------------- bad input: one line, early


def _bad_file(path, size=4096):
    import os

    path.write_bytes(os.urandom(size))
    return path


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_an_unreadable_encoder_file_is_named_before_any_data_loads(suffix, tmp_path, capsys, no_data_loading):
    weights = _bad_file(tmp_path / f"resnet18{suffix}")
    status, stderr, _ = run_seg_in_process(["--model", "unet-tiny", "--pretrained", str(weights),
                                       "--output_dir", str(tmp_path / "out")], capsys)
    line = _one_error_line(stderr)
    assert status == 2 and str(weights) in line and "cannot be read" in line and "--from_scratch" in line


def test_a_folder_that_is_not_a_model_is_named_before_any_data_loads(tmp_path, capsys, no_data_loading):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "no-such-model"}')
    status, stderr, _ = run_seg_in_process(["--model", "unet-tiny", "--model_name_or_path", str(folder),
                                       "--output_dir", str(tmp_path / "out")], capsys)
    line = _one_error_line(stderr)
    assert status == 2 and str(folder) in line and "not a model saved by save_pretrained" in line
    (folder / "config.json").unlink()
    status, stderr, _ = run_seg_in_process(["--model", "unet-tiny", "--model_name_or_path", str(folder),
                                       "--output_dir", str(tmp_path / "out")], capsys)
    assert status == 2 and "no config.json" in _one_error_line(stderr)


def test_a_voc_tar_of_random_bytes_is_named(tmp_path, capsys):
    tar = _bad_file(tmp_path / "VOCtrainval_11-May-2012.tar")
    status, stderr, _ = run_seg_in_process(["--model", "unet-tiny", "--from_scratch", "--dataset_name", "voc",
                                       "--data_dir", str(tar), "--output_dir", str(tmp_path / "out")], capsys)
    line = _one_error_line(stderr)
    assert status == 2 and f"{tar} is not a readable tar file" in line


def test_an_output_folder_that_cannot_be_written_is_named_before_any_data_loads(tmp_path, capsys, no_data_loading):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    status, stderr, _ = run_seg_in_process(["--model", "unet-tiny", "--from_scratch", "--output_dir",
                                       str(blocker / "out")], capsys)
    assert status == 2 and f"--output_dir {blocker / 'out'}: cannot write there" in _one_error_line(stderr)
    read_only = tmp_path / "read-only"
    unmount = _mount_tmpfs(read_only, "ro,size=1m")
    try:
        status, stderr, _ = run_seg_in_process(["--model", "unet-tiny", "--from_scratch", "--output_dir",
                                           str(read_only / "out")], capsys)
    finally:
        unmount()
    line = _one_error_line(stderr)
    assert status == 2 and f"--output_dir {read_only / 'out'}: cannot write there (Read-only file system)" in line


def test_a_cache_folder_that_cannot_be_written_is_named_before_any_data_is_read(voc_tree, tmp_path, capsys,
                                                                                 monkeypatch):
    """An empty read-only cache: the loaders would fail inside datasets with a PermissionError."""
    def no_reading(*args, **kwargs):
        raise AssertionError("the data was read before the cache folder was checked")

    monkeypatch.setattr("hf_segcompare.pipeline.loading.load_voc", no_reading)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    args = ["--model", "segformer-tiny", "--from_scratch", "--dataset_name", "voc", "--data_dir", str(voc_tree)]
    status, stderr, _ = run_seg_in_process([*args, "--output_dir", str(tmp_path / "out"), "--cache_dir",
                                            str(blocker / "cache")], capsys)
    assert status == 2 and f"--cache_dir {blocker / 'cache'}: cannot write there" in _one_error_line(stderr)
    read_only = tmp_path / "read-only"
    unmount = _mount_tmpfs(read_only, "ro,size=1m")
    try:
        status, stderr, _ = run_seg_in_process([*args, "--output_dir", str(tmp_path / "out"), "--cache_dir",
                                                str(read_only)], capsys)
        monkeypatch.setenv("HF_SEGCOMPARE_CACHE", str(read_only))
        monkeypatch.setattr("hf_segcompare.pipeline.loading.DEFAULT_CACHE_DIR", read_only)
        default_status, default_stderr, _ = run_seg_in_process([*args, "--output_dir", str(tmp_path / "out")], capsys)
    finally:
        unmount()
    line = _one_error_line(stderr)
    assert status == 2 and f"--cache_dir {read_only}: cannot write there (Read-only file system)" in line
    line = _one_error_line(default_stderr)
    assert default_status == 2 and "or set HF_SEGCOMPARE_CACHE (this is its default folder)" in line


def test_a_full_disk_is_named_and_leaves_no_partial_checkpoint(voc_tree, tmp_path, capsys):
    disk = tmp_path / "small-disk"
    unmount = _mount_tmpfs(disk, "size=1m")  # segformer-tiny: 0.5 MB of weights, 1 MB of optimizer state
    try:
        status, stderr, _ = run_seg_in_process(["--model", "segformer-tiny", "--from_scratch",
                                           *_train_args(voc_tree, disk / "out", tmp_path / "cache")], capsys)
        line = _one_error_line(stderr)
        left = sorted(path.name for path in (disk / "out").iterdir())
    finally:
        unmount()
    assert status == 1 and "no space left on device (ENOSPC)" in line and str(disk / "out" / "checkpoint-2") in line
    assert not [name for name in left if name.startswith("checkpoint-")] and "results.json" not in left


@pytest.mark.parametrize(("argv", "expected"), [
    (["--model", "nope"], "unknown model 'nope'; choose one of: unet, deeplabv3plus, vit, segformer-b0"),
    (["--num_train_epoch", "3"], "--num_train_epoch (did you mean --num_train_epochs?)"),
    (["--learning_rat", "1e-3"], "--learning_rat (did you mean --learning_rate?)"),
    (["--no_such_option"], "unrecognised argument(s): --no_such_option"),
    # a budget of no step would train nothing and publish the random model
    (["--num_train_epochs", "-1"], "--num_train_epochs -1 (with --max_steps -1) leaves no step to train"),
    (["--num_train_epochs", "0"], "--num_train_epochs 0 (with --max_steps -1) leaves no step to train"),
    (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size 0: give 1 or more."),
    (["--per_device_eval_batch_size", "-2"], "--per_device_eval_batch_size -2: give 1 or more."),
    (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps 0: give 1 or more."),
])
def test_argument_mistakes_are_one_usage_error_line(argv, expected, tmp_path, capsys, no_data_loading):
    status, stderr, _ = run_seg_in_process([*argv, "--output_dir", str(tmp_path / "out")], capsys)
    assert status == 2 and expected in _one_error_line(stderr)
    # The full parser (which a config file's options go through) says the same.
    from hf_segcompare.errors import UsageError

    with pytest.raises(UsageError) as raised:
        parse_args(argv)
    assert expected in str(raised.value)


def test_a_rewritten_mask_is_never_served_from_the_cache(voc_tree, tmp_path):
    """Same size, same mtime, new content: the cache key must still change."""
    import io
    import os
    import shutil

    import numpy as np
    from PIL import Image

    from hf_segcompare.data import load_voc

    data = tmp_path / "data"
    shutil.copytree(voc_tree, data)
    mask_path = data / "VOCdevkit/VOC2012/SegmentationClass/synth_000002.png"
    before = load_voc(data, cache_dir=tmp_path / "cache")
    old_bytes, old_stat = mask_path.read_bytes(), mask_path.stat()
    mask = np.array(Image.open(mask_path))
    buffer = io.BytesIO()
    Image.fromarray(np.zeros_like(mask)).save(buffer, format="PNG")  # all background: a smaller PNG
    new_bytes = buffer.getvalue()
    assert len(new_bytes) < len(old_bytes)
    mask_path.write_bytes(new_bytes + b"\0" * (len(old_bytes) - len(new_bytes)))  # padded past IEND to the old size
    os.utime(mask_path, ns=(old_stat.st_atime_ns, old_stat.st_mtime_ns))
    assert mask_path.stat().st_size == old_stat.st_size and mask_path.stat().st_mtime_ns == old_stat.st_mtime_ns

    after = load_voc(data, cache_dir=tmp_path / "cache")
    row = after["train"]["id"].index("synth_000002")
    assert np.array(before["train"][row]["label"]).any()
    assert not np.array(after["train"][row]["label"]).any()


def test_option_mistakes_are_reported_before_torch_is_imported(tmp_path):
    import subprocess
    import sys

    from .conftest import RUN_SEG, script_env

    probe = (f"import runpy, sys; module = runpy.run_path({str(RUN_SEG)!r}, run_name='probe'); "
             "status = module['main'](['--model', 'unet', '--num_train_epoch', '1']); "
             "print(status, 'torch' in sys.modules, 'transformers' in sys.modules)")
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=script_env(tmp_path),
                               timeout=120)
    assert completed.stdout.split() == ["2", "False", "False"], completed.stderr[-2000:]
    assert completed.stderr.startswith(
        "error: unrecognised argument(s): --num_train_epoch (did you mean --num_train_epochs?)"
    )


def test_the_quick_check_accepts_every_option_the_parser_takes():
    """It reads the names from source: it must never refuse what the full parser accepts."""
    from hf_segcompare.config.arguments import build_parser
    from hf_segcompare.config.option_names import quick_check

    options = [option for option in build_parser()._option_string_actions if option.startswith("--")]
    assert len(options) > 200
    for option in options:
        assert quick_check([option] + (["unet"] if option == "--model" else ["1"])) is None, option
    # Model names are the registry's, which needs no torch: an unknown one is answered here already.
    assert quick_check(["--model", "registered-elsewhere"]).startswith("unknown model 'registered-elsewhere'")
    assert "did you mean --per_device_train_batch_size" in quick_check(["--per_device_train_batchsize", "4"])


def test_augmentation_does_not_depend_on_the_number_of_data_loader_workers(voc_tree, tmp_path):
    """Each sample's crop comes from its own seed: worker processes draw exactly what the main process would."""
    weights = []
    for workers in ("0", "2"):
        output_dir = tmp_path / f"workers{workers}"
        run(
            *parse_args(
                [
                    "--model", "segformer-tiny", "--from_scratch",
                    *_train_args(voc_tree, output_dir, tmp_path / "c"),
                    "--max_steps", "5", "--save_strategy", "no", "--eval_strategy", "no", "--dataloader_num_workers",
                    workers,
                ]
            )
        )
        weights.append(load_file(output_dir / "model.safetensors"))
    for other in weights[1:]:
        for key in weights[0]:
            assert torch.equal(weights[0][key], other[key]), key


def test_rerunning_a_finished_run_resumes_at_its_end_and_keeps_its_record(voc_tree, tmp_path):
    args = ["--model", "segformer-tiny", "--from_scratch", *_train_args(voc_tree, tmp_path / "out", tmp_path / "c"),
            "--save_strategy", "epoch", "--eval_strategy", "epoch", "--max_steps", "8"]
    run(*parse_args(args))
    first = json.loads((tmp_path / "out" / "results.json").read_text())
    (tmp_path / "out" / "results.json").unlink()  # as after a kill during the final evaluation
    run(*parse_args(args))  # the same command again
    again = json.loads((tmp_path / "out" / "results.json").read_text())
    assert again["train"]["resumed_from"] == "checkpoint-8" and again["train"]["steps"] == 8
    assert again["train"]["final_train_loss"] == pytest.approx(first["train"]["final_train_loss"])
    assert again["train"]["wall_time_s"] >= 0.5 * first["train"]["wall_time_s"]  # the whole run, not the 0 steps
    assert again["evaluations"] == first["evaluations"] and again["train_loss"] == first["train_loss"]


def test_a_finished_step_budget_is_final(voc_tree, tmp_path, capsys):
    """A budget ending mid-epoch (3 of 4 steps): Trainer's own resume would train a 4th step and
    rewrite the model. The same command again trains nothing and rewrites nothing; a run killed in
    its final evaluation is taken up without a step; a checkpoint past a smaller budget is refused."""
    output = tmp_path / "out"
    args = ["--model", "segformer-tiny", "--from_scratch", *_train_args(voc_tree, output, tmp_path / "c"),
            "--max_steps", "3", "--save_steps", "3", "--eval_steps", "3"]
    status, stderr, _ = run_seg_in_process(args, capsys)
    assert status == 0, stderr[-3000:]
    files = {name: (output / name).read_bytes() for name in ("model.safetensors", "results.json", "README.md")}
    status, stderr, stdout = run_seg_in_process(args, capsys)
    assert status == 0, stderr[-3000:]
    assert f"nothing left to train: {output} holds this run, finished at step 3 (its budget)" in stdout
    assert {name: (output / name).read_bytes() for name in files} == files
    assert sorted(path.name for path in output.glob("checkpoint-*")) == ["checkpoint-3"]
    # Another command is not the same run: said, and nothing changed.
    status, stderr, _ = run_seg_in_process([*args, "--learning_rate", "1e-5"], capsys)
    assert status == 2 and (f"error: --output_dir {output} holds this run finished at step 3, with other options "
                            "(learning_rate 0.002 -> 1e-05)") in stderr
    assert {name: (output / name).read_bytes() for name in files} == files
    # Killed during the final evaluation: the record is written, no step trained, the same weights.
    (output / "results.json").unlink()
    status, stderr, stdout = run_seg_in_process(args, capsys)
    assert status == 0, stderr[-3000:]
    assert "nothing left to train: checkpoint-3 holds the whole budget (3 steps)" in stdout
    assert (output / "model.safetensors").read_bytes() == files["model.safetensors"]
    record = json.loads((output / "results.json").read_text())
    first = json.loads(files["results.json"])
    assert record["train"]["steps"] == 3 and record["final_eval"]["eval_mean_iou"] == first["final_eval"][
        "eval_mean_iou"] and record["recipe"]["param_groups"] == first["recipe"]["param_groups"]
    status, stderr, _ = run_seg_in_process([*args, "--max_steps", "2"], capsys)  # the last one given wins
    assert status == 2 and ("error: checkpoint-3 has trained 3 steps, more than the budget asked for "
                            "(--max_steps 2)") in stderr


def test_a_batch_larger_than_the_data_is_refused_and_throughput_counts_what_each_step_saw(voc_tree, tmp_path, capsys):
    """16 images at batch 32 would train on 16 a step while card and budget said 32: refused. At batch
    12 the second step of each epoch sees the 4 left: 16 samples in 2 steps, not 24."""
    output = tmp_path / "out"
    args = ["--model", "segformer-tiny", "--from_scratch", *_train_args(voc_tree, output, tmp_path / "c"),
            "--max_steps", "2", "--eval_strategy", "no", "--do_eval", "false", "--save_strategy", "no"]
    status, stderr, _ = run_seg_in_process([*args, "--per_device_train_batch_size", "32"], capsys)
    line = _one_error_line(stderr)
    assert status == 2 and "a global batch of 32 (32 per process x 1 process(es) x 1 accumulation step(s)) is " \
        "larger than the 16 training images" in line and "a global batch of 16 or fewer" in line
    assert not output.exists()
    status, stderr, stdout = run_seg_in_process([*args, "--per_device_train_batch_size", "12"], capsys)
    assert status == 0, stderr[-3000:]
    assert "2 optimizer steps at a global batch of 12 (1.00 epochs of 16 images)" in stdout
    train = json.loads((output / "results.json").read_text())["train"]
    assert train["samples_per_second"] * train["wall_time_s"] == pytest.approx(16)


def test_save_and_eval_steps_without_their_strategy_are_honoured(voc_tree, tmp_path, capsys):
    """The recipe's per-epoch saving and evaluation would win over --save_steps / --eval_steps given alone."""
    output = tmp_path / "out"
    args = ["--model", "segformer-tiny", "--from_scratch", "--recipe", "demo", "--dataset_name", "voc", "--data_dir",
            str(voc_tree), "--output_dir", str(output), "--per_device_train_batch_size", "8", "--max_steps", "4",
            "--save_steps", "1", "--eval_steps", "2", "--save_total_limit", "9"]
    status, stderr, _ = run_seg_in_process(args, capsys)
    assert status == 0, stderr[-3000:]
    assert sorted(path.name for path in output.glob("checkpoint-*")) == [f"checkpoint-{step}" for step in (1, 2, 3, 4)]
    record = json.loads((output / "results.json").read_text())
    assert [entry["step"] for entry in record["evaluations"]] == [2, 4]
