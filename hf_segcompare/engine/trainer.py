"""`SegTrainer`: `Trainer` set up for semantic segmentation, plus the guarantees a report needs.

Given a model and raw image/mask datasets (``image`` and ``label`` columns, as `load_voc` returns
them), it applies the training and evaluation transforms with the model's own input normalisation,
scores with streaming mean IoU, adds the toolkit's callbacks and, for `SegTrainingArguments`, its
parameter groups. Everything else it is given as explicit, resolved values (crop and evaluation
sizes, the evaluation protocol): it applies no recipe and reads no command line
(`hf_segcompare.pipeline.resolve` decides those values for a run). It never changes what the caller
passed: arguments that must differ for segmentation (`remove_unused_columns`, `batch_eval_metrics`)
are set on a copy.

- **Exact resume.** transformers 5 saves some models (SegFormer, ViT) under their legacy weight
  names, and `Trainer._load_from_checkpoint` loads a checkpoint with a plain `load_state_dict`,
  without the renaming `from_pretrained` applies (transformers issue #43701, PR #48822): a
  resumed SegFormer silently keeps random weights for 116 tensors. `SegTrainer` reloads the
  checkpoint through `from_pretrained` after Trainer's own load, and stops if any weight of the
  model is still not in it. A checkpoint that holds the model's own weight names (the smp
  adapters'; any model's once transformers saves or converts them itself) was loaded whole by
  Trainer and is not reloaded.
- **Divergence stops the run.** A non-finite loss or gradient norm at any optimizer step (on any
  process), or a non-finite weight before an evaluation or a save, raises `TrainingDiverged`
  naming the step. No checkpoint with non-finite weights is ever written, so the last one on disk
  is finite whatever ``--save_total_limit`` says.
- **Evaluation scores the saved weights.** Under several processes each keeps its own
  BatchNorm statistics; before every evaluation the main process's are shared, so the figure
  belongs to the weights that are saved and published.
- **Private Trainer methods checked.** Four of these guarantees override private `Trainer`
  methods; each is checked against the installed transformers when a `SegTrainer` is built
  (`trainer_internals.check_trainer_internals`), and a changed one stops with one line.
- **No half-written checkpoint.** A save that fails (a full disk, a vanished folder) removes the
  partial ``checkpoint-N`` and raises `CheckpointError` naming the folder and the cause (ENOSPC for
  a full disk); the previous checkpoint stays whole.
"""

from __future__ import annotations

import copy
import math
import shutil
from pathlib import Path

import torch
from transformers import EarlyStoppingCallback, ProgressCallback, Trainer, TrainerState, TrainingArguments

from ..data.transforms import (
    MAX_CROP_SIZE,
    MAX_EVAL_SIZE,
    SIZE_MULTIPLE,
    AugmentationSeeds,
    SegCollator,
    eval_transforms,
    fitted_size,
    image_sizes,
    make_batch_transform,
    shape_order,
    shrunk_size,
    size_to_fit,
    train_transforms,
)
from ..errors import CheckpointError, Interrupted, TrainingDiverged, UsageError
from ..evaluation.metrics import TRAINER_PAD_INDEX, ScoredCounts, SegmentationMetrics
from ..evaluation.per_image import PerImageCounts
from ..evaluation.protocol import PROBABILITY_FLOOR, EvalProtocol, image_logits, protocol_transform
from ..labels import IGNORE_INDEX
from ..models import input_multiple, model_normalization
from .callbacks import AugmentationEpoch, BudgetLine, ResourceMeter, ReturnFreedMemory, ScheduleCheck
from .checkpoints import (
    TRAINER_STATE,
    checkpoints,
    describe_write_error,
    missing_parts,
    quiet_transformers,
    restore_checkpoint_weights,
)
from .device_settings import speed_record, uses_channels_last
from .losses import SegmentationLoss
from .optim import trainer_optimizer
from .sync_batchnorm import convert_to_sync_batchnorm, resolve_sync_batchnorm
from .tensorboard import add_prediction_grid
from .trainer_internals import check_trainer_internals, saved_under_model_names
from .training_args import SegTrainingArguments


def _nonfinite_parameters(model: torch.nn.Module) -> list[str]:
    return [name for name, parameter in model.named_parameters() if not torch.isfinite(parameter).all()]


def with_fields(args: TrainingArguments, **changes) -> TrainingArguments:
    """A shallow copy of `args` with `changes` applied; `args` itself is left as it was."""
    changed = copy.copy(args)
    for name, value in changes.items():
        setattr(changed, name, value)
    return changed


def _is_raw(dataset) -> bool:
    """An image/mask dataset no transform has been set on yet."""
    columns = set(getattr(dataset, "column_names", None) or [])
    return {"image", "label"} <= columns and getattr(dataset, "format", {}).get("type") != "custom"


class SegTrainer(Trainer):
    """A `Trainer` for semantic segmentation that resumes exactly, stops on divergence and never
    leaves a partial checkpoint.

    Args:
        model: a model from `create_model` (or any with the same forward contract).
        args: `SegTrainingArguments` (its ``lr_multipliers``/``no_decay`` parameter groups and
            ``channels_last`` apply) or plain `TrainingArguments` (Trainer's own optimizer groups).
        train_dataset, eval_dataset: raw ``image``/``label`` datasets get the transforms here (the
            training set needs an ``id`` column for its per-sample augmentation seeds); datasets
            that already carry a transform are used as they are.
        crop_size, eval_size: training crop, and the largest side an evaluation image may have
            (larger ones are shrunk); default: the smallest multiple of 32 holding the split's
            largest image, at most 512 (a recipe's crop is passed here by whoever applies it).
        eval_padding: ``"batch"`` evaluates images of one padded shape together, each batch padded
            to its own shape (`SegCollator`); ``"square"`` pads every image to `eval_size`.
        eval_protocol: how every evaluation runs (`hf_segcompare.evaluation.protocol.EvalProtocol`; default:
            whole images at native resolution). A protocol resizing to a short side is
            mmsegmentation's VOC pipeline, training included: the training scale jitter then draws
            the short side from 0.5-2.0 × the crop size. Its scales and flip are not used by the
            evaluations during training but by `evaluate_augmented`, after it.
        channels_last: train and evaluate in the channels_last memory format (default: the
            arguments' ``channels_last``, else on for a CNN on a CUDA GPU).
        loss: the training (and evaluation) loss computed from the logits (`SegmentationLoss`:
            Dice, Focal, Lovász, class weights); default: the model's own cross-entropy.
        sync_batchnorm: synchronise BatchNorm statistics over the processes (`resolve_sync_batchnorm`;
            default: the arguments' ``sync_bn``, else on for a model with BatchNorm trained by more
            than one CUDA process). The choice and its reason are `sync_batchnorm_choice`.
        **kwargs: anything else `Trainer` takes; `compute_metrics`, `preprocess_logits_for_metrics`
            and `optimizer_cls_and_kwargs` default to the segmentation ones, `callbacks` are added
            after the toolkit's.

    Raises:
        UsageError: ``lr_multipliers`` or ``no_decay`` that cannot be applied to this model, or an
            `eval_size` that is not a multiple of 32.
    """

    def __init__(self, model, args: TrainingArguments, train_dataset=None, eval_dataset=None, *,
                 crop_size: int | None = None, eval_size: int | None = None, eval_padding: str = "batch",
                 eval_protocol: EvalProtocol | None = None, channels_last: bool | None = None,
                 loss: SegmentationLoss | None = None, sync_batchnorm: bool | None = None, **kwargs):
        check_trainer_internals()  # the private Trainer methods overridden below are still what they were
        # Set on a copy: the transforms read the image/label columns (Trainer must not drop them), and
        # our metrics sum per-batch confusion matrices (batch_eval_metrics).
        changes = {"remove_unused_columns": False} if args.remove_unused_columns else {}
        if args.load_best_model_at_end and args.save_total_limit == 1:
            # Trainer would delete the last checkpoint once training ends: the same command again would
            # then resume from the best one and train its steps a second time. Keep both.
            changes["save_total_limit"] = 2
        patience = getattr(args, "early_stopping_patience", None)
        if patience and not args.restore_callback_states_from_checkpoint:
            changes["restore_callback_states_from_checkpoint"] = True  # a resume keeps the patience count
        if "compute_metrics" not in kwargs and not args.batch_eval_metrics:
            changes["batch_eval_metrics"] = True
        if changes:
            args = with_fields(args, **changes)
        normalization = model_normalization(model)
        # Padding takes the value loss and metric skip: the label set's void (its ignore index).
        void = getattr(model.config, "semantic_loss_ignore_index", IGNORE_INDEX)
        # Before the optimizer exists (Trainer builds it in train()), so it holds the converted layers' weights.
        if sync_batchnorm is None and isinstance(args, SegTrainingArguments):
            sync_batchnorm = args.sync_bn
        self.sync_batchnorm_choice = resolve_sync_batchnorm(sync_batchnorm, model, args.world_size, args.device.type)
        if self.sync_batchnorm_choice.enabled:
            model = convert_to_sync_batchnorm(model)
        # The CNNs' convolutions run faster on a GPU in NHWC; the inputs follow the weights' format.
        if channels_last is None and isinstance(args, SegTrainingArguments):
            channels_last = args.channels_last
        self.channels_last = uses_channels_last(channels_last, args, model)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.augmentation = None
        self.crop_size = self.eval_size = self.eval_padding = None
        self.eval_protocol = self.augmented_protocol = None
        self._raw_eval_dataset = self._active_protocol = None
        # The validation images (indices in the split's own order) scored shrunk to the protocol's max_side.
        self.shrunk_for_scoring: list[int] = []
        eval_protocol = eval_protocol or EvalProtocol()
        if train_dataset is not None and _is_raw(train_dataset):
            train_dataset = self._training_set(train_dataset, args, crop_size, eval_protocol, normalization, void)
        raw_validation = eval_dataset if eval_dataset is not None and _is_raw(eval_dataset) else None
        if eval_dataset is not None and _is_raw(eval_dataset):
            eval_dataset = self._evaluation_set(eval_dataset, eval_size, eval_padding,
                                                eval_protocol.with_defaults, crop_size, normalization, void)
        self.segmentation_metrics = None
        if "compute_metrics" not in kwargs:
            metrics = SegmentationMetrics([model.config.id2label[i] for i in range(model.config.num_labels)], void)
            self.segmentation_metrics = metrics
            kwargs.update(compute_metrics=metrics.compute, preprocess_logits_for_metrics=metrics.preprocess_logits)
        if kwargs.get("data_collator") is None:
            kwargs["data_collator"] = SegCollator(normalization.mean, normalization.std, void)
        if "optimizer_cls_and_kwargs" not in kwargs and "optimizers" not in kwargs \
                and isinstance(args, SegTrainingArguments):
            kwargs["optimizer_cls_and_kwargs"] = grouped_optimizer(args, model)
        callbacks = [ResourceMeter(), ScheduleCheck(), BudgetLine(), ReturnFreedMemory()]
        callbacks += [AugmentationEpoch(self.augmentation)] if self.augmentation is not None else []
        callbacks += [EarlyStoppingCallback(patience)] if patience else []
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         callbacks=callbacks + list(kwargs.pop("callbacks", None) or []), **kwargs)
        # SegFormer's forward takes **kwargs, which would make Trainer pass num_items_in_batch and
        # skip its own loss averaging over accumulation steps; no model here uses that count.
        self.model_accepts_loss_kwargs = False
        self.segmentation_loss = loss
        self._finite_losses = torch.ones((), dtype=torch.bool, device=self.args.device)
        # The last evaluation's [C, C] pixel counts per metric prefix ("eval", "eval_tta"), and its
        # per-image counts with the step it scored.
        self.confusion_matrices: dict[str, object] = {}
        self.per_image_counts: dict[str, tuple[int, PerImageCounts]] = {}
        add_prediction_grid(self, raw_validation)  # with --report_to tensorboard

    # ---- the datasets, transformed as the run trains and scores them
    def _training_set(self, dataset, args, crop_size, eval_protocol: EvalProtocol, normalization, void: int):
        """`dataset` with the training transform: a crop of `crop_size` (default: fitted to the
        data), each sample's augmentation seeded by its id, the protocol's scale jitter."""
        if "id" not in dataset.column_names:
            raise UsageError("train_dataset has no 'id' column: each sample's random augmentation is seeded by "
                             "its id (so a resumed run repeats it); add one, e.g. dataset.add_column('id', "
                             "[str(i) for i in range(len(dataset))]).")
        self.crop_size = crop_size or fitted_size(dataset, MAX_CROP_SIZE)
        self.augmentation = AugmentationSeeds(args.data_seed if args.data_seed is not None else args.seed)
        short_side = (eval_protocol.short_side or self.crop_size) if eval_protocol.resize == "short_side" else None
        return dataset.with_transform(make_batch_transform(
            train_transforms(self.crop_size, normalization.mean, normalization.std, short_side=short_side,
                             mask_fill=void),
            self.augmentation))

    def _evaluation_set(self, dataset, eval_size, eval_padding: str, completed_protocol, crop_size, normalization,
                        void: int):
        """`dataset` ordered by shape and transformed as the evaluation protocol runs it; sets the
        eval size (default: fitted to the data) and the single-scale and augmented protocols
        (`completed_protocol(eval_size, short_side)` fills in what the protocol left open)."""
        if eval_padding not in ("batch", "square"):
            raise UsageError(f"eval_padding={eval_padding!r}: use 'batch' or 'square'.")
        if eval_size is not None and eval_size % SIZE_MULTIPLE:
            raise UsageError(f"--eval_size {eval_size} is not a multiple of {SIZE_MULTIPLE}, which every model "
                             f"here needs: pass {size_to_fit(eval_size)}.")
        sizes = image_sizes(dataset)
        self.eval_size = eval_size or fitted_size(dataset, MAX_EVAL_SIZE, sizes)
        self.eval_padding = eval_padding
        protocol = completed_protocol(self.eval_size, self.crop_size or crop_size or self.eval_size)
        self.eval_protocol = protocol.single_scale()
        self.augmented_protocol = protocol if protocol.augmented else None
        self.shrunk_for_scoring = protocol.shrunk_for_scoring(sizes)
        if eval_padding == "batch":
            # The metric is a sum over pixels, so the order is free: group the shapes (and, for another
            # protocol, the sizes the images run at: it runs only images of one size together).
            run_sizes = None if protocol.plain else [
                protocol.run_size(height, width, self.eval_size) for height, width in sizes]
            dataset = dataset.select(shape_order(sizes, self.eval_size, run_sizes))
        self._raw_eval_dataset = dataset
        if not self.eval_protocol.plain:
            return self._protocol_dataset(self.eval_protocol, normalization)
        # batched, at native resolution
        return dataset.with_transform(with_label_sizes(make_batch_transform(
            eval_transforms(self.eval_size, normalization.mean, normalization.std, square=eval_padding == "square",
                            mask_fill=void)), self.eval_size))

    # ---- evaluation protocols
    def _protocol_dataset(self, protocol: EvalProtocol, normalization):
        """The validation images as `protocol` runs them (see `protocol_transform`)."""
        return self._raw_eval_dataset.with_transform(
            protocol_transform(protocol, self.eval_size, normalization.mean, normalization.std))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The model's own loss, or `segmentation_loss` on its logits. (Trainer's `compute_loss_func`
        is not used: with it, Trainer takes the loss as already averaged over accumulation steps and
        multiplies it by the number of processes.)"""
        if self.segmentation_loss is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs["labels"]
        outputs = model(**{key: value for key, value in inputs.items() if key != "labels"})
        loss = self.segmentation_loss(outputs["logits"], labels)
        return (loss, outputs) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        if "image_size" not in inputs:  # the plain protocol: Trainer's batched forward
            label_sizes = inputs.pop("label_size", None)
            loss, logits, labels = super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
            labels = outside_marked(labels, label_sizes)
            if self.segmentation_metrics is None or logits is None or labels is None:
                return loss, logits, labels
            # Scored here, before Trainer pads the labels to the tallest batch of any process and gathers
            # them: each process's batch is scored at its own size, and only the counts cross processes.
            counts = self.segmentation_metrics.score_batch(logits, labels)
            return loss, ScoredCounts(counts), labels.new_zeros((len(labels), 1))
        # Another protocol: images of one run size (and one annotation size) together, each padded as
        # it would be alone (to the model's multiple, as mmsegmentation pads), the prediction brought back to
        # its annotation's size; no loss (the protocol's outputs are logits or averaged probabilities).
        protocol = self._active_protocol or self.eval_protocol
        image_sizes, label_sizes = inputs.pop("image_size").tolist(), inputs.pop("label_size").tolist()
        pixels, labels = inputs["pixel_values"], inputs["labels"]
        multiple = input_multiple(self.accelerator.unwrap_model(model))
        model.eval()
        # The toolkit's metrics score each image as its scores arrive, so only one image's class maps at its
        # annotation's size exist at a time (a batch's, padded to its largest, grew with the largest image).
        # Other metrics get the batch's scores (logits, or the log of averaged probabilities), padded.
        scored = [None] * len(pixels) if self.segmentation_metrics is not None else None
        batch_scores = None if scored else torch.full(
            (len(pixels), model.config.num_labels, *labels.shape[-2:]), float(torch.tensor(PROBABILITY_FLOOR).log()),
            device=pixels.device)
        with self.autocast_smart_context_manager():
            for ((height, width), label_size), indices in same_size_groups(image_sizes, label_sizes).items():
                predicted = image_logits(model, pixels[indices, :, :height, :width], protocol, multiple,
                                         batch_size=len(pixels), size=label_size)
                for index, scores in zip(indices, predicted):
                    if scored is None:
                        batch_scores[index, :, :label_size[0], :label_size[1]] = scores[0]
                        continue
                    scored[index] = self.segmentation_metrics.score_batch(
                        scores, labels[index: index + 1, :label_size[0], :label_size[1]])
                    del scores  # before the next image's maps are made
        if scored is not None:
            # Trainer computes metrics only for a batch with labels: one placeholder per image, as the counts hold them.
            return None, ScoredCounts(torch.cat(parts) for parts in zip(*scored)), labels.new_zeros((len(pixels), 1))
        return None, batch_scores, outside_marked(labels, label_sizes)

    def evaluate_augmented(self) -> dict[str, float] | None:
        """Evaluate once under the protocol's test-time augmentation (scales, flip); the metrics
        are prefixed ``eval_tta_``. None when the protocol has none."""
        if self.augmented_protocol is None:
            return None
        self._active_protocol = self.augmented_protocol
        try:
            return self.evaluate(eval_dataset=self._protocol_dataset(self.augmented_protocol,
                                                                     model_normalization(self.model)),
                                 metric_key_prefix="eval_tta")
        finally:
            self._active_protocol = None

    def speed_settings(self) -> dict:
        """The device switches this trainer runs with (precision, TF32, memory format, compile,
        data-loader workers), as results.json records them."""
        return speed_record(self.args, self.channels_last)

    def logged_evaluations(self) -> list[dict]:
        """Every evaluation in the run's log, those before a resume included."""
        return [entry for entry in self.state.log_history if "eval_mean_iou" in entry]

    @property
    def resource_meter(self) -> ResourceMeter:
        """The callback measuring this run's wall time and peak memory."""
        return next(callback for callback in self.callback_handler.callbacks if isinstance(callback, ResourceMeter))

    # ---- exact resume
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
        what = " and ".join(
            part for part, bad in (("the loss", bad_loss_anywhere), ("the gradient norm", bad_norm)) if bad
        )
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

    # ---- evaluation scores the weights that are saved
    def evaluate(self, *args, **kwargs):
        # Each process keeps its own BatchNorm running statistics, and Trainer evaluates the
        # unwrapped model, so without this every process would score its share of the images with
        # other statistics than the main process saves and publishes.
        if self.args.world_size > 1 and torch.distributed.is_initialized() and not (
                self.is_fsdp_enabled or self.is_deepspeed_enabled):
            for buffer in self.model.buffers():
                torch.distributed.broadcast(buffer.data, src=0)
        scores = super().evaluate(*args, **kwargs)
        if self.segmentation_metrics is not None:
            prefix = kwargs.get("metric_key_prefix", args[2] if len(args) > 2 else "eval")
            self.confusion_matrices[prefix] = self.segmentation_metrics.last_confusion
            self.per_image_counts[prefix] = (self.state.global_step, self._per_image_counts())
        return scores

    def _per_image_counts(self) -> PerImageCounts:
        """The last evaluation's per-image counts, named by the validation images' ids (their position
        in the evaluation's order where the data has no ``id`` column, or ids that repeat)."""
        counts = self.segmentation_metrics.last_counts
        images = len(counts["intersection"])
        raw = self._raw_eval_dataset
        ids = [str(image_id) for image_id in raw["id"]] \
            if raw is not None and len(raw) == images and "id" in raw.column_names else []
        if len(set(ids)) != images:  # no ids, or not one per image: positions (the order is deterministic)
            ids = [str(position) for position in range(images)]
        return PerImageCounts(ids, self.segmentation_metrics.class_names, **counts)

    def final_counts(self, prefix: str = "eval") -> PerImageCounts | None:
        """The per-image counts of the evaluation `prefix` if it scored the current weights (the
        trainer's step), else None."""
        step, counts = self.per_image_counts.get(prefix, (None, None))
        return counts if step == self.state.global_step else None

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


def same_size_groups(image_sizes: list, label_sizes: list) -> dict[tuple, list[int]]:
    """The indices of a batch's samples grouped by (image size, annotation size), in batch order:
    the images a protocol can run together, each padded as it would be alone."""
    groups: dict[tuple, list[int]] = {}
    for index, sizes in enumerate(zip(map(tuple, image_sizes), map(tuple, label_sizes))):
        groups.setdefault(sizes, []).append(index)
    return groups


def with_label_sizes(transform, eval_size: int):
    """`transform` (a plain evaluation's) adding each sample's ``label_size``: its mask's size before
    padding (shrunk to fit `eval_size` as the image is), which tells the metrics where the image ends."""

    def transform_with_sizes(batch: dict) -> dict:
        output = transform(batch)
        output["label_size"] = [list(shrunk_size(image.height, image.width, eval_size)) for image in batch["image"]]
        return output

    return transform_with_sizes


def outside_marked(labels: torch.Tensor | None, label_sizes) -> torch.Tensor | None:
    """`labels` with every pixel beyond its sample's ``label_size`` (bottom and right padding) set to
    Trainer's -100: not scored, and the image's edge for boundary IoU. The loss was computed before."""
    if labels is None or label_sizes is None:
        return labels
    labels = labels.to(torch.int64, copy=True)  # -100 must not wrap in a byte
    sizes = label_sizes.tolist() if isinstance(label_sizes, torch.Tensor) else label_sizes
    for index, (height, width) in enumerate(sizes):
        labels[index, height:, :] = TRAINER_PAD_INDEX
        labels[index, :, width:] = TRAINER_PAD_INDEX
    return labels


def grouped_optimizer(args: SegTrainingArguments, model):
    """Trainer's optimizer factory for the parameter groups `args` ask for, checked against `model`
    now rather than steps into training; None where ``--optim`` builds its own groups."""
    factory = trainer_optimizer(args, model)
    if factory is not None:
        factory[0]().groups(model, args.learning_rate)
    return factory


__all__ = ["SegTrainer", "with_fields"]
