"""A run's record (`RunResults`) from its plan and its trainer: what was trained on what, how, and
what it measured, the environment included."""

from __future__ import annotations

import dataclasses
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.segmentation_data import SegmentationData
from ..engine.trainer import SegTrainer
from ..evaluation.calibration import reliability
from ..evaluation.intervals import mean_iou_interval
from ..evaluation.per_image import per_image_file
from ..models import count_parameters, model_normalization
from ..report.results import RunResults, TrainSummary, record_name
from .resolve import RunPlan


def environment(trainer: SegTrainer) -> dict[str, Any]:
    """The device, process count and library versions the run ran with."""
    import accelerate
    import datasets
    import segmentation_models_pytorch
    import torchvision
    import transformers

    device = trainer.args.device
    return {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()})",
        "num_processes": trainer.accelerator.num_processes,
        "torch_threads": torch.get_num_threads(),  # intra-op CPU threads of each process
        "distributed_type": str(trainer.accelerator.distributed_type),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "datasets": datasets.__version__,
        "segmentation_models_pytorch": segmentation_models_pytorch.__version__,
    }


def optimizer_groups(trainer: SegTrainer) -> list[dict[str, Any]]:
    """The parameter groups of the optimizer Trainer trained with, as results.json records them."""
    if trainer.optimizer is None:
        return []
    return [
        {
            "name": group.get("name", f"group {index}"),
            "initial_lr": group.get("initial_lr", group["lr"]),
            "weight_decay": group.get("weight_decay", 0.0),
            "parameters": sum(parameter.numel() for parameter in group["params"]),
        }
        for index, group in enumerate(trainer.optimizer.param_groups)
    ]


def _optimizer_name(trainer: SegTrainer) -> str | None:
    # accelerate wraps the optimizer; the recipe's is inside.
    return type(getattr(trainer.optimizer, "optimizer", trainer.optimizer)).__name__ \
        if trainer.optimizer is not None else None


def _as_lists(matrix) -> list[list[int]] | None:
    return None if matrix is None else [[int(count) for count in row] for row in matrix]


def _training_setup(plan: RunPlan, trainer: SegTrainer) -> dict[str, Any]:
    """How the model was trained beyond the recipe's numbers: the loss and its class weights, and
    whether BatchNorm was synchronised over the processes."""
    loss = plan.loss or {"name": "ce", "class_weights": None, "class_weights_from": None}
    return {"loss": {**loss, "computed_by": "the model's own forward" if plan.loss is None
                     else "hf_segcompare.engine.losses.SegmentationLoss"},
            "sync_batchnorm": trainer.sync_batchnorm_choice.record()}


def _published_model(trainer: SegTrainer, evaluations: list[dict], best: dict[str, Any] | None
                     ) -> dict[str, Any] | None:
    """With ``load_best_model_at_end``: which step's weights were published, chosen by what, and the
    last evaluation beside it (None without it: the last step's weights are)."""
    args, state = trainer.args, trainer.state
    if not (args.do_train and args.load_best_model_at_end):
        return None
    patience = getattr(args, "early_stopping_patience", None)
    return {"selected_by": f"eval_{args.metric_for_best_model.removeprefix('eval_')}",
            "greater_is_better": bool(args.greater_is_better),
            "step": trainer.published_step(),
            "checkpoint": Path(state.best_model_checkpoint).name if state.best_model_checkpoint else None,
            "last_step": state.global_step,
            "last_eval": evaluations[-1] if evaluations and best is not None else None,
            "early_stopping_patience": patience,
            # only the early-stopping callback ends a run before its budget
            "stopped_early": bool(patience and state.max_steps and state.global_step < state.max_steps)}


@dataclass(frozen=True)
class TrainingOutcome:
    """What training and the final evaluations of one run gave.

    Attributes:
        train: the train summary (wall time, samples/s, steps, epochs, mean loss, the checkpoint it
            resumed from); None for an evaluation-only run.
        evaluations: every evaluation, those before a resume included.
        augmented: the published weights' scores under test-time augmentation (None unless the protocol has one).
        best: the evaluation of the best checkpoint when ``load_best_model_at_end`` published one
            other than the last step (None: the last evaluation is the published model's).
    """

    train: TrainSummary | None
    evaluations: list[dict[str, Any]]
    augmented: dict[str, Any] | None = None
    best: dict[str, Any] | None = None


def collect_results(plan: RunPlan, trainer: SegTrainer, dataset: SegmentationData, outcome: TrainingOutcome, *,
                    changes: list[dict[str, Any]] = (), diverged: dict[str, Any] | None = None) -> RunResults:
    """The run's `RunResults`: ``diverged`` (the step and message) makes it a diverged run's record,
    with no final evaluation. (The trained model's cost, `measure_inference`, is measured after it, on
    the main process only, and added before the record is written.)"""
    # Every rank measured its own peak; the run's figure is the largest.
    peak = trainer.resource_meter.peak_memory()
    peak["bytes"] = int(trainer.accelerator.gather(torch.tensor([peak["bytes"]], device=trainer.args.device)).max())
    peak["per_process"] = trainer.accelerator.num_processes > 1
    data_args, labels = plan.data_args, dataset.label_info
    normalization = model_normalization(trainer.model)
    complete = diverged is None
    best = outcome.best
    evaluations = outcome.evaluations
    counts = trainer.final_counts() if complete else None
    results = RunResults(
        status="complete" if complete else "diverged",
        model=plan.model_args.model,
        architecture=plan.entry.description,
        family=plan.entry.family,
        parameters=count_parameters(trainer.model),
        dataset={
            "name": data_args.dataset_name,
            "path": dataset.source,
            "dropped_invalid": list(dataset.dropped),
            "train_samples": len(dataset["train"]),
            "validation_samples": len(dataset["validation"]),
            **labels.record(),  # class_names, ignore_index, where the names came from, label map / reduction
            "validation_split": dataset.split_info,
            "columns": dataset.columns,
            "crop_size": data_args.crop_size,
            "eval_size": data_args.eval_size,
            "eval_padding": data_args.eval_padding,
            "protocol": data_args.protocol,
            "evaluation": {**trainer.eval_protocol.record(), "shrunk_images": len(trainer.shrunk_for_scoring)}
            if trainer.eval_protocol else None,
        },
        train=outcome.train,
        recipe=plan.recipe_record(_optimizer_name(trainer), optimizer_groups(trainer)),
        normalization={"mean": list(normalization.mean), "std": list(normalization.std)},
        peak_memory=peak,
        evaluations=evaluations,
        final_eval=(best or evaluations[-1]) if evaluations and complete else None,
        published_model=_published_model(trainer, evaluations, best) if complete else None,
        augmented_eval=outcome.augmented if complete else None,
        confusion_matrix=_as_lists(trainer.confusion_matrices.get("eval")) if complete else None,
        changed_on_resume=list(changes),
        train_loss=[{"step": e["step"], "epoch": e.get("epoch"), "loss": e["loss"]}
                    for e in trainer.state.log_history if "loss" in e],
        training_setup=_training_setup(plan, trainer) if plan.training_args.do_train else None,
        environment=environment(trainer),
        speed=trainer.speed_settings(),
        diverged=diverged,
        args={
            "model": dataclasses.asdict(plan.recorded_model_args()),
            "data": dataclasses.asdict(data_args),
            "training": trainer.args.to_dict(),  # to_dict() masks every *_token value
        },
    )
    if counts is not None:
        results.bootstrap = {**mean_iou_interval(counts, data_args.bootstrap_samples),
                             "per_image_file": per_image_file(record_name(results)).name}
        results.calibration = reliability(counts.calibration.sum(axis=0))
    return results


__all__ = ["TrainingOutcome", "collect_results", "environment", "optimizer_groups"]
