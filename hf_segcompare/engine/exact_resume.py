"""Exact resume, the published best model and whole checkpoints for `SegTrainer` (a mixin of `Trainer`).

- **Exact resume.** transformers 5 saves some models (SegFormer, ViT) under their legacy weight
  names, and `Trainer._load_from_checkpoint` loads a checkpoint with a plain `load_state_dict`,
  without the renaming `from_pretrained` applies (transformers issue #43701, PR #48822): a resumed
  SegFormer silently keeps random weights for 116 tensors. The checkpoint is reloaded through
  `restore_checkpoint_weights` after Trainer's own load, which stops if any weight of the model is
  still not in it. A checkpoint that holds the model's own weight names (the smp adapters'; any
  model's once transformers saves or converts them itself) was loaded whole and is not reloaded.
- **The published best model** (``load_best_model_at_end``) is restored the same way, every weight checked.
- **No half-written checkpoint.** A save that fails (a full disk, a vanished folder) removes the
  partial ``checkpoint-N`` and raises `CheckpointError` naming the folder and the cause (ENOSPC for
  a full disk); the previous checkpoint stays whole. A checkpoint is written only of finite weights.

The private `Trainer` methods these override or call are checked against the installed
transformers when a `SegTrainer` is built (`trainer_internals.check_trainer_internals`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from transformers import TrainerState

from ..errors import CheckpointError
from .checkpoints import TRAINER_STATE, describe_write_error, quiet_transformers, restore_checkpoint_weights
from .trainer_internals import saved_under_model_names


class ExactResume:
    """Resumes every weight, publishes the checked best model, and writes whole checkpoints or none."""

    def resume_finished(self, checkpoint: str | Path) -> None:
        """Take up a run whose `checkpoint` already holds its whole budget, training nothing: its
        weights, its state (steps, logged losses and evaluations, seconds trained) and the recipe's
        optimizer groups, as `train` would have left them. (Trainer's own resume trains one more
        step when the budget ends mid-epoch.)"""
        with quiet_transformers():
            restore_checkpoint_weights(self.model, checkpoint)
        self.state = TrainerState.load_from_json(str(Path(checkpoint) / TRAINER_STATE))
        self.create_optimizer()  # the record lists the parameter groups the run trained with
        self.resource_meter.carry(self.state)
        if self.args.load_best_model_at_end and self.state.best_model_checkpoint is not None:
            self._load_best_model()  # as train() ends

    def published_step(self) -> int:
        """The step whose weights the model holds now: the best evaluation's with
        ``load_best_model_at_end`` (once training ended), else the last step."""
        best = self.state.best_model_checkpoint if self.args.load_best_model_at_end else None
        return self.state.best_global_step if best is not None and self.state.best_global_step else \
            self.state.global_step

    def _load_best_model(self):
        # Trainer's own loads the best checkpoint with load_state_dict(strict=False), which misses every
        # weight transformers 5 saved under a legacy name (issue #43701): a best SegFormer would keep
        # random weights for 116 tensors and say nothing. Restore it as a resume does, every weight checked.
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            super()._load_best_model()
            return
        with quiet_transformers():
            restore_checkpoint_weights(self.model, self.state.best_model_checkpoint)
        if self.is_world_process_zero():
            print(f"published model: {Path(self.state.best_model_checkpoint).name}, the best "
                  f"{self.args.metric_for_best_model} ({self.state.best_metric:.4f}); the last step was "
                  f"{self.state.global_step}", flush=True)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:  # those load their own formats
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            return
        # Trainer's plain load_state_dict misses every weight saved under a legacy name (#43701) and logs
        # kilobytes of "missing keys" that read as a failure; the reload below restores them all, and says
        # so in one line. A checkpoint holding the model's own names (the smp adapters'; any model's once
        # transformers saves or converts them itself) was loaded whole already: nothing to reload.
        model = model if model is not None else self.model
        with quiet_transformers():
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            renamed = not saved_under_model_names(model, resume_from_checkpoint)
            if renamed:
                restore_checkpoint_weights(model, resume_from_checkpoint)
        if self.is_world_process_zero():
            how = ("every weight restored under the names the model uses (transformers issue #43701)" if renamed
                   else "every weight loaded under the model's own names")
            print(f"resumed from {Path(resume_from_checkpoint).name}: {how}", flush=True)


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


__all__ = ["ExactResume"]
