"""``run_args.json``: every resolved option of a run, written before it trains, which
``run_seg.py outputs/<model>/run_args.json`` replays (and a resume compares against)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from transformers import TrainingArguments

RUN_ARGS_FILE = "run_args.json"
RUN_FACTS = "_run"  # run_args.json's record of what the run ran on; not an option (replaying skips it)


def resolved_args(model_args, data_args,
                  training_args: TrainingArguments) -> dict[str, Any]:
    """All arguments as one flat mapping that `parse_args([file])` reads back; tokens left out."""
    training = {key: value for key, value in training_args.to_dict().items() if not key.endswith("_token")}
    return {**asdict(model_args), **asdict(data_args), **training}


def run_facts(training_args: TrainingArguments, changes: list | None = None) -> dict[str, Any]:
    """What a run runs on, beside its options: processes and global batch (a resume compares them),
    and the options changed at earlier resumes."""
    return {"num_processes": training_args.world_size,
            "global_batch_size": training_args.per_device_train_batch_size * training_args.world_size
            * training_args.gradient_accumulation_steps, "changes": list(changes or [])}


def write_run_args(output_dir: str | Path, model_args, data_args,
                   training_args: TrainingArguments, changes: list | None = None) -> Path:
    """Write `resolved_args` to ``output_dir/run_args.json``, with `run_facts` under `RUN_FACTS` (not
    options: replaying the file skips them); return its path."""
    path = Path(output_dir) / RUN_ARGS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    values = {**resolved_args(model_args, data_args, training_args), RUN_FACTS: run_facts(training_args, changes)}
    path.write_text(json.dumps(values, indent=2, default=str) + "\n")
    return path


__all__ = ["RUN_ARGS_FILE", "RUN_FACTS", "resolved_args", "run_facts", "write_run_args"]
