"""`SegTrainer`: `Trainer` plus the guarantees a report needs from a training run.

- **Exact resume.** transformers 5 saves some models (SegFormer, ViT) under their legacy weight
  names, and `Trainer._load_from_checkpoint` loads a checkpoint with a plain `load_state_dict`,
  without the renaming `from_pretrained` applies (transformers issue #43701, PR #48822): a
  resumed SegFormer silently keeps random weights for 116 tensors. `SegTrainer` reloads the
  checkpoint through `from_pretrained` after Trainer's own load, and stops if any weight of the
  model is still not in it. Once transformers fixes the bug the reload is a harmless repeat and
  `restore_checkpoint_weights` can go; the check stays.
- **Divergence stops the run.** A non-finite loss or gradient norm at any optimizer step (on any
  process), or a non-finite weight before an evaluation or a save, raises `TrainingDiverged`
  naming the step. No checkpoint with non-finite weights is ever written, so the last one on disk
  is finite whatever ``--save_total_limit`` says.
- **Evaluation scores the saved weights.** Under several processes each keeps its own
  BatchNorm statistics; before every evaluation the main process's are shared, so the figure
  belongs to the weights that are saved and published.
- **No half-written checkpoint.** A save that fails (a full disk, a vanished folder) removes the
  partial ``checkpoint-N`` and raises `CheckpointError` naming the folder and the cause (ENOSPC for
  a full disk); the previous checkpoint stays whole.
"""

from __future__ import annotations

import errno
import math
import shutil
from pathlib import Path

import torch
from transformers import ProgressCallback, Trainer

from .checkpoints import CheckpointError, checkpoints, missing_parts

# Below this much free space a failed write is a full disk, whatever the library's message says
# (torch reports ENOSPC while writing optimizer.pt as "[enforce fail at inline_container.cc]").
FULL_DISK_BYTES = 16 * 2**20


class TrainingDiverged(RuntimeError):
    """Training produced non-finite numbers; the message names the step and what to try."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


def restore_checkpoint_weights(model: torch.nn.Module, checkpoint: str | Path) -> None:
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


def _nonfinite_parameters(model: torch.nn.Module) -> list[str]:
    return [name for name, parameter in model.named_parameters() if not torch.isfinite(parameter).all()]


def describe_write_error(error: BaseException, folder: Path) -> str:
    """One line for a failed write into `folder`, naming ENOSPC when the disk is full."""
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    try:
        free = shutil.disk_usage(next(p for p in (folder, *folder.parents) if p.exists())).free
    except (OSError, StopIteration):
        free = None
    if getattr(error, "errno", None) == errno.ENOSPC or (free is not None and free < FULL_DISK_BYTES):
        return (f"no space left on device (ENOSPC) while writing {folder} ({free // 2**20 if free is not None else '?'} "
                "MiB free): free some space, or pass an --output_dir on a larger disk")
    return f"writing {folder} failed ({type(error).__name__}: {reason})"


class SegTrainer(Trainer):
    """A `Trainer` that resumes exactly, stops on divergence and never leaves a partial checkpoint."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._finite_losses = torch.ones((), dtype=torch.bool, device=self.args.device)

    # ---- exact resume
    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        if not (self.is_fsdp_enabled or self.is_deepspeed_enabled):  # those load their own formats
            restore_checkpoint_weights(model if model is not None else self.model, resume_from_checkpoint)

    # ---- divergence
    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        # Kept on the device: checked once per optimizer step, with the gradient norm.
        self._finite_losses &= torch.isfinite(loss.detach()).all()
        return loss

    def _maybe_log_save_evaluate(self, tr_loss, grad_norm, *args, **kwargs):
        self._stop_if_diverged(grad_norm)
        if self.control.should_evaluate or self.control.should_save:
            self.check_weights_finite("evaluating or saving")
        super()._maybe_log_save_evaluate(tr_loss, grad_norm, *args, **kwargs)

    def _stop_if_diverged(self, grad_norm) -> None:
        bad_loss = (~self._finite_losses).float()
        norm = torch.as_tensor(grad_norm if grad_norm is not None else 0.0, dtype=torch.float32, device=bad_loss.device)
        flags = torch.stack([bad_loss, (~torch.isfinite(norm)).float()])
        if self.args.world_size > 1:  # every process must stop at the same step, or the others hang
            flags = self.accelerator.reduce(flags, reduction="sum")
        bad_loss_anywhere, bad_norm = (bool(flag) for flag in flags.tolist())
        if not (bad_loss_anywhere or bad_norm):
            return
        what = " and ".join(part for part, bad in (("the loss", bad_loss_anywhere), ("the gradient norm", bad_norm)) if bad)
        self._diverged(f"{what} became non-finite (gradient norm {float(norm):g})")

    def check_weights_finite(self, moment: str) -> None:
        """Raise `TrainingDiverged` if any weight is NaN or infinite; `moment` says what was about to happen."""
        nonfinite = _nonfinite_parameters(self.model)
        if nonfinite:
            self._diverged(f"{len(nonfinite)} weight tensor(s) became non-finite ({', '.join(nonfinite[:2])}), "
                           f"found before {moment}")

    def _close_progress_bars(self) -> None:
        """End Trainer's progress bars, so the error that follows starts a line of its own."""
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, ProgressCallback):
                for name in ("prediction_bar", "training_bar"):
                    bar = getattr(callback, name, None)
                    if bar is not None:
                        bar.close()
                        setattr(callback, name, None)

    def _diverged(self, what: str) -> None:
        self._close_progress_bars()
        step = self.state.global_step
        saved = [checkpoint for checkpoint in checkpoints(self.args.output_dir) if not missing_parts(checkpoint)]
        kept = f"the last checkpoint, {saved[-1]}, predates it" if saved else "no checkpoint was written"
        clipping = "" if 0 < self.args.max_grad_norm < math.inf else ", or gradient clipping (--max_grad_norm 1.0)"
        raise TrainingDiverged(
            f"training diverged at step {step} of {self.state.max_steps}: {what}. Nothing was published and "
            f"{kept}. Try a lower --learning_rate (this run: {self.args.learning_rate:g}) or a longer "
            f"--warmup_steps (this run: {self.args.warmup_steps:g}){clipping}.",
            step,
        )

    # ---- evaluation scores the weights that are saved
    def evaluate(self, *args, **kwargs):
        # Each process keeps its own BatchNorm running statistics, and Trainer evaluates the
        # unwrapped model, so without this every process would score its share of the images with
        # other statistics than the main process saves and publishes.
        if self.args.world_size > 1 and torch.distributed.is_initialized() and not (
                self.is_fsdp_enabled or self.is_deepspeed_enabled):
            for buffer in self.model.buffers():
                torch.distributed.broadcast(buffer.data, src=0)
        return super().evaluate(*args, **kwargs)

    # ---- checkpoints: finite, and whole or not at all
    def _save_checkpoint(self, model, trial):
        self.check_weights_finite("saving a checkpoint")
        folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
        try:
            super()._save_checkpoint(model, trial)
        except (OSError, RuntimeError) as error:
            self._close_progress_bars()
            message = describe_write_error(error, folder)
            if self.args.should_save:
                shutil.rmtree(folder, ignore_errors=True)  # a resume must never pick it
            raise CheckpointError(f"{message}. The incomplete {folder.name} was removed; earlier checkpoints are "
                                  "intact, and the run resumes from the last one when started again.") from None


__all__ = ["SegTrainer", "TrainingDiverged", "describe_write_error", "restore_checkpoint_weights"]
