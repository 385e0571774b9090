"""The toolkit's errors: one base class, split by what the user does next.

- `UsageError` (and its `DataError` and `PretrainedUnavailable`): the input cannot work
  (arguments, data, starting weights); nothing was trained. The message names the argument, file
  or id and what to pass instead. The model layer words it for Python callers; the argument layer
  (`hf_segcompare.pipeline.loading`) re-words `PretrainedUnavailable` with the command line's options.
- `CheckpointError`, `TrainingDiverged`, `PushError`: the run started and stopped, or trained and
  could not publish; the message says what was kept.

The command line maps the first kind to exit status 2 and the second to 1 (``hf_segcompare.cli.run_seg``).
"""

from __future__ import annotations

from typing import Mapping, TypeVar

T = TypeVar("T")

MAX_ERRORS_SHOWN = 10


class SegCompareError(Exception):
    """Base of every error the toolkit raises on purpose; the message is meant for the user."""


class UsageError(SegCompareError, ValueError):
    """Arguments or starting weights that cannot work; the message says what to pass instead."""


class PretrainedUnavailable(UsageError):
    """Pretrained weights that cannot be had or do not fit a model. The message speaks Python
    (`create_model(pretrained=...)`); the command line words the same facts with its options."""

    def __init__(self, model: str, source: str, reason: str, hint: str):
        self.model, self.source, self.reason, self.hint = model, source, reason, hint
        super().__init__(f"model {model}: cannot load the pretrained starting point {source!r} ({reason}). Pass "
                         f"pretrained= a local copy ({hint}), or pretrained=None to start from random weights.")


class DataError(UsageError):
    """Data that cannot be used as it is; the message names the file or id and what to do."""


class RecordError(DataError):
    """A run's record (results.json) or its per-image counts that cannot be what a run wrote: not
    JSON, a field of the wrong kind, figures its own counts contradict. The message names the file."""


class InvalidSamplesError(DataError):
    """Samples that failed validation; `errors` holds one message per sample, naming its file."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        if len(errors) == 1:  # one line, as every other error of the command line
            super().__init__(f"{errors[0]}. Fix or remove it, or pass drop_invalid=True (--drop_invalid) to leave "
                             "it out.")
            return
        shown = "\n  ".join(errors[:MAX_ERRORS_SHOWN])
        more = f"\n  ... and {len(errors) - MAX_ERRORS_SHOWN} more" if len(errors) > MAX_ERRORS_SHOWN else ""
        super().__init__(
            f"{len(errors)} invalid sample(s):\n  {shown}{more}\n"
            "Fix or remove them, or pass drop_invalid=True (--drop_invalid) to leave them out."
        )


class CheckpointError(SegCompareError, RuntimeError):
    """A checkpoint cannot be resumed or written; the message says which and what is intact."""


class IncompatibleTransformers(SegCompareError, RuntimeError):
    """The installed transformers changed a private `Trainer` method the toolkit overrides; the
    message names the version, the method and what to install instead."""


class TrainingDiverged(SegCompareError, RuntimeError):
    """The loss, a gradient or a weight became NaN/inf; `step` is the optimizer step where it was seen."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


class Interrupted(SegCompareError, KeyboardInterrupt):
    """Training stopped by Ctrl-C (SIGINT); the message says where, and what a rerun resumes from."""


class PushError(SegCompareError, RuntimeError):
    """The push failed; the message says what happened and the command that retries it."""


def choose(choices: Mapping[str, T], name: str, kind: str) -> T:
    """``choices[name]``; an unknown `name` is a `UsageError` naming the `kind` and the known names.

    Raises:
        UsageError: ``unknown {kind} 'x'; choose one of: a, b``.
    """
    try:
        return choices[name]
    except KeyError:
        raise UsageError(f"unknown {kind} {name!r}; choose one of: {', '.join(choices)}") from None


__all__ = ["choose", "CheckpointError", "DataError", "Interrupted", "InvalidSamplesError", "PretrainedUnavailable",
           "PushError",
           "RecordError", "SegCompareError", "TrainingDiverged", "UsageError"]
