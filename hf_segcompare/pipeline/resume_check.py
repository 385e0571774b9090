"""A resume is the run it continues: the options it resumes with are compared with the run's own.

The interrupted run's options are its ``run_args.json`` (written before it trained). What cannot
change mid-run without changing what the run is:

- never (the checkpoint's weights and optimizer state would not fit, or the classes would not mean
  the same): the model and its start, the label set and how masks are read, the optimizer's kind
  and its parameter groups;
- only with ``--allow_changed_options`` (then from the resume step on, and listed in results.json
  and on the card): the recipe's name, the learning rate and weight decay, the schedule, the
  budget, the global batch, the data and its crop, the seeds, the loss and its class weights.

The global batch and the process count need consent too, even when the recipe keeps the global
batch by splitting it anew: each process shuffles its share and keeps its own BatchNorm statistics,
so the part after the resume would not be the run the first part belongs to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config.run_args import RUN_FACTS as RUN_FACTS_KEY
from ..config.run_args import resolved_args, run_facts
from ..engine.callbacks import ChangedOptimizerOptions
from ..engine.checkpoints import trained_steps
from ..engine.trainer import SegTrainer
from ..errors import UsageError
from ..report.results import RunResults
from .resolve import RunPlan

# The optimizer's kind and its parameter groups (multipliers, decay exemptions) are its saved state's shape.
NEVER = ("model", "from_scratch", "pretrained", "model_name_or_path", "atrous_rates", "labels", "ignore_index",
         "reduce_labels", "label_map", "mask_colors", "optim", "optim_args", "lr_multipliers", "no_decay")
WITH_CONSENT = ("recipe", "learning_rate", "weight_decay", "lr_scheduler_type",
                "lr_scheduler_kwargs", "warmup_steps", "warmup_ratio", "max_steps", "num_train_epochs",
                "max_grad_norm", "gradient_accumulation_steps", "seed", "data_seed", "dataset_name", "data_dir",
                "sbd_dir", "sbd_list", "train_val_split", "max_train_samples", "image_column_name",
                "label_column_name", "crop_size", "protocol", "short_side", "loss", "class_weights",
                "sync_bn")
# Applied to the optimizer restored from the checkpoint, whose groups would otherwise keep the old values
# (`hf_segcompare.engine.callbacks.ChangedOptimizerOptions`); the schedule's shape follows the new options by itself.
OPTIMIZER_OPTIONS = ("learning_rate", "weight_decay")
RUN_FACTS = ("global_batch_size", "num_processes")  # what the run ran on, compared like options


def _comparable(value: Any) -> Any:
    """Values as run_args.json holds them (enums as strings, tuples as lists)."""
    return json.loads(json.dumps(value, default=str))


def changed_options(saved: dict[str, Any], now: dict[str, Any], step: int) -> list[dict[str, Any]]:
    """Every option of `NEVER` or `WITH_CONSENT`, and the global batch and process count, whose value
    differs between the interrupted run (`saved`: its run_args.json) and this one (`now`, with the
    same facts), each as {option, before, after, at_step}."""
    changes = []
    for option in NEVER + WITH_CONSENT:
        if option in saved and option in now and _comparable(saved[option]) != _comparable(now[option]):
            changes.append({"option": option, "before": saved[option], "after": _comparable(now[option]),
                            "at_step": step})
    before, after = saved.get("_run") or {}, now.get("_run") or {}
    for fact in RUN_FACTS:
        if fact in before and before[fact] != after.get(fact):
            changes.append({"option": fact, "before": before[fact], "after": after.get(fact), "at_step": step})
    return changes


def check_changes(changes: list[dict[str, Any]], allowed: bool, checkpoint: str) -> None:
    """Refuse what cannot change mid-run.

    Raises:
        UsageError: one line naming the options and both values, and what to do.
    """
    def listed(items):
        return "; ".join(f"{change['option']} {change['before']!r} -> {change['after']!r}" for change in items)

    never = [change for change in changes if change["option"] in NEVER]
    if never:
        raise UsageError(f"resuming from {Path(checkpoint).name} with other options than the run it continues "
                         f"({listed(never)}): those cannot change mid-run. Resume with the run's own options, or "
                         "train afresh with --overwrite_output_dir or into another --output_dir.")
    needs_consent = [change for change in changes if change["option"] in WITH_CONSENT + RUN_FACTS]
    if needs_consent and not allowed:
        raise UsageError(f"resuming from {Path(checkpoint).name} with other options than the run it continues "
                         f"({listed(needs_consent)}): the run would no longer be the one it continues. Resume with "
                         "its own options (see its run_args.json), pass --allow_changed_options to apply them from "
                         "this step (results.json and the card will list them), or train afresh with "
                         "--overwrite_output_dir.")


def saved_options(output_dir: str | Path) -> dict[str, Any] | None:
    """The interrupted run's run_args.json, if it wrote one."""
    path = Path(output_dir) / "run_args.json"
    return json.loads(path.read_text()) if path.is_file() else None


def resume_changes(resume_from: str, plan: RunPlan, trainer: SegTrainer) -> list[dict[str, Any]]:
    """The options this resume changes against the run it continues (`hf_segcompare.pipeline.resume_check`),
    after refusing what may not change; those it accepts apply from here (the optimizer restored from
    the checkpoint takes the new learning rate and weight decay). Returns every change of the run,
    earlier resumes' included, as the record lists them.

    Raises:
        UsageError: an option that cannot change, or one changed without ``--allow_changed_options``.
    """
    training_args = plan.training_args
    saved = saved_options(training_args.output_dir)
    if saved is None:
        return []
    changes = changed_options(saved, options_now(plan), trained_steps(resume_from)[0])
    check_changes(changes, training_args.allow_changed_options, resume_from)
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
        print(f"resuming with changed options: {'; '.join(change_text(change) for change in changes)}", flush=True)
    return (saved.get(RUN_FACTS_KEY) or {}).get("changes", []) + changes


def refuse_other_options(finished: RunResults, plan: RunPlan) -> None:
    """Raise `UsageError` when a finished run is asked for again with other options than it ran with
    (those the data resolves, such as an unset crop, are compared only where given)."""
    training_args = plan.training_args
    saved = saved_options(training_args.output_dir)
    if saved is None:
        return
    changes = [change for change in changed_options(saved, options_now(plan, given_only=True),
                                                    finished.train.steps) if change["after"] is not None]
    if changes:
        listed = "; ".join(f"{change['option']} {change['before']} -> {change['after']}" for change in changes)
        raise UsageError(f"--output_dir {training_args.output_dir} holds this run finished at step "
                         f"{finished.train.steps}, with other options ({listed}): pass --overwrite_output_dir to "
                         "train it again with these, or another --output_dir.")


def options_now(plan: RunPlan, given_only: bool = False) -> dict[str, Any]:
    """This run's options and facts, as run_args.json holds the interrupted run's (`given_only`: the
    model options as given, for a finished run compared before its data is loaded)."""
    model_args = plan.model_args if given_only else plan.recorded_model_args()
    return {**resolved_args(model_args, plan.data_args, plan.training_args),
            RUN_FACTS_KEY: run_facts(plan.training_args)}


def change_text(change: dict[str, Any]) -> str:
    return f"{change['option']} {change['before']} -> {change['after']} from step {change['at_step']}"


__all__ = ["NEVER", "OPTIMIZER_OPTIONS", "WITH_CONSENT", "changed_options", "check_changes", "options_now",
           "refuse_other_options", "resume_changes", "saved_options"]
