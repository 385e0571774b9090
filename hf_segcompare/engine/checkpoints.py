"""Which checkpoint a run resumes from, and what a fresh run clears out of its output folder.

The transformers examples' convention: a training run whose ``--output_dir`` already holds
checkpoints resumes from the last one unless ``--overwrite_output_dir``. Here only a *complete*
checkpoint counts: `Trainer` writes ``trainer_state.json`` last, so a folder without it was cut
short by a kill or a full disk (its ``optimizer.pt`` may be empty) and is skipped, by name.
``--resume_from_checkpoint`` takes a checkpoint folder, or ``last`` / ``true`` for the last
complete one in ``--output_dir``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import re
import shutil
import zipfile
from pathlib import Path

from ..errors import CheckpointError

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
LAST = ("last", "true")  # --resume_from_checkpoint values meaning "the last complete checkpoint"
NO = ("false", "no", "none", "")
# What a run writes into its output folder; --overwrite_output_dir removes these, nothing else.
RUN_PRODUCTS = ("results.json", "run_args.json", "README.md", "learning_curve.png", "sample_predictions.png",
                "model.safetensors", "config.json", "preprocessor_config.json", "training_args.bin", ".eval_results")


def nearest_existing(path: str | Path) -> Path:
    """`path` if it exists, else its nearest existing parent (where a write into it would land)."""
    path = Path(path)
    return next(candidate for candidate in (path, *path.parents) if candidate.exists())


def missing_parts(checkpoint: Path) -> list[str]:
    """What `checkpoint` lacks to be resumed from exactly ([] when it is complete)."""
    missing = [] if (checkpoint / TRAINER_STATE).is_file() else [TRAINER_STATE]
    if not any((checkpoint / name).is_file() for name in WEIGHT_FILES):
        missing.append(WEIGHT_FILES[0])
    return missing


def checkpoints(output_dir: str | Path) -> list[Path]:
    """The ``checkpoint-N`` folders in `output_dir`, oldest step first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in folder.iterdir()
             if path.is_dir() and (match := CHECKPOINT_PATTERN.match(path.name))]
    return [path for _, path in sorted(found)]


def damaged_part(checkpoint: Path) -> str | None:
    """What in a complete checkpoint cannot be read, with the reader's error (None when every part
    reads): its trainer_state.json, its safetensors weights (header and length: the format has no
    checksum of the tensors themselves), and the zip archives torch saved (optimizer, scheduler,
    random states: every member's CRC)."""
    try:
        json.loads((checkpoint / TRAINER_STATE).read_text())
    except (OSError, ValueError) as error:
        return f"{TRAINER_STATE}: {error}"
    weights = unreadable_weights(checkpoint)
    if weights:
        return weights
    for path in sorted(checkpoint.glob("*.pt")) + sorted(checkpoint.glob("*.pth")):
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (OSError, zipfile.BadZipFile) as error:
            return f"{path.name}: {error}"
        if bad is not None:
            return f"{path.name}: member {bad} fails its CRC check"
    return None


def unreadable_weights(folder: Path) -> str | None:
    """What in the safetensors weights that save_pretrained wrote into `folder` cannot be read, with the
    reader's error (None when each file's header and length are sound: the format has no checksum of
    the tensors themselves)."""
    from safetensors import safe_open

    weights = [folder / WEIGHT_FILES[0]] if (folder / WEIGHT_FILES[0]).is_file() else []
    if not weights:
        try:
            index = json.loads((folder / WEIGHT_FILES[1]).read_text())
            weights = [folder / shard for shard in sorted(set(index["weight_map"].values()))]
        except (OSError, ValueError, KeyError) as error:
            return f"{WEIGHT_FILES[1]}: {error}"
    for path in weights:
        try:
            with safe_open(str(path), "pt") as handle:
                handle.keys()
        except Exception as error:  # SafetensorError, OSError: unreadable either way
            return f"{path.name}: {str(error).splitlines()[0]}"
    return None


def last_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete, readable checkpoint in `output_dir`; newer incomplete or damaged ones are
    skipped with a warning naming each and the one resumed from instead."""
    skipped = []
    for checkpoint in reversed(checkpoints(output_dir)):
        missing = missing_parts(checkpoint)
        problem = f"it has no {' or '.join(missing)} (a save cut short by a kill or a full disk)" if missing \
            else (f"it cannot be read ({damage})" if (damage := damaged_part(checkpoint)) else None)
        if problem is None:
            for name, why in skipped:
                logger.warning("skipping %s: %s; resuming from %s", name, why, checkpoint.name)
            return checkpoint
        skipped.append((checkpoint, problem))
    for name, why in skipped:
        logger.warning("skipping %s: %s; no earlier checkpoint can be resumed", name, why)
    return None


def resolve_resume(value: str | None, output_dir: str | Path, overwrite: bool) -> str | None:
    """The checkpoint folder a training run resumes from, or None for a fresh start.

    Args:
        value: ``--resume_from_checkpoint``: a folder, ``last``/``true``, ``false``, or None (not given).
        output_dir: the run's output folder.
        overwrite: ``--overwrite_output_dir``: start afresh whatever the folder holds.

    Raises:
        CheckpointError: the named checkpoint is missing or incomplete, or ``last`` finds none.
    """
    if overwrite:
        if value is not None and value.lower() not in NO:
            raise CheckpointError(f"--overwrite_output_dir starts afresh, --resume_from_checkpoint {value} resumes: "
                                  "pass one of them.")
        return None
    if value is not None and value.lower() in NO:
        return None
    if value is None or value.lower() in LAST:
        checkpoint = last_complete_checkpoint(output_dir)
        if checkpoint is None and value is not None:
            raise CheckpointError(f"--resume_from_checkpoint {value}: {output_dir} holds no complete checkpoint "
                                  "to resume from. Pass a checkpoint folder, or leave the option out to start afresh.")
        return str(checkpoint) if checkpoint else None
    checkpoint = Path(value).expanduser()
    if not checkpoint.is_dir():
        raise CheckpointError(f"--resume_from_checkpoint {value}: no such folder. Pass a checkpoint-N folder, or "
                              "'last' for the last complete one in --output_dir.")
    missing = missing_parts(checkpoint)
    if missing:
        raise CheckpointError(f"--resume_from_checkpoint {value}: incomplete checkpoint (no {' or '.join(missing)}; "
                              "a save cut short). Pass an earlier checkpoint, or 'last'.")
    damage = damaged_part(checkpoint)
    if damage:
        intact = last_complete_checkpoint(checkpoint.parent)
        raise CheckpointError(f"--resume_from_checkpoint {value}: it cannot be read ({damage}). "
                              + (f"Pass {intact}, the newest intact checkpoint, or 'last'." if intact else
                                 "No checkpoint beside it can be read either: --overwrite_output_dir trains afresh."))
    return str(checkpoint)


def trained_steps(checkpoint: str | Path) -> tuple[int, dict]:
    """The optimizer steps a complete checkpoint holds, and its trainer_state.json."""
    state = json.loads((Path(checkpoint) / TRAINER_STATE).read_text())
    return int(state["global_step"]), state


def holds_the_whole_budget(checkpoint: str | Path, max_steps: int, num_train_epochs: float) -> bool:
    """Whether `checkpoint` already holds the budget asked for (``max_steps`` when positive, else
    ``num_train_epochs``): a run resumed from it has nothing left to train. (Trainer itself would
    train one more step when the budget ends mid-epoch.)

    Raises:
        CheckpointError: the checkpoint is past the budget, naming both numbers.
    """
    step, state = trained_steps(checkpoint)
    if max_steps > 0:
        if step > max_steps:
            raise CheckpointError(
                f"{Path(checkpoint).name} has trained {step} steps, more than the budget asked for (--max_steps "
                f"{max_steps}): pass --max_steps {step} or more to go on from it, --overwrite_output_dir to train "
                "afresh, or another --output_dir."
            )
        return step == max_steps
    return bool(state.get("max_steps")) and step >= state["max_steps"] \
        and float(state.get("num_train_epochs", -1)) == float(num_train_epochs)


def previous_run_products(output_dir: str | Path) -> list[Path]:
    """Files and checkpoints a run left in `output_dir` that a fresh run would mix with its own."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    products = [folder / name for name in RUN_PRODUCTS if (folder / name).exists()]
    return products + list(folder.glob("eval_*.json")) + checkpoints(folder)


def clear_previous_run(output_dir: str | Path) -> list[Path]:
    """Remove what `previous_run_products` lists (``--overwrite_output_dir``); return what was removed.

    A stale checkpoint left beside a new run would be resumed from later, and a stale results.json
    would read as the new run's result: both go. Files the toolkit does not write are kept.
    """
    removed = previous_run_products(output_dir)
    for path in removed:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    return removed


# Below this much free space a failed write is a full disk, whatever the library's message says
# (torch reports ENOSPC while writing optimizer.pt as "[enforce fail at inline_container.cc]").
FULL_DISK_BYTES = 16 * 2**20


def restore_checkpoint_weights(model, checkpoint: str | Path) -> None:
    """Load `checkpoint`'s weights into `model` under the names the model uses today.

    Raises:
        CheckpointError: the checkpoint lacks weights of `model`, or holds ones of another shape.
    """
    saved, info = type(model).from_pretrained(str(checkpoint), output_loading_info=True, use_safetensors=True)
    problems = [f"{kind.replace('_', ' ')} {sorted(info[kind])[:3]}" for kind in ("missing_keys", "mismatched_keys")
                if info.get(kind)]
    if problems:
        raise CheckpointError(
            f"{checkpoint} does not hold every weight of this {model.config.model_type} model ({'; '.join(problems)}): "
            "resuming from it would train partly random weights. Pass another --resume_from_checkpoint, or "
            "--overwrite_output_dir to start afresh."
        )
    model.load_state_dict(saved.state_dict(), strict=True)


class _NumericalCheckpointOrder(logging.Filter):
    """Trainer orders checkpoints by modification time and, when they were written less than a second
    apart (short runs), warns that it falls back to ordering them by step: the order this toolkit uses
    anyway (`hf_segcompare.engine.checkpoints`). Drop that one line, which reads as a fault."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "mtime may not be reliable" not in record.getMessage()


logging.getLogger("transformers.trainer_utils").addFilter(_NumericalCheckpointOrder())


@contextlib.contextmanager
def quiet_transformers():
    """transformers' warnings and progress bars off for the duration (errors still show)."""
    from transformers.utils import logging as transformers_logging

    verbosity, bars = transformers_logging.get_verbosity(), transformers_logging.is_progress_bar_enabled()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if bars:
            transformers_logging.enable_progress_bar()


def describe_write_error(error: BaseException, folder: Path) -> str:
    """One line for a failed write into `folder`, naming ENOSPC when the disk is full."""
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    try:
        free = shutil.disk_usage(nearest_existing(folder)).free
    except (OSError, StopIteration):
        free = None
    if getattr(error, "errno", None) == errno.ENOSPC or (free is not None and free < FULL_DISK_BYTES):
        return (
            f"no space left on device (ENOSPC) while writing {folder} ({free // 2**20 if free is not None else '?'} "
            "MiB free): free some space, or pass an --output_dir on a larger disk"
        )
    return f"writing {folder} failed ({type(error).__name__}: {reason})"


__all__ = [
    "describe_write_error",
    "quiet_transformers",
    "restore_checkpoint_weights",
    "nearest_existing",
    "CheckpointError",
    "checkpoints",
    "clear_previous_run",
    "damaged_part",
    "holds_the_whole_budget",
    "last_complete_checkpoint",
    "missing_parts",
    "previous_run_products",
    "resolve_resume",
    "trained_steps",
    "unreadable_weights",
]
