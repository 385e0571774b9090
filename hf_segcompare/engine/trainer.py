"""`SegTrainer`: `Trainer` set up for semantic segmentation, plus the guarantees a report needs.

Given a model and raw image/mask datasets (``image`` and ``label`` columns, as `load_voc` returns
them), it applies the training and evaluation transforms with the model's own input normalisation,
scores with streaming mean IoU, adds the toolkit's callbacks and, for `SegTrainingArguments`, its
parameter groups. Everything else it is given as explicit, resolved values (crop and evaluation
sizes, the evaluation protocol): it applies no recipe and reads no command line
(`hf_segcompare.pipeline.resolve` decides those values for a run). It never changes what the caller
passed: arguments that must differ for segmentation (`remove_unused_columns`, `batch_eval_metrics`)
are set on a copy.

- **Exact resume, whole checkpoints** (`exact_resume.ExactResume`): every weight of a resumed or
  best checkpoint is restored and checked (transformers issue #43701); a failed save leaves no
  partial ``checkpoint-N``.
- **Divergence stops the run** (`divergence.DivergenceStop`): a non-finite loss, gradient norm or
  weight raises `TrainingDiverged` naming the step; no checkpoint with non-finite weights is written.
- **Evaluation scores the saved weights.** Under several processes each keeps its own
  BatchNorm statistics; before every evaluation the main process's are shared, so the figure
  belongs to the weights that are saved and published.
- **The Trainer internals it relies on are checked** when it is built (`trainer_internals`): the
  private methods it overrides or calls, the public ones whose parameters it takes by position,
  and the attributes it sets or reads; a changed one stops with one line.

What is not training lives in the layers below: the validation set as an evaluation protocol runs
it and the per-image scoring of a protocol's predictions (`hf_segcompare.evaluation.eval_set`), the
seeded training transform (`hf_segcompare.data.transforms.seeded_training_set`).
"""

from __future__ import annotations

import copy

import torch
from transformers import EarlyStoppingCallback, Trainer, TrainingArguments

from ..data.transforms import MAX_CROP_SIZE, SegCollator, fitted_size, seeded_training_set
from ..evaluation.eval_set import EvaluationSet, outside_marked, protocol_prediction
from ..evaluation.metrics import ScoredCounts, SegmentationMetrics
from ..evaluation.per_image import PerImageCounts
from ..evaluation.protocol import EvalProtocol
from ..labels import IGNORE_INDEX
from ..models import input_multiple, model_normalization
from .callbacks import AugmentationEpoch, BudgetLine, ResourceMeter, ReturnFreedMemory, ScheduleCheck
from .device_settings import speed_record, uses_channels_last
from .divergence import DivergenceStop
from .exact_resume import ExactResume
from .losses import SegmentationLoss
from .optim import trainer_optimizer
from .sync_batchnorm import convert_to_sync_batchnorm, resolve_sync_batchnorm
from .tensorboard import add_prediction_grid
from .trainer_internals import check_trainer_internals
from .training_args import SegTrainingArguments


def with_fields(args: TrainingArguments, **changes) -> TrainingArguments:
    """A shallow copy of `args` with `changes` applied; `args` itself is left as it was."""
    changed = copy.copy(args)
    for name, value in changes.items():
        setattr(changed, name, value)
    return changed


def _segmentation_args(args: TrainingArguments, custom_metrics: bool) -> TrainingArguments:
    """`args`, or a copy with what segmentation needs changed (the caller's object is never edited)."""
    # The transforms read the image/label columns (Trainer must not drop them), and our metrics sum
    # per-batch confusion matrices (batch_eval_metrics).
    changes = {"remove_unused_columns": False} if args.remove_unused_columns else {}
    if args.load_best_model_at_end and args.save_total_limit == 1:
        # Trainer would delete the last checkpoint once training ends: the same command again would
        # then resume from the best one and train its steps a second time. Keep both.
        changes["save_total_limit"] = 2
    if getattr(args, "early_stopping_patience", None) and not args.restore_callback_states_from_checkpoint:
        changes["restore_callback_states_from_checkpoint"] = True  # a resume keeps the patience count
    if not custom_metrics and not args.batch_eval_metrics:
        changes["batch_eval_metrics"] = True
    return with_fields(args, **changes) if changes else args


def _is_raw(dataset) -> bool:
    """An image/mask dataset no transform has been set on yet."""
    columns = set(getattr(dataset, "column_names", None) or [])
    return {"image", "label"} <= columns and getattr(dataset, "format", {}).get("type") != "custom"


class SegTrainer(DivergenceStop, ExactResume, Trainer):
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
        check_trainer_internals()  # the private Trainer methods used below are still what they were
        args = _segmentation_args(args, custom_metrics="compute_metrics" in kwargs)
        normalization = model_normalization(model)
        # Padding takes the value loss and metric skip: the label set's void (its ignore index).
        void = getattr(model.config, "semantic_loss_ignore_index", IGNORE_INDEX)
        model = self._prepared_model(model, args, sync_batchnorm, channels_last)
        self.augmentation = self.evaluation_set = None
        self.crop_size = crop_size
        eval_protocol = eval_protocol or EvalProtocol()
        if train_dataset is not None and _is_raw(train_dataset):
            self.crop_size = crop_size or fitted_size(train_dataset, MAX_CROP_SIZE)
            short_side = (eval_protocol.short_side or self.crop_size) if eval_protocol.resize == "short_side" else None
            train_dataset, self.augmentation = seeded_training_set(
                train_dataset, self.crop_size, args.data_seed if args.data_seed is not None else args.seed,
                normalization.mean, normalization.std, short_side=short_side, mask_fill=void)
        raw_validation = eval_dataset if eval_dataset is not None and _is_raw(eval_dataset) else None
        if raw_validation is not None:
            self.evaluation_set = EvaluationSet.build(
                raw_validation, eval_protocol, eval_size=eval_size, padding=eval_padding, crop_size=self.crop_size,
                mean=normalization.mean, std=normalization.std, void=void)
            eval_dataset = self.evaluation_set.dataset
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
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         callbacks=self._callbacks(args) + list(kwargs.pop("callbacks", None) or []), **kwargs)
        # SegFormer's forward takes **kwargs, which would make Trainer pass num_items_in_batch and
        # skip its own loss averaging over accumulation steps; no model here uses that count.
        self.model_accepts_loss_kwargs = False
        self.segmentation_loss = loss
        self._finite_losses = torch.ones((), dtype=torch.bool, device=self.args.device)
        self._active_protocol = None
        # The last evaluation's [C, C] pixel counts per metric prefix ("eval", "eval_tta"), and its
        # per-image counts with the step it scored.
        self.confusion_matrices: dict[str, object] = {}
        self.per_image_counts: dict[str, tuple[int, PerImageCounts]] = {}
        add_prediction_grid(self, raw_validation)  # with --report_to tensorboard

    def _prepared_model(self, model, args: TrainingArguments, sync_batchnorm: bool | None,
                        channels_last: bool | None):
        """`model` with synchronised BatchNorm and in the channels_last format where those apply (the
        choices are kept as `sync_batchnorm_choice` and `channels_last`)."""
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
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def _callbacks(self, args: TrainingArguments) -> list:
        """The toolkit's callbacks: resources, the schedule check, the budget line, freed memory, the
        augmentation epoch (when it trains from raw data), early stopping (when asked for)."""
        callbacks = [ResourceMeter(), ScheduleCheck(), BudgetLine(), ReturnFreedMemory()]
        callbacks += [AugmentationEpoch(self.augmentation)] if self.augmentation is not None else []
        patience = getattr(args, "early_stopping_patience", None)
        return callbacks + ([EarlyStoppingCallback(patience)] if patience else [])

    # ---- what the evaluation set decided, for the record
    @property
    def eval_protocol(self) -> EvalProtocol | None:
        """The single-scale protocol every evaluation runs (None: no raw validation set was given)."""
        return self.evaluation_set.protocol if self.evaluation_set else None

    @property
    def augmented_protocol(self) -> EvalProtocol | None:
        """The protocol with its scales and flip, run once by `evaluate_augmented`; None: it has none."""
        return self.evaluation_set.augmented if self.evaluation_set else None

    @property
    def eval_size(self) -> int | None:
        return self.evaluation_set.eval_size if self.evaluation_set else None

    @property
    def shrunk_for_scoring(self) -> tuple[int, ...]:
        """The validation images (positions in the split's own order) scored shrunk to the protocol's max side."""
        return self.evaluation_set.shrunk_for_scoring if self.evaluation_set else ()

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
        model.eval()
        with self.autocast_smart_context_manager():
            return protocol_prediction(model, inputs, self._active_protocol or self.eval_protocol,
                                       input_multiple(self.accelerator.unwrap_model(model)), self.segmentation_metrics)

    def evaluate_augmented(self) -> dict[str, float] | None:
        """Evaluate once under the protocol's test-time augmentation (scales, flip); the metrics
        are prefixed ``eval_tta_``. None when the protocol has none."""
        if self.augmented_protocol is None:
            return None
        self._active_protocol = self.augmented_protocol
        try:
            normalization = model_normalization(self.model)
            return self.evaluate(eval_dataset=self.evaluation_set.under(self.augmented_protocol, normalization.mean,
                                                                        normalization.std),
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

    # ---- evaluation scores the weights that are saved
    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval"):
        # Each process keeps its own BatchNorm running statistics, and Trainer evaluates the
        # unwrapped model, so without this every process would score its share of the images with
        # other statistics than the main process saves and publishes.
        if self.args.world_size > 1 and torch.distributed.is_initialized() and not (
                self.is_fsdp_enabled or self.is_deepspeed_enabled):
            for buffer in self.model.buffers():
                torch.distributed.broadcast(buffer.data, src=0)
        scores = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if self.segmentation_metrics is not None:
            self.confusion_matrices[metric_key_prefix] = self.segmentation_metrics.last_confusion
            self.per_image_counts[metric_key_prefix] = (self.state.global_step, self._per_image_counts())
        return scores

    def _per_image_counts(self) -> PerImageCounts:
        """The last evaluation's per-image counts, named by the validation images' ids."""
        counts = self.segmentation_metrics.last_counts
        images = len(counts["intersection"])
        ids = self.evaluation_set.image_ids(images) if self.evaluation_set else [str(i) for i in range(images)]
        return PerImageCounts(ids, self.segmentation_metrics.class_names, **counts)

    def final_counts(self, prefix: str = "eval") -> PerImageCounts | None:
        """The per-image counts of the evaluation `prefix` if it scored the current weights (the
        trainer's step), else None."""
        step, counts = self.per_image_counts.get(prefix, (None, None))
        return counts if step == self.state.global_step else None



def grouped_optimizer(args: SegTrainingArguments, model):
    """Trainer's optimizer factory for the parameter groups `args` ask for, checked against `model`
    now rather than steps into training; None where ``--optim`` builds its own groups."""
    factory = trainer_optimizer(args, model)
    if factory is not None:
        factory[0]().groups(model, args.learning_rate)
    return factory


__all__ = ["SegTrainer", "with_fields"]
