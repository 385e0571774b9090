"""The divergence stop and the interruption message of `SegTrainer` (a mixin of `Trainer`).

A non-finite loss or gradient norm at any optimizer step (on any process), or a non-finite weight
before an evaluation or a save, raises `TrainingDiverged` naming the step, what became non-finite,
the last whole checkpoint and what to try. No checkpoint with non-finite weights is ever written
(`check_weights_finite` runs before each save), so the last one on disk is finite whatever
``--save_total_limit`` says. ``_maybe_log_save_evaluate`` is private to `Trainer`:
`trainer_internals.check_trainer_internals` checks it against the installed transformers.
"""

from __future__ import annotations

import math

import torch
from transformers import ProgressCallback

from ..errors import Interrupted, TrainingDiverged
from .checkpoints import checkpoints, missing_parts


def nonfinite_parameters(model: torch.nn.Module) -> list[str]:
    """The names of `model`'s parameters holding a NaN or an infinity."""
    return [name for name, parameter in model.named_parameters() if not torch.isfinite(parameter).all()]


class DivergenceStop:
    """Stops training at the first non-finite loss, gradient norm or weight, with one line; says where
    an interrupted run stopped. Its class needs ``_finite_losses`` (a device bool, initially True)."""

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
        what = " and ".join(
            part for part, bad in (("the loss", bad_loss_anywhere), ("the gradient norm", bad_norm)) if bad
        )
        self._diverged(f"{what} became non-finite (gradient norm {float(norm):g})")

    def check_weights_finite(self, moment: str) -> None:
        """Raise `TrainingDiverged` if any weight is NaN or infinite; `moment` says what was about to happen."""
        nonfinite = nonfinite_parameters(self.model)
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

    def interrupted(self) -> Interrupted:
        """The error for a Ctrl-C during training: where it stopped, and what a rerun resumes from."""
        self._close_progress_bars()
        saved = [checkpoint for checkpoint in checkpoints(self.args.output_dir) if not missing_parts(checkpoint)]
        resume = (f"rerunning the same command resumes from {saved[-1].name}" if saved
                  else "no checkpoint was written yet, so rerunning the same command starts afresh")
        return Interrupted(f"interrupted at step {self.state.global_step} of {self.state.max_steps}: nothing was "
                           f"published; {resume}.")

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


__all__ = ["DivergenceStop", "nonfinite_parameters"]
