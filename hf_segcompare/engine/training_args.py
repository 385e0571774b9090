"""`SegTrainingArguments`: `TrainingArguments` with this toolkit's defaults and the few options a
segmentation run needs beyond them (parameter groups, memory format, the output-folder policy).

Like TRL's `SFTConfig` beside `SFTTrainer`, it lives beside `SegTrainer`, which reads it; it knows
nothing of recipes or the command line (`hf_segcompare.config.arguments` fills it from both).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from ..errors import UsageError
from .device_settings import resolve_device_defaults


def _default(name: str, value=None, factory=None):
    """TrainingArguments' field `name` (its help kept) with this toolkit's default."""
    metadata = TrainingArguments.__dataclass_fields__[name].metadata
    return field(default_factory=factory, metadata=metadata) if factory else field(default=value, metadata=metadata)


@dataclass
class SegTrainingArguments(TrainingArguments):
    """`TrainingArguments` plus what a segmentation recipe needs beyond them.

    The defaults every run starts from are fields here (TRL's `SFTConfig` does the same), so Python
    and the command line get the same ones; `hf_segcompare.config.arguments.from_recipe` adds a
    model's recipe on top. `SegTrainer` reads `lr_multipliers`, `no_decay` and `channels_last` from
    here; ``recipe`` only records which recipe the values came from (the trainer never applies one).
    """

    output_dir: str | None = _default("output_dir", "outputs")
    do_train: bool = _default("do_train", True)
    do_eval: bool = _default("do_eval", True)
    eval_strategy: IntervalStrategy | str = _default("eval_strategy", "epoch")
    save_strategy: SaveStrategy | str = _default("save_strategy", "epoch")
    save_total_limit: int | None = _default("save_total_limit", 1)
    logging_steps: float = _default("logging_steps", 10)
    per_device_eval_batch_size: int = _default("per_device_eval_batch_size", 8)
    report_to: None | str | list[str] = _default("report_to", "none")
    # Pinning without a GPU only warns.
    dataloader_pin_memory: bool = _default("dataloader_pin_memory", factory=torch.cuda.is_available)
    # The transforms build pixel_values/labels from the image/label columns: Trainer must not drop them.
    remove_unused_columns: bool = _default("remove_unused_columns", False)
    # Evaluation keeps no predictions: per-batch confusion matrices are summed as they arrive.
    batch_eval_metrics: bool = _default("batch_eval_metrics", True)
    # None: chosen for the device (hf_segcompare.engine.device_settings): on a CUDA GPU bf16 (fp16 where
    # bf16 is not supported), TF32, workers from the cores; on a CPU fp32 and no workers.
    bf16: bool | None = field(default=None, metadata={"help": "bf16 mixed precision (default: on for a CUDA GPU "
                                                              "that supports it, off on a CPU)."})
    fp16: bool | None = field(default=None, metadata={"help": "fp16 mixed precision with loss scaling (default: on "
                                                              "for a CUDA GPU without bf16, off on a CPU)."})
    tf32: bool | None = field(default=None, metadata={"help": "TF32 matmul and convolutions (default: on for an "
                                                              "Ampere or newer GPU)."})
    dataloader_num_workers: int | None = field(
        default=None,
        metadata={"help": "Data-loader worker processes, for training and evaluation (default: on a CUDA GPU the "
                          "cores of each process less one, at most 8; on a CPU 0, the cores compute the model)."},
    )

    recipe: str | None = field(
        default=None,
        metadata={"help": "Where the training defaults come from: 'published' (each model's published schedule; the "
                          "default on Pascal VOC), 'quick-10' / 'quick-15' (the same over 10 / 15 epochs), 'fitted' "
                          "(the published schedule fitted to data without a published recipe; the default on your "
                          "own data), or 'demo' (the embedded synthetic data on a CPU; the default with "
                          "--dataset_name synthetic)."},
    )
    lr_multipliers: str = field(
        default="",
        metadata={"help": "Learning-rate multipliers by parameter name: 'decode_head=10' trains every parameter "
                          "whose name contains decode_head at 10x --learning_rate ('' for none)."},
    )
    allow_changed_options: bool = field(
        default=False,
        metadata={"help": "When resuming: accept options that differ from the interrupted run's (learning rate, "
                          "schedule, budget, batch, data, seed, loss). They apply from the resume step, and "
                          "results.json and the card list each change and its step. The model, its start, the label "
                          "set and the optimizer's kind cannot change mid-run."},
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start afresh in --output_dir: remove the checkpoints, model, card and results an earlier run "
            "wrote there (other files stay). Without it a training run resumes from the last complete "
            "checkpoint there, and refuses a folder holding a finished run without one."
        },
    )
    channels_last: bool | None = field(
        default=None,
        metadata={"help": "Train and evaluate in the channels_last memory format (default: on for the CNNs on a CUDA "
                          "GPU, where their convolutions run faster so; off otherwise)."},
    )
    no_decay: str = field(
        default="transformers",
        metadata={"help": "Parameters trained without weight decay: 'transformers' (biases and normalisation "
                          "weights, Trainer's rule), 'none' (everything decays), or comma-separated parts of "
                          "parameter names (e.g. 'layer_norm')."},
    )

    early_stopping_patience: int | None = field(
        default=None,
        metadata={"help": "Stop training after this many evaluations in a row without a better "
                          "--metric_for_best_model (Trainer's EarlyStoppingCallback); needs --load_best_model_at_end, "
                          "so the model published is the best one. A resumed run keeps the count."},
    )
    sync_bn: bool | None = field(
        default=None,
        metadata={"help": "Synchronise BatchNorm statistics over the processes (SyncBatchNorm). Default: on for "
                          "models with BatchNorm when more than one process trains on CUDA GPUs, as mmsegmentation "
                          "trains the published recipes; off otherwise. Torch cannot synchronise CPU processes."},
    )
    loss: str = field(
        default="ce",
        metadata={"help": "The training loss: 'ce' (cross-entropy, every recipe's), 'dice', 'focal', 'lovasz' "
                          "(segmentation-models-pytorch's), or 'ce+dice' (their sum); each ignores the void label."},
    )
    class_weights: str = field(
        default="none",
        metadata={"help": "Class weights of the loss: 'none', 'balanced' (median-frequency weights counted from "
                          "the training masks when the run starts, and recorded), or a JSON file: a list of one "
                          "weight per class in id order, or {\"class name\": weight, ...}."},
    )

    def __post_init__(self):
        resolve_device_defaults(self)  # before TrainingArguments acts on precision and TF32
        if self.load_best_model_at_end and self.metric_for_best_model is None:
            # TrainingArguments would pick the loss; a segmentation run is judged by its mean IoU
            self.metric_for_best_model = "mean_iou"
        self._check_sizes()
        if self.early_stopping_patience is not None:
            if self.early_stopping_patience < 1:
                raise UsageError(f"--early_stopping_patience {self.early_stopping_patience}: give at least 1 "
                                 "(evaluations without improvement before training stops).")
            if not self.load_best_model_at_end:
                raise UsageError("--early_stopping_patience needs --load_best_model_at_end: a run stopped after "
                                 "evaluations without improvement publishes its best model, not its last.")
        try:
            super().__post_init__()
        except ValueError as error:  # TrainingArguments' own checks: options that do not fit together
            raise UsageError(" ".join(line.strip() for line in str(error).splitlines() if line.strip())) from None

    def _check_sizes(self) -> None:
        """Batches of no image and a budget of no step are refused here, before any data loads: Trainer
        would fail on the first (inside torch's sampler) and, on the second, train nothing and publish
        the random model."""
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name} {getattr(self, name)}: give 1 or more.")
        if self.do_train and self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise UsageError(f"--num_train_epochs {self.num_train_epochs:g} (with --max_steps {self.max_steps}) leaves "
                             "no step to train: pass --num_train_epochs above 0 or --max_steps 1 or more, or "
                             "--do_train false to evaluate without training.")

    def global_batch_size(self) -> int:
        """Training samples per optimizer step, over every process."""
        return self.per_device_train_batch_size * self.world_size * self.gradient_accumulation_steps


__all__ = ["SegTrainingArguments"]
