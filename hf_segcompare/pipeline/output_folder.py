"""The output folder's policy: writable before anything loads, resumed from its last complete
checkpoint, refused when it holds a finished run without one or a diverged run, and a run that holds
its whole budget already, or that early stopping ended, taken up without training a step.

The transformers examples' convention: a training run whose ``--output_dir`` already holds
checkpoints resumes from the last complete one unless ``--overwrite_output_dir``.
"""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path

from ..engine.checkpoints import (
    clear_previous_run,
    holds_the_whole_budget,
    nearest_existing,
    resolve_resume,
    trained_steps,
)
from ..engine.run_lock import RunLock
from ..engine.training_args import SegTrainingArguments
from ..errors import CheckpointError, UsageError
from ..report.results import RESULTS_FILE, RunResults


def require_writable(folder: Path, option: str = "--output_dir", hint: str | None = None) -> None:
    """Fail before any data loads when the run could not write into `folder` (given as `option`; `hint`:
    what to do instead, by default to pass another); create nothing.

    The probe is a temporary file in `folder`, or in its nearest existing parent when it does not
    exist yet, removed at once: the real errno (read-only file system, permission, not a folder)
    goes into the message.

    Raises:
        UsageError: naming the option, the folder and the reason.
    """
    existing = nearest_existing(folder)
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{existing} is a file")
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-test-"):
            pass
    except OSError as error:
        raise UsageError(f"{option} {folder}: cannot write there ({error.strerror or error}). "
                         + (hint or f"Pass an {option} you can write to.")) from None


def prepare_output_dir(training_args: SegTrainingArguments, lock: RunLock | None = None) -> str | None:
    """Check the output folder and decide where training resumes from (None: a fresh start).

    A training run resumes from the last complete checkpoint in --output_dir unless
    --overwrite_output_dir, which first removes what an earlier run wrote there. A folder holding a
    finished run and no checkpoint is refused rather than overwritten.

    Raises:
        UsageError: the folder is not writable, the checkpoint asked for cannot be resumed, or the
            folder holds a finished run.
    """
    output_dir = Path(training_args.output_dir)
    require_writable(output_dir)
    if lock is not None:  # before anything is decided about the folder, let alone removed from it
        lock.acquire_if_exists()
    if not training_args.do_train:
        return None
    overwrite = training_args.overwrite_output_dir
    try:
        resume_from = resolve_resume(training_args.resume_from_checkpoint, output_dir, overwrite)
    except CheckpointError as error:
        raise UsageError(str(error)) from None
    if overwrite and training_args.process_index == 0:
        clear_previous_run(output_dir)
    finished = [name for name in (RESULTS_FILE, "model.safetensors") if (output_dir / name).exists()]
    record = RunResults.read(output_dir / RESULTS_FILE) if not overwrite and (output_dir / RESULTS_FILE).is_file() \
        else None
    diverged = record is not None and record.status == "diverged"
    if resume_from is None and finished and not overwrite:
        what = (f"a run that diverged at step {(record.diverged or {}).get('step')}"
                if diverged else f"a finished run ({', '.join(finished)})")
        raise UsageError(f"--output_dir {output_dir} holds {what} and no checkpoint to resume: pass "
                         "--overwrite_output_dir to replace it, or another --output_dir.")
    if diverged and training_args.resume_from_checkpoint is None:
        # Resumed unasked, the same options would train through the same steps towards the same fault.
        raise UsageError(
            f"--output_dir {output_dir} holds a run that diverged at step {(record.diverged or {}).get('step')} (see "
            f"its results.json): it is finished, and resuming it from {Path(resume_from).name} would train the "
            "same steps again. Pass --overwrite_output_dir to train afresh (e.g. with a lower --learning_rate), or "
            f"--resume_from_checkpoint {resume_from} with --allow_changed_options and the options to change from "
            "there.")
    # training_args keeps what the user gave (None, "last", a path): run_args.json replays that,
    # not this folder's checkpoint.
    return resume_from


def at_budget(resume_from: str | None, training_args: SegTrainingArguments) -> bool:
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


def finished_record(output_dir: Path, resume_from: str | None, whole_budget: bool) -> RunResults | None:
    """The complete record of the run that `resume_from` ended (None: the run goes on). A run ended
    there when the checkpoint holds its whole budget (`whole_budget`) or early stopping ended it at
    that step; None as well when its record was not written (e.g. killed during its final evaluation:
    it is then taken up without a step)."""
    record = output_dir / RESULTS_FILE
    if resume_from is None or not record.is_file():
        return None
    results = RunResults.read(record)
    complete = results.status == "complete" and results.train is not None
    if not complete or results.train.steps != trained_steps(resume_from)[0]:
        return None
    return results if whole_budget or stopped_early(results) else None


def stopped_early(results: RunResults) -> bool:
    """Whether early stopping ended the run before its budget (`--early_stopping_patience`)."""
    return bool((results.published_model or {}).get("stopped_early"))


__all__ = ["at_budget", "finished_record", "prepare_output_dir", "require_writable", "stopped_early"]
