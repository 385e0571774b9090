"""One run: train and/or evaluate one model as the arguments say, and publish what it measured.

`run(model_args, data_args, training_args)` resolves the options once (`hf_segcompare.pipeline.resolve`),
checks the output folder (`output_folder`), loads the data and the model (`loading`), trains and
evaluates through `SegTrainer` built from the plan's explicit values, and writes into the output
folder: ``run_args.json`` (the resolved arguments, before anything is trained), the model with its
image processor, its record (`hf_segcompare.report.results.RunResults`: results.json for a training
run), the sample predictions and the card. The command line (``hf_segcompare.cli.run_seg``) is `parse_args`
followed by `run`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from transformers import set_seed

from ..config.arguments import DataArguments, ModelArguments
from ..config.run_args import write_run_args
from ..data.segmentation_data import SegmentationData
from ..engine.callbacks import samples_seen, steps_per_epoch
from ..engine.checkpoints import describe_write_error
from ..engine.run_lock import RunLock
from ..engine.threads import apply_cpu_threads
from ..engine.trainer import SegTrainer, with_fields
from ..engine.training_args import SegTrainingArguments
from ..errors import CheckpointError, TrainingDiverged
from ..evaluation.cost import measure_inference
from ..evaluation.inference import SegImageProcessor
from ..evaluation.per_image import per_image_file
from ..evaluation.samples import plot_sample_predictions
from ..report.card import write_model_card
from ..report.figures import SAMPLE_PREDICTIONS
from ..report.push import push_folder
from ..report.results import RESULTS_FILE, RunResults, TrainSummary, record_name
from .loading import check_start, load_data, load_model
from .output_folder import at_budget, finished_record, prepare_output_dir, stopped_early
from .record import TrainingOutcome, collect_results
from .resolve import RunPlan, resolve_run
from .resume_check import refuse_other_options, resume_changes


def _mean_logged_loss(log_history: list[dict]) -> float | None:
    """Mean training loss per step over the logged entries (each covers the steps since the last)."""
    total, steps, last_step = 0.0, 0, 0
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            covered = entry["step"] - last_step
            total, steps, last_step = total + entry["loss"] * covered, steps + covered, entry["step"]
    return total / steps if steps else None


def _whole_run_loss(log_history: list[dict], this_call: float, resume_from: str | None) -> float | None:
    logged = _mean_logged_loss(log_history)
    if logged is not None:
        return logged
    return None if resume_from else this_call


def _train_and_evaluate(trainer: SegTrainer, resume_from: str | None, whole_budget: bool = False) -> TrainingOutcome:
    """Train (resuming from `resume_from` if set; taking it up without a step when it holds the whole
    budget, `whole_budget`) and save if asked, then make sure the published weights were evaluated."""
    train = _train(trainer, resume_from, whole_budget) if trainer.args.do_train else None
    evaluations, best = _evaluate_published(trainer)
    return TrainingOutcome(train, evaluations, _evaluate_augmented(trainer), best)


def _train(trainer: SegTrainer, resume_from: str | None, whole_budget: bool) -> TrainSummary:
    """Train and save the model; the train summary of the whole run (a resumed one included)."""
    args = trainer.args
    if whole_budget:
        trainer.resume_finished(resume_from)
        if trainer.is_world_process_zero():
            print(f"nothing left to train: {Path(resume_from).name} holds the whole budget "
                  f"({trainer.state.global_step} steps); evaluating and writing the record", flush=True)
    try:
        train_output = None if whole_budget else trainer.train(resume_from_checkpoint=resume_from)
    except KeyboardInterrupt:
        raise trainer.interrupted() from None
    try:
        trainer.save_model()
    except (OSError, RuntimeError) as error:
        raise CheckpointError(describe_write_error(error, Path(args.output_dir))
                              + ". The checkpoints already written are intact.") from None
    wall_time = trainer.resource_meter.seconds()
    # Trainer's own figures cover this call only; a resumed run reports the whole run, and counts the
    # samples it saw (a batch larger than the data does not see more of it).
    batch = args.train_batch_size * args.gradient_accumulation_steps * args.world_size
    samples = samples_seen(trainer.state.global_step, steps_per_epoch(trainer.get_train_dataloader(), args),
                           len(trainer.train_dataset), batch)
    return TrainSummary(
        wall_time_s=wall_time,
        samples_per_second=samples / wall_time if wall_time else 0.0,
        steps=trainer.state.global_step,
        epochs=trainer.state.epoch,
        # Trainer's own mean covers this call only: after a resume, only the logged losses span the run.
        final_train_loss=_whole_run_loss(trainer.state.log_history,
                                         train_output.training_loss if train_output else None, resume_from),
        resumed_from=Path(resume_from).name if resume_from else None,
    )


def _evaluate_published(trainer: SegTrainer) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Every evaluation of the run, the published weights' among them, and the best checkpoint's
    evaluation when it is not the last step's (None otherwise)."""
    args = trainer.args
    evaluations = trainer.logged_evaluations()
    step = trainer.state.global_step
    published = trainer.published_step()
    best = None
    if args.do_eval and published != step:
        # The best checkpoint's weights are the model now: its record, interval, confusion matrix and
        # card must be theirs, so they are scored again (the last evaluation stays in the list).
        trainer.check_weights_finite("the evaluation of the best model")
        logged = next(entry for entry in evaluations if entry.get("step") == published)
        best = {**logged, **trainer.evaluate(), "step": published}
        _check_same_score(best, logged, trainer.state.best_model_checkpoint)
    scored_last_step = bool(evaluations) and evaluations[-1].get("step") == step
    # The interval and the comparison need the final weights' per-image counts: a run taken up at its
    # budget (or whose last evaluation a resumed process did not see) scores them once more. Its
    # logged evaluation of that step stays the record's: a resumed run is the run it continues.
    if args.do_eval and best is None and (not scored_last_step or trainer.final_counts() is None):
        trainer.check_weights_finite("the final evaluation")
        final = {**trainer.evaluate(), "epoch": trainer.state.epoch, "step": step}
        if not scored_last_step:
            evaluations.append(final)
    return evaluations, best


def _evaluate_augmented(trainer: SegTrainer) -> dict[str, Any] | None:
    """The published weights under the protocol's test-time augmentation (None: it has none)."""
    if not trainer.args.do_eval or trainer.augmented_protocol is None:
        return None
    scores = trainer.evaluate_augmented()
    return {"protocol": trainer.augmented_protocol.record(),
            # the eval_ names of final_eval, so the card reads both alike
            **{"eval_" + key.removeprefix("eval_tta_"): value for key, value in scores.items()
               if key.startswith("eval_tta_")},
            "step": trainer.published_step()}


def _check_same_score(best: dict[str, Any], logged: dict[str, Any], checkpoint: str) -> None:
    """The best checkpoint's weights, restored, must score what its evaluation logged: else the
    model about to be published is not the one that was evaluated, and nothing is."""
    if abs(best["eval_mean_iou"] - logged["eval_mean_iou"]) > 1e-6:
        raise CheckpointError(
            f"{checkpoint} scores mean IoU {best['eval_mean_iou']:.6f} now, but {logged['eval_mean_iou']:.6f} when it "
            "was evaluated during training: the weights restored are not the ones evaluated. Nothing was published; "
            "the checkpoints are intact.")


def _publish_training(results: RunResults, trainer: SegTrainer, dataset: SegmentationData, push_repo: str | None,
                      hub_token: str | None, hub_private: bool | None) -> None:
    """The record, image processor and card of a finished training run; then the push, if asked
    (`push_folder` adds the commit to the local record; `results` gets it too)."""
    output_dir = Path(trainer.args.output_dir)
    protocol = trainer.eval_protocol
    SegImageProcessor.for_model(trainer.model, short_side=protocol.short_side if protocol and
                                protocol.resize == "short_side" else None).save_pretrained(output_dir)
    _write_per_image(trainer, output_dir / RESULTS_FILE)  # first: a finished record's counts are always there
    results.write(output_dir / RESULTS_FILE)
    # Drawn now, while the model is at hand: the card reads only the record and the folder.
    plot_sample_predictions(trainer.model, dataset["validation"], output_dir / SAMPLE_PREDICTIONS)
    # Our card, written after save_model: Trainer's generic one would carry an empty model-index.
    write_model_card(results, output_dir, model_ref=push_repo or trainer.args.hub_model_id)
    if push_repo:  # records the commit in the local results.json
        commit_url = push_folder(output_dir, push_repo, token=hub_token, private=hub_private)
        results.hub = {"repo_id": push_repo, "commit_url": commit_url}


def _write_per_image(trainer: SegTrainer, record_file: Path) -> None:
    """The final evaluation's per-image counts beside its record (`per_image_file`)."""
    counts = trainer.final_counts()
    if counts is not None:
        counts.save(per_image_file(record_file))


def _publish_evaluation(results: RunResults, trainer: SegTrainer, output_dir: Path,
                        hub_model_id: str | None) -> Path:
    """An evaluation-only run's record, beside the model's: never results.json, which belongs to
    the training run. A trained folder's card is re-rendered with the evaluation added."""
    path = output_dir / record_name(results)
    _write_per_image(trainer, path)
    results.write(path)
    trained = output_dir / RESULTS_FILE
    if trained.is_file():
        training_record = RunResults.read(trained)
        if training_record.status == "complete":
            write_model_card(training_record, output_dir, model_ref=hub_model_id)
    return path


def _build_trainer(plan: RunPlan, model, dataset: SegmentationData) -> SegTrainer:
    """`SegTrainer` from the plan's explicit values. We push once, ourselves, after our card is
    written; and the token never enters the arguments that Trainer pickles into training_args.bin
    or that the record holds."""
    args = plan.training_args
    data = plan.data_args
    return SegTrainer(model, with_fields(args, hub_token=None, push_to_hub=False),
                      dataset["train"] if args.do_train else None, dataset["validation"],
                      crop_size=data.crop_size, eval_size=data.eval_size, eval_padding=data.eval_padding,
                      eval_protocol=plan.eval_protocol,
                      loss=plan.segmentation_loss(model.config.semantic_loss_ignore_index))


def _publish_finished(finished: RunResults, plan: RunPlan) -> RunResults:
    """A finished run asked for again: nothing trained or rewritten (a push asked for publishes it
    as it is). Another command is not the same run: said, not ignored (`refuse_other_options`)."""
    args = plan.training_args
    refuse_other_options(finished, plan)
    if args.process_index == 0:
        why = (f"stopped early after {finished.published_model.get('early_stopping_patience')} evaluation(s) without "
               "improvement" if stopped_early(finished) else "its budget")
        print(f"nothing left to train: {args.output_dir} holds this run, finished at step "
              f"{finished.train.steps} ({why}); nothing was trained or rewritten "
              "(--overwrite_output_dir trains it afresh)", flush=True)
        if plan.push_repo:
            finished.hub = {"repo_id": plan.push_repo, "commit_url": push_folder(
                args.output_dir, plan.push_repo, token=args.hub_token, private=args.hub_private_repo)}
    return finished


def run(model_args: ModelArguments, data_args: DataArguments, training_args: SegTrainingArguments) -> RunResults:
    """Train and/or evaluate one model as the arguments say; return (and save) its `RunResults`.

    The arguments are not changed: the sizes and sources the run resolves go into its plan (and into
    run_args.json and the record).

    One run at a time per output folder (`RunLock`): a second run into a folder in use stops at once.

    Raises:
        UsageError (DataError among them): bad input, before any data loads where the cause is
            knowable up front; an output folder another run is using.
        TrainingDiverged: non-finite loss, gradients or weights; the record says ``diverged``, and
            no card is written or pushed.
        CheckpointError: a checkpoint or the model could not be written (e.g. a full disk).
        PushError: trained and saved, but the push failed; the message says how to retry.
    """
    lock = RunLock(training_args.output_dir, enabled=training_args.process_index == 0)
    try:
        return _run(resolve_run(model_args, data_args, training_args), lock)
    finally:
        lock.release()


def _run(plan: RunPlan, lock: RunLock) -> RunResults:
    args = plan.training_args
    apply_cpu_threads()  # accelerate would leave a CPU process one thread of the machine's cores
    resume_from = prepare_output_dir(args, lock)
    plan = plan.resuming(resume_from, at_budget(resume_from, args))
    finished = finished_record(Path(args.output_dir), plan.resume_from, plan.whole_budget)
    if finished is not None:
        return _publish_finished(finished, plan)
    check_start(plan.model_args)  # before the data: a missing model should not wait for it
    dataset = load_data(plan.data_args, args)
    plan = plan.fitted_to(dataset)
    if args.process_index == 0:
        print("\n".join(plan.first_lines(dataset)), flush=True)
    # Trainer seeds itself only once the model exists: seed first, or every run would start from
    # other random weights (a new head included) and --seed would not repeat a run.
    set_seed(args.seed)
    trainer = _build_trainer(plan, load_model(plan.model_args, dataset.labels), dataset)
    lock.acquire()  # a folder that did not exist is locked as the run first writes it
    changes = resume_changes(plan.resume_from, plan, trainer) if plan.resume_from and args.do_train else []
    # Written before anything trains, so even an interrupted run says how it was started.
    if args.process_index == 0 and args.do_train:
        write_run_args(args.output_dir, plan.recorded_model_args(), plan.data_args, args, changes)
    try:
        outcome = _train_and_evaluate(trainer, plan.resume_from, plan.whole_budget)
    except TrainingDiverged as error:
        results = collect_results(plan, trainer, dataset, TrainingOutcome(None, trainer.logged_evaluations()),
                                  changes=changes, diverged={"step": error.step, "message": str(error)})
        if trainer.is_world_process_zero():
            results.write(Path(args.output_dir) / RESULTS_FILE)
        raise
    results = collect_results(plan, trainer, dataset, outcome, changes=changes)
    if trainer.is_world_process_zero():
        if args.do_train:
            # Measured on the main process only, after every collective step of the run (and after its
            # peak memory was read, which it would otherwise add to), before the record is written.
            results = dataclasses.replace(results, inference=measure_inference(
                trainer.model, plan.data_args.eval_size, args.per_device_eval_batch_size,
                results.environment["device"], autocast=trainer.autocast_smart_context_manager))
            _publish_training(results, trainer, dataset, plan.push_repo, args.hub_token, args.hub_private_repo)
        else:
            _publish_evaluation(results, trainer, Path(args.output_dir), args.hub_model_id)
    return results


__all__ = ["run"]
