"""One run: train and/or evaluate one model as the arguments say, and publish what it measured.

`run(model_args, data_args, training_args)` loads the data and the model (`hf_segcompare.pipeline.loading`),
trains and evaluates through `SegTrainer`, and writes into the output folder: ``run_args.json``
(the resolved arguments, before anything is trained), the model with its image processor, its card,
and its record (`hf_segcompare.report.results.RunResults`: results.json for a training run). The command
line (``scripts/run_seg.py``) is `parse_args` followed by `run`.
"""

from __future__ import annotations

import dataclasses
import errno
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments, set_seed

from ..config.arguments import (
    RUN_FACTS,
    DataArguments,
    ModelArguments,
    check_args,
    resolved_args,
    run_facts,
    write_run_args,
)
from ..engine.callbacks import ChangedOptimizerOptions, samples_seen, steps_per_epoch
from ..engine.checkpoints import clear_previous_run, holds_the_whole_budget, resolve_resume, trained_steps
from ..engine.run_lock import RunLock
from ..engine.threads import apply_cpu_threads
from ..engine.trainer import SegTrainer, describe_write_error, with_fields
from ..errors import CheckpointError, TrainingDiverged, UsageError
from ..evaluation.cost import measure_inference
from ..evaluation.inference import SegImageProcessor
from ..models import count_parameters, get_entry, model_normalization
from ..models.recipes import default_protocol, get_recipe, recipe_reason
from ..report.cards import write_model_card
from ..report.push import push_folder
from ..report.results import RESULTS_FILE, RunResults, record_name
from .loading import check_start, load_data, load_model
from .resume_check import OPTIMIZER_OPTIONS, changed_options, check_changes, saved_options


def _environment(trainer: SegTrainer) -> dict[str, Any]:
    import accelerate
    import datasets
    import segmentation_models_pytorch
    import torchvision
    import transformers

    device = trainer.args.device
    return {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()})",
        "num_processes": trainer.accelerator.num_processes,
        "torch_threads": torch.get_num_threads(),  # intra-op CPU threads of each process
        "distributed_type": str(trainer.accelerator.distributed_type),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "datasets": datasets.__version__,
        "segmentation_models_pytorch": segmentation_models_pytorch.__version__,
    }


def optimizer_groups(trainer: SegTrainer) -> list[dict[str, Any]]:
    """The parameter groups of the optimizer Trainer trained with, as results.json records them."""
    if trainer.optimizer is None:
        return []
    return [
        {
            "name": group.get("name", f"group {index}"),
            "initial_lr": group.get("initial_lr", group["lr"]),
            "weight_decay": group.get("weight_decay", 0.0),
            "parameters": sum(parameter.numel() for parameter in group["params"]),
        }
        for index, group in enumerate(trainer.optimizer.param_groups)
    ]


def _recipe_record(model_name: str, data_args: DataArguments, trainer: SegTrainer) -> dict[str, Any] | None:
    """The recipe, the values given on top of it, and the optimizer's groups as Trainer built them."""
    args = trainer.args
    if not getattr(args, "recipe", None):
        return None
    recipe = get_recipe(args.recipe, model_name, data_args.dataset_name)
    defaults = {**recipe.training_defaults(), **recipe.data_defaults(), "short_side": recipe.short_side}
    current = {key: getattr(args, key, getattr(data_args, key, None)) for key in defaults}
    overridden = {key: current[key] for key, value in defaults.items()
                  if key != "recipe" and value is not None and current[key] != value}
    return {
        **recipe.summary(),
        "overridden": {key: getattr(value, "value", value) for key, value in overridden.items()},
        "global_batch_size": args.global_batch_size(),
        # accelerate wraps the optimizer; the recipe's is inside.
        "optimizer": type(getattr(trainer.optimizer, "optimizer", trainer.optimizer)).__name__
        if trainer.optimizer is not None else None,
        "param_groups": optimizer_groups(trainer),
    }


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


def _train_and_evaluate(trainer: SegTrainer, resume_from: str | None, at_budget: bool = False
                        ) -> tuple[dict[str, Any] | None, list[dict], dict[str, Any] | None]:
    """Train (resuming from `resume_from` if set; taking it up without a step when it holds the whole
    budget, `at_budget`) and save if asked, then make sure the last step was evaluated; return the
    train summary, every evaluation (those before a resume included) and the test-time-augmented
    evaluation of the final weights (None unless the protocol asks for one)."""
    args = trainer.args
    train_summary = None
    if args.do_train:
        if at_budget:
            trainer.resume_finished(resume_from)
            if trainer.is_world_process_zero():
                print(f"nothing left to train: {Path(resume_from).name} holds the whole budget "
                      f"({trainer.state.global_step} steps); evaluating and writing the record", flush=True)
        try:
            train_output = None if at_budget else trainer.train(resume_from_checkpoint=resume_from)
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
        train_summary = {
            "wall_time_s": wall_time,
            "samples_per_second": samples / wall_time if wall_time else 0.0,
            "steps": trainer.state.global_step,
            "epochs": trainer.state.epoch,
            # Trainer's own mean covers this call only: after a resume, only the logged losses span the run.
            "final_train_loss": _whole_run_loss(trainer.state.log_history,
                                                train_output.training_loss if train_output else None, resume_from),
            "resumed_from": Path(resume_from).name if resume_from else None,
        }
    evaluations = [entry for entry in trainer.state.log_history if "eval_mean_iou" in entry]
    if args.do_eval and (not evaluations or evaluations[-1].get("step") != trainer.state.global_step):
        trainer.check_weights_finite("the final evaluation")
        final = trainer.evaluate()
        evaluations.append({**final, "epoch": trainer.state.epoch, "step": trainer.state.global_step})
    augmented = None
    if args.do_eval and trainer.augmented_protocol is not None:
        scores = trainer.evaluate_augmented()
        augmented = {"protocol": trainer.augmented_protocol.record(),
                     # the eval_ names of final_eval, so the card reads both alike
                     **{"eval_" + key.removeprefix("eval_tta_"): value for key, value in scores.items()
                        if key.startswith("eval_tta_")},
                     "step": trainer.state.global_step}
    return train_summary, evaluations, augmented


def _as_lists(matrix) -> list[list[int]] | None:
    return None if matrix is None else [[int(count) for count in row] for row in matrix]


def _collect_results(model_args: ModelArguments, data_args: DataArguments, trainer: SegTrainer, dataset,
                     data_dir: str, train_summary: dict[str, Any] | None, evaluations: list[dict],
                     status: str = "complete", augmented: dict[str, Any] | None = None,
                     changes: list[dict[str, Any]] | None = None) -> RunResults:
    """The run's `RunResults` (see there for `status`)."""
    # Every rank measured its own peak; the run's figure is the largest.
    peak = trainer.resource_meter.peak_memory()
    peak["bytes"] = int(trainer.accelerator.gather(torch.tensor([peak["bytes"]], device=trainer.args.device)).max())
    peak["per_process"] = trainer.accelerator.num_processes > 1
    entry = get_entry(model_args.model)
    labels = dataset.label_info
    normalization = model_normalization(trainer.model)
    return RunResults(
        status=status,
        model=model_args.model,
        architecture=entry.description,
        family=entry.family,
        parameters=count_parameters(trainer.model),
        dataset={
            "name": data_args.dataset_name,
            "path": str(data_dir),
            "dropped_invalid": getattr(dataset, "dropped", []),
            "train_samples": len(dataset["train"]),
            "validation_samples": len(dataset["validation"]),
            **labels.record(),  # class_names, ignore_index, where the names came from, label map / reduction
            "validation_split": getattr(dataset, "split_info", None),
            "columns": getattr(dataset, "columns", None),
            "crop_size": data_args.crop_size,
            "eval_size": data_args.eval_size,
            "eval_padding": data_args.eval_padding,
            "protocol": data_args.protocol,
            "evaluation": trainer.eval_protocol.record() if trainer.eval_protocol else None,
        },
        train=train_summary,
        recipe=_recipe_record(model_args.model, data_args, trainer),
        normalization={"mean": list(normalization.mean), "std": list(normalization.std)},
        peak_memory=peak,
        evaluations=evaluations,
        final_eval=evaluations[-1] if evaluations and status == "complete" else None,
        augmented_eval=augmented if status == "complete" else None,
        confusion_matrix=_as_lists(trainer.confusion_matrices.get("eval")) if status == "complete" else None,
        changed_on_resume=list(changes or []),
        train_loss=[{"step": e["step"], "epoch": e.get("epoch"), "loss": e["loss"]}
                    for e in trainer.state.log_history if "loss" in e],
        environment=_environment(trainer),
        speed=trainer.speed_settings(),
        args={
            "model": dataclasses.asdict(model_args),
            "data": dataclasses.asdict(data_args),
            "training": trainer.args.to_dict(),  # to_dict() masks every *_token value
        },
    )


def _require_writable(folder: Path) -> None:
    """Fail before any data loads when the run could not write into `folder`; create nothing.

    The probe is a temporary file in `folder`, or in its nearest existing parent when it does not
    exist yet, removed at once: the real errno (read-only file system, permission, not a folder)
    goes into the message.
    """
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{existing} is a file")
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-test-"):
            pass
    except OSError as error:
        raise UsageError(f"--output_dir {folder}: cannot write there ({error.strerror or error}). "
                         "Pass an --output_dir you can write to.") from None


def prepare_output_dir(training_args: TrainingArguments, lock: RunLock | None = None) -> str | None:
    """Check the output folder and decide where training resumes from (None: a fresh start).

    A training run resumes from the last complete checkpoint in --output_dir unless
    --overwrite_output_dir, which first removes what an earlier run wrote there. A folder holding a
    finished run and no checkpoint is refused rather than overwritten.

    Raises:
        UsageError: the folder is not writable, the checkpoint asked for cannot be resumed, or the
            folder holds a finished run.
    """
    output_dir = Path(training_args.output_dir)
    _require_writable(output_dir)
    if lock is not None:  # before anything is decided about the folder, let alone removed from it
        lock.acquire_if_exists()
    if not training_args.do_train:
        return None
    overwrite = getattr(training_args, "overwrite_output_dir", False)
    try:
        resume_from = resolve_resume(training_args.resume_from_checkpoint, output_dir, overwrite)
    except CheckpointError as error:
        raise UsageError(str(error)) from None
    if overwrite and training_args.process_index == 0:
        clear_previous_run(output_dir)
    finished = [name for name in (RESULTS_FILE, "model.safetensors") if (output_dir / name).exists()]
    if resume_from is None and finished and not overwrite:
        record = RunResults.read(output_dir / RESULTS_FILE) if (output_dir / RESULTS_FILE).is_file() else None
        what = (f"a run that diverged at step {(record.diverged or {}).get('step')}"
                if record is not None and record.status == "diverged" else f"a finished run ({', '.join(finished)})")
        raise UsageError(f"--output_dir {output_dir} holds {what} and no checkpoint to resume: pass "
                         "--overwrite_output_dir to replace it, or another --output_dir.")
    # training_args keeps what the user gave (None, "last", a path): run_args.json replays that,
    # not this folder's checkpoint.
    return resume_from


def _resume_changes(resume_from: str, model_args: ModelArguments, data_args: DataArguments,
                    training_args: TrainingArguments, trainer: SegTrainer) -> list[dict[str, Any]]:
    """The options this resume changes against the run it continues (`hf_segcompare.pipeline.resume_check`),
    after refusing what may not change; those it accepts apply from here (the optimizer restored from
    the checkpoint takes the new learning rate and weight decay). Returns every change of the run,
    earlier resumes' included, as the record lists them.

    Raises:
        UsageError: an option that cannot change, or one changed without ``--allow_changed_options``.
    """
    saved = saved_options(training_args.output_dir)
    if saved is None:
        return []
    changes = changed_options(saved, _options_now(model_args, data_args, training_args), trained_steps(resume_from)[0])
    check_changes(changes, getattr(training_args, "allow_changed_options", False), resume_from)
    changed = {change["option"]: change for change in changes}
    if "weight_decay" in changed and not changed["weight_decay"]["before"]:
        raise UsageError("--weight_decay: the run trained without weight decay, so which parameter groups should "
                         "decay cannot be told from its optimizer; train afresh to change it.")
    if changed.keys() & set(OPTIMIZER_OPTIONS):
        lr = changed.get("learning_rate")
        trainer.add_callback(ChangedOptimizerOptions(
            lr_ratio=lr["after"] / lr["before"] if lr else None,
            weight_decay=changed["weight_decay"]["after"] if "weight_decay" in changed else None))
    if changes and training_args.process_index == 0:
        print(f"resuming with changed options: {'; '.join(_change_text(change) for change in changes)}", flush=True)
    return (saved.get(RUN_FACTS) or {}).get("changes", []) + changes


def _refuse_other_options(finished: RunResults, model_args: ModelArguments, data_args: DataArguments,
                          training_args: TrainingArguments) -> None:
    """Raise `UsageError` when a finished run is asked for again with other options than it ran with
    (those the data resolves, such as an unset crop, are compared only where given)."""
    saved = saved_options(training_args.output_dir)
    if saved is None:
        return
    changes = [change for change in changed_options(saved, _options_now(model_args, data_args, training_args),
                                                    finished.train["steps"]) if change["after"] is not None]
    if changes:
        listed = "; ".join(f"{change['option']} {change['before']} -> {change['after']}" for change in changes)
        raise UsageError(f"--output_dir {training_args.output_dir} holds this run finished at step "
                         f"{finished.train['steps']}, with other options ({listed}): pass --overwrite_output_dir to "
                         "train it again with these, or another --output_dir.")


def _options_now(model_args: ModelArguments, data_args: DataArguments,
                 training_args: TrainingArguments) -> dict[str, Any]:
    """This run's options and facts, as run_args.json holds the interrupted run's."""
    return {**resolved_args(model_args, data_args, training_args), RUN_FACTS: run_facts(training_args)}


def _change_text(change: dict[str, Any]) -> str:
    return f"{change['option']} {change['before']} -> {change['after']} from step {change['at_step']}"


def _at_budget(resume_from: str | None, training_args: TrainingArguments) -> bool:
    """Whether the checkpoint a training run resumes from holds its whole budget already.

    Raises:
        UsageError: the checkpoint is past the budget asked for, naming both numbers.
    """
    if resume_from is None or not training_args.do_train:
        return False
    try:
        return holds_the_whole_budget(resume_from, training_args.max_steps, training_args.num_train_epochs)
    except CheckpointError as error:
        raise UsageError(str(error)) from None


def _finished_record(output_dir: Path, resume_from: str) -> RunResults | None:
    """The complete record of the run that `resume_from` ended, if it was written (None when the
    run stopped before: e.g. killed during its final evaluation)."""
    record = output_dir / RESULTS_FILE
    if not record.is_file():
        return None
    results = RunResults.read(record)
    complete = results.status == "complete" and results.train is not None
    return results if complete and results.train.get("steps") == trained_steps(resume_from)[0] else None


def _publish_training(results: RunResults, trainer: SegTrainer, dataset, push_repo: str | None,
                      hub_token: str | None, hub_private: bool | None) -> None:
    """The record, image processor and card of a finished training run; then the push, if asked
    (`push_folder` adds the commit to the local record; `results` gets it too)."""
    output_dir = Path(trainer.args.output_dir)
    protocol = trainer.eval_protocol
    SegImageProcessor.for_model(trainer.model, short_side=protocol.short_side if protocol and
                                protocol.resize == "short_side" else None).save_pretrained(output_dir)
    results.write(output_dir / RESULTS_FILE)
    # Our card, written after save_model: Trainer's generic one would carry an empty model-index.
    write_model_card(results, output_dir, model=trainer.model, validation=dataset["validation"],
                     model_ref=push_repo or trainer.args.hub_model_id)
    if push_repo:  # records the commit in the local results.json
        commit_url = push_folder(output_dir, push_repo, token=hub_token, private=hub_private)
        results.hub = {"repo_id": push_repo, "commit_url": commit_url}


def _publish_evaluation(results: RunResults, output_dir: Path, hub_model_id: str | None) -> Path:
    """An evaluation-only run's record, beside the model's: never results.json, which belongs to
    the training run. A trained folder's card is re-rendered with the evaluation added."""
    path = results.write(output_dir / record_name(results))
    trained = output_dir / RESULTS_FILE
    if trained.is_file():
        training_record = RunResults.read(trained)
        if training_record.status == "complete":
            write_model_card(training_record, output_dir, model_ref=hub_model_id)
    return path


def _resolve_protocol(model_args: ModelArguments, data_args: DataArguments,
                      training_args: TrainingArguments) -> tuple[DataArguments, str]:
    """`data_args` with the data protocol and the recipe's data values decided, and why the protocol.

    What is given always wins. For an evaluation of a saved model, its training record comes next
    (protocol, crop, short side, sliding window), so the new figure is comparable with the card's;
    then the recipe's values for this data (mmsegmentation's pipeline under the published recipe,
    whose cited figures come from it; e.g. Cityscapes' sliding windows); the rest is left to the data.
    """
    reason = "as asked (--protocol)" if data_args.protocol else None
    record = Path(model_args.model_name_or_path or "") / RESULTS_FILE
    if not data_args.protocol and not training_args.do_train and model_args.model_name_or_path and record.is_file():
        trained = RunResults.read(record).dataset
        if trained.get("protocol"):
            evaluation = trained.get("evaluation") or {}
            recorded = {"protocol": trained["protocol"], "crop_size": trained.get("crop_size"),
                        "short_side": evaluation.get("short_side"), "eval_mode": evaluation.get("mode"),
                        "eval_crop": evaluation.get("crop"), "eval_stride": evaluation.get("stride")}
            data_args = _fill(data_args, recorded)
            reason = f"the one {record} was evaluated with, so the figures compare"
    recipe = get_recipe(training_args.recipe, model_args.model, data_args.dataset_name) \
        if getattr(training_args, "recipe", None) else None
    if recipe is not None:
        data_args = _fill(data_args, {**recipe.data_defaults(), "short_side": recipe.short_side})
    if reason is None:
        protocol = default_protocol(getattr(training_args, "recipe", None))
        reason = ("the published recipe's: mmsegmentation's pipeline, which its figures come from"
                  if protocol == "mmseg" else "images scored at their own size")
        data_args = dataclasses.replace(data_args, protocol=protocol)
    return data_args, reason


def _fill(data_args: DataArguments, values: dict) -> DataArguments:
    """`data_args` with each of `values` that is not None set where `data_args` has none."""
    return dataclasses.replace(data_args, **{key: value for key, value in values.items()
                                             if value is not None and getattr(data_args, key) is None})


def _announce(data_args: DataArguments, training_args: TrainingArguments, protocol_reason: str, dataset) -> None:
    """The run's first lines (main process): the data's label set and where it came from, and the recipe
    and protocol chosen, and why, so a default never passes unseen."""
    if training_args.process_index != 0:
        return
    info = dataset.label_info
    decoding = info.decoding.describe()
    print(f"labels: {info.labels.describe()}, from {info.source}" + (f"; {decoding}" if decoding else ""), flush=True)
    recipe = getattr(training_args, "recipe", None)
    if training_args.do_train and recipe:
        print(f"recipe: {recipe}, {recipe_reason(recipe, data_args.dataset_name)}", flush=True)
    print(f"protocol: {data_args.protocol}, {protocol_reason}", flush=True)


def run(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> RunResults:
    """Train and/or evaluate one model as the arguments say; return (and save) its `RunResults`.

    The arguments are not changed: the sizes and sources the run resolves go into its own copies
    (and into run_args.json and the record).

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
        return _run(model_args, data_args, training_args, lock)
    finally:
        lock.release()


def _run(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments,
         lock: RunLock) -> RunResults:
    check_args(model_args)
    data_args, protocol_reason = _resolve_protocol(model_args, data_args, training_args)
    eval_protocol = data_args.eval_protocol()  # a bad --eval_crop/--eval_stride/--eval_scales stops here
    apply_cpu_threads()  # accelerate would leave a CPU process one thread of the machine's cores
    resume_from = prepare_output_dir(training_args, lock)
    at_budget = _at_budget(resume_from, training_args)
    finished = _finished_record(Path(training_args.output_dir), resume_from) if at_budget else None
    if finished is not None:
        # A finished run is final: the same command again trains nothing and rewrites nothing (a push
        # asked for publishes it as it is). Another command is not the same run: said, not ignored.
        _refuse_other_options(finished, model_args, data_args, training_args)
        if training_args.process_index == 0:
            print(f"nothing left to train: {training_args.output_dir} holds this run, finished at step "
                  f"{finished.train['steps']} (its budget); nothing was trained or rewritten "
                  "(--overwrite_output_dir trains it afresh)", flush=True)
            if training_args.push_to_hub:
                repo = training_args.hub_model_id or Path(training_args.output_dir).name
                finished.hub = {"repo_id": repo, "commit_url": push_folder(
                    training_args.output_dir, repo, token=training_args.hub_token,
                    private=training_args.hub_private_repo)}
        return finished
    check_start(model_args)  # before the data: a missing model should not wait for it
    dataset, data_dir = load_data(data_args, training_args)
    _announce(data_args, training_args, protocol_reason, dataset)

    # Trainer seeds itself only once the model exists: seed first, or every run would start from
    # other random weights (a new head included) and --seed would not repeat a run.
    set_seed(training_args.seed)
    model = load_model(model_args, dataset.labels)
    # We push once, ourselves, after our card is written; and the token never enters the
    # arguments that Trainer pickles into training_args.bin or that the record holds.
    push_repo = (
        (training_args.hub_model_id or Path(training_args.output_dir).name) if training_args.push_to_hub else None
    )
    trainer = SegTrainer(model, with_fields(training_args, hub_token=None, push_to_hub=False),
                         dataset["train"] if training_args.do_train else None, dataset["validation"],
                         crop_size=data_args.crop_size, eval_size=data_args.eval_size,
                         eval_padding=data_args.eval_padding, eval_protocol=eval_protocol)
    # Resolved, so run_args.json and the record hold the sizes and start the run used, and replaying
    # the file repeats this run on changed data too.
    data_args = dataclasses.replace(data_args, crop_size=trainer.crop_size or data_args.crop_size,
                                    eval_size=trainer.eval_size)
    if not model_args.from_scratch and not model_args.model_name_or_path:
        model_args = dataclasses.replace(model_args, pretrained=model.config.pretrained_from)
    lock.acquire()  # a folder that did not exist is locked as the run first writes it
    changes = _resume_changes(resume_from, model_args, data_args, training_args, trainer) \
        if resume_from is not None and training_args.do_train else []
    # Written before anything trains, so even an interrupted run says how it was started.
    if training_args.process_index == 0 and training_args.do_train:
        write_run_args(training_args.output_dir, model_args, data_args, training_args, changes)

    try:
        train_summary, evaluations, augmented = _train_and_evaluate(trainer, resume_from, at_budget)
    except TrainingDiverged as error:
        results = _collect_results(model_args, data_args, trainer, dataset, data_dir, None,
                                   [entry for entry in trainer.state.log_history if "eval_mean_iou" in entry],
                                   status="diverged", changes=changes)
        results.diverged = {"step": error.step, "message": str(error)}
        if trainer.is_world_process_zero():
            results.write(Path(training_args.output_dir) / RESULTS_FILE)
        raise
    results = _collect_results(model_args, data_args, trainer, dataset, data_dir, train_summary, evaluations,
                               augmented=augmented, changes=changes)
    if trainer.is_world_process_zero():
        if training_args.do_train:
            # Measured on the main process only, after every collective step of the run.
            results.inference = None if data_args.eval_size is None else measure_inference(
                trainer.model, data_args.eval_size, trainer.args.per_device_eval_batch_size,
                results.environment["device"], autocast=trainer.autocast_smart_context_manager)
            _publish_training(results, trainer, dataset, push_repo, training_args.hub_token,
                              training_args.hub_private_repo)
        else:
            _publish_evaluation(results, Path(training_args.output_dir), training_args.hub_model_id)
    return results


__all__ = ["prepare_output_dir", "run"]
