"""A resume is the run it continues: the options it resumes with are compared with the run's own.

The interrupted run's options are its ``run_args.json`` (written before it trained). What cannot
change mid-run without changing what the run is:

- never (the checkpoint's weights and optimizer state would not fit, or the classes would not mean
  the same): the model and its start, the label set and how masks are read, the optimizer's kind
  and its parameter groups;
- only with ``--allow_changed_options`` (then from the resume step on, and listed in results.json
  and on the card): the recipe's name, the learning rate and weight decay, the schedule, the
  budget, the global batch, the data and its crop, the seeds.

The global batch and the process count need consent too, even when the recipe keeps the global
batch by splitting it anew: each process shuffles its share and keeps its own BatchNorm statistics,
so the part after the resume would not be the run the first part belongs to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UsageError

# The optimizer's kind and its parameter groups (multipliers, decay exemptions) are its saved state's shape.
NEVER = ("model", "from_scratch", "pretrained", "model_name_or_path", "atrous_rates", "labels", "ignore_index",
         "reduce_labels", "label_map", "optim", "optim_args", "lr_multipliers", "no_decay")
WITH_CONSENT = ("recipe", "learning_rate", "weight_decay", "lr_scheduler_type",
                "lr_scheduler_kwargs", "warmup_steps", "warmup_ratio", "max_steps", "num_train_epochs",
                "max_grad_norm", "gradient_accumulation_steps", "seed", "data_seed", "dataset_name", "data_dir",
                "sbd_dir", "sbd_list", "train_val_split", "max_train_samples", "image_column_name",
                "label_column_name", "crop_size", "protocol", "short_side")
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


__all__ = ["NEVER", "OPTIMIZER_OPTIONS", "WITH_CONSENT", "changed_options", "check_changes", "saved_options"]
