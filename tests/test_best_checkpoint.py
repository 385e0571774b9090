"""--load_best_model_at_end and --early_stopping_patience: the model published is the best
evaluation's, its figures are its own, the last evaluation is reported beside it, and a resumed run
keeps the patience count."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file
from transformers import Trainer

from hf_segcompare.engine.trainer import SegTrainer

from .conftest import run_seg_in_process


def _args(voc_tree, output_dir, *extra):
    return ["--model", "segformer-tiny", "--from_scratch", "--recipe", "demo", "--dataset_name", "voc",
            "--data_dir", str(voc_tree), "--output_dir", str(output_dir), "--per_device_train_batch_size", "4",
            "--eval_strategy", "steps", "--eval_steps", "1", "--save_strategy", "steps", "--save_steps", "1",
            "--lr_scheduler_type", "constant", "--warmup_steps", "0", "--logging_steps", "1",
            "--load_best_model_at_end", *extra]


# At this learning rate segformer-tiny's first step scores better than its second (0.0436 against 0.0418).
BEST_FIRST = ("--learning_rate", "0.01", "--max_steps", "2")


def test_the_best_evaluation_not_the_last_is_published_with_its_own_figures(voc_tree, tmp_path, capsys):
    output_dir = tmp_path / "out"
    status, stderr, stdout = run_seg_in_process(_args(voc_tree, output_dir, *BEST_FIRST), capsys)
    assert status == 0, stderr[-3000:]
    assert "published model: checkpoint-1, the best mean_iou" in stdout
    record = json.loads((output_dir / "results.json").read_text())
    first, last = record["evaluations"]
    assert first["eval_mean_iou"] > last["eval_mean_iou"]
    published = record["published_model"]
    assert (published["step"], published["checkpoint"], published["last_step"]) == (1, "checkpoint-1", 2)
    assert published["selected_by"] == "eval_mean_iou" and published["greater_is_better"] is True
    assert published["last_eval"]["eval_mean_iou"] == last["eval_mean_iou"]
    # the record's figures are the published weights', scored again: equal to their logged evaluation
    final = record["final_eval"]
    assert final["step"] == 1 and final["eval_mean_iou"] == pytest.approx(first["eval_mean_iou"], abs=1e-12)
    assert record["bootstrap"]["mean_iou"] == pytest.approx(final["eval_mean_iou"], abs=1e-12)
    # the published weights are checkpoint-1's, tensor for tensor; both checkpoints are kept
    saved = load_file(output_dir / "model.safetensors")
    best = load_file(output_dir / "checkpoint-1" / "model.safetensors")
    assert saved.keys() == best.keys() and all((saved[key] == best[key]).all() for key in saved)
    assert sorted(path.name for path in output_dir.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    card = (output_dir / "README.md").read_text()
    assert "The model published is step 1's (`checkpoint-1`), the best by `eval_mean_iou`" in card
    assert f"The last evaluation, step 2, scored mean IoU {last['eval_mean_iou']:.4f}" in card

    def files():  # the run lock aside
        return {path.name: path.read_bytes() for path in output_dir.iterdir() if path.is_file()
                and not path.name.startswith(".")}

    before = files()
    status, stderr, stdout = run_seg_in_process(_args(voc_tree, output_dir, *BEST_FIRST), capsys)
    assert status == 0 and "nothing left to train" in stdout, stderr[-3000:]
    assert files() == before


def test_trainers_own_best_model_load_would_publish_other_weights_and_the_run_stops(voc_tree, tmp_path, capsys,
                                                                                    monkeypatch):
    """transformers 5's Trainer loads the best checkpoint with load_state_dict(strict=False), missing
    SegFormer's weights saved under legacy names (#43701): the re-scoring catches it, nothing is published."""
    monkeypatch.setattr(SegTrainer, "_load_best_model", Trainer._load_best_model)
    output_dir = tmp_path / "out"
    status, stderr, _ = run_seg_in_process(_args(voc_tree, output_dir, *BEST_FIRST), capsys)
    assert status == 1 and "the weights restored are not the ones evaluated. Nothing was published" in stderr
    assert not (output_dir / "results.json").exists() and not (output_dir / "README.md").exists()


@pytest.mark.fast  # a resume that is not the run it continues: accelerate 1.6 and older fail it
def test_early_stopping_stops_after_the_patience_and_a_resume_keeps_the_count(voc_tree, tmp_path, capsys):
    # learning rate 0: only BatchNorm's running statistics move, so the scores wander without a trend
    flat = ("--learning_rate", "0", "--early_stopping_patience", "2")
    output_dir = tmp_path / "out"
    status, stderr, _ = run_seg_in_process(_args(voc_tree, output_dir, *flat, "--max_steps", "10"), capsys)
    assert status == 0, stderr[-3000:]
    record = json.loads((output_dir / "results.json").read_text())
    steps, scores = record["train"]["steps"], [entry["eval_mean_iou"] for entry in record["evaluations"]]
    assert steps < 10 and len(scores) == steps
    best_step = record["published_model"]["step"]
    assert best_step == steps - 2 and scores[best_step - 1] == max(scores)  # then 2 evaluations without improvement
    assert all(score <= scores[best_step - 1] for score in scores[best_step:])
    assert record["published_model"]["stopped_early"] is True
    assert f"training stopped at step {steps} after 2 evaluation(s) without improvement" in \
        (output_dir / "README.md").read_text()

    # The same command again: the run is finished where early stopping ended it, not trained on to its budget.
    def files():
        return {path.relative_to(output_dir): path.read_bytes() for path in output_dir.rglob("*") if path.is_file()
                and not path.name.startswith(".")}

    before = files()
    status, stderr, stdout = run_seg_in_process(_args(voc_tree, output_dir, *flat, "--max_steps", "10"), capsys)
    assert status == 0, stderr[-3000:]
    assert f"holds this run, finished at step {steps} (stopped early after 2 evaluation(s) without improvement)" \
        in stdout
    assert files() == before

    # interrupted one step before (one evaluation without improvement counted), then resumed with the
    # whole budget: it stops where the uninterrupted run did (with the count reset it would go on)
    resumed = tmp_path / "resumed"
    status, stderr, _ = run_seg_in_process(_args(voc_tree, resumed, *flat, "--max_steps", str(steps - 1)), capsys)
    assert status == 0, stderr[-3000:]
    status, stderr, _ = run_seg_in_process(_args(voc_tree, resumed, *flat, "--max_steps", "10",
                                                 "--allow_changed_options"), capsys)
    assert status == 0, stderr[-3000:]
    again = json.loads((resumed / "results.json").read_text())
    assert again["train"]["steps"] == steps and again["published_model"]["step"] == best_step
    assert [entry["eval_mean_iou"] for entry in again["evaluations"]] == scores


def test_early_stopping_without_the_best_model_and_mismatched_strategies_are_one_line_errors(tmp_path, capsys):
    status, stderr, _ = run_seg_in_process(["--model", "unet-tiny", "--early_stopping_patience", "2",
                                            "--output_dir", str(tmp_path / "a")], capsys)
    assert status == 2 and stderr.startswith("error: --early_stopping_patience needs --load_best_model_at_end")
    status, stderr, _ = run_seg_in_process(["--model", "unet-tiny", "--load_best_model_at_end", "--eval_strategy",
                                            "steps", "--save_strategy", "epoch", "--output_dir", str(tmp_path / "b")],
                                           capsys)
    assert status == 2 and stderr.startswith("error: ") and "load_best_model_at_end" in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
