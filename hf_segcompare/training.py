"""One training run: data, model, `Trainer`, and the measured results.

`run` takes the parsed arguments (see `hf_segcompare.arguments`), builds the data and the model,
trains and evaluates through an unmodified `Trainer` (the recipe's parameter groups go in through
Trainer's optimizer-factory hook), and writes into the output folder: ``run_args.json`` (the
resolved arguments, before anything is trained), the model with its image processor, its card and
``results.json`` (parameters, wall time, samples/s, peak memory, the optimizer's groups, every
evaluation).
"""

from __future__ import annotations

import json
import math
import platform
import resource
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

from .arguments import (
    MAX_CROP_SIZE,
    MAX_EVAL_SIZE,
    DataArguments,
    ModelArguments,
    SegTrainingArguments,
    UsageError,
    check_args,
    write_run_args,
)
from .data import (
    VOC_CLASSES,
    ensure_synthetic_voc,
    eval_transforms,
    id2label,
    largest_image_side,
    load_voc,
    make_batch_transform,
    size_to_fit,
    train_transforms,
)
from .data.download import download_voc
from .data.image_mask import load_image_mask_dataset
from .data.synthetic import DEFAULT_CACHE_DIR
from .cards import write_model_card
from .hub import hub_offline_mode, hub_unreachable_reason, push_folder
from .inference import build_image_processor
from .metrics import SegmentationMetrics
from .models import count_parameters, create_model, get_spec
from .models.pretrained import DEFAULT_PRETRAINED, load_pretrained_encoder
from .optim import RecipeError, trainer_optimizer
from .recipes import get_recipe

RESULTS_FILE = "results.json"
SAVED_MODEL_WAYS_OUT = "Pass a local folder written by save_pretrained (e.g. an earlier run's output_dir), or --from_scratch."


def load_data(data_args: DataArguments, training_args: TrainingArguments):
    """The `DatasetDict(train, validation)` that `data_args` names."""
    cache_dir = Path(data_args.cache_dir) if data_args.cache_dir else DEFAULT_CACHE_DIR
    # Rank 0 generates, validates and caches; the other ranks then read its cache.
    with training_args.main_process_first(desc="loading VOC"):
        if data_args.dataset_name not in ("synthetic", "voc"):
            dataset = load_image_mask_dataset(
                data_args.dataset_name, data_args.image_column_name, data_args.label_column_name,
                cache_dir=cache_dir / "arrow", drop_invalid=data_args.drop_invalid,
            )
            data_dir = data_args.dataset_name
        else:
            if data_args.dataset_name == "synthetic":
                data_dir = ensure_synthetic_voc(cache_dir)
            elif data_args.data_dir:
                data_dir = data_args.data_dir
            else:  # the user asked for VOC and named no copy: fetch the official tar
                data_dir = download_voc(cache_dir / "voc", url=data_args.voc_url)
            dataset = load_voc(data_dir, sbd_dir=data_args.sbd_dir, sbd_list=data_args.sbd_list,
                               cache_dir=cache_dir / "arrow", drop_invalid=data_args.drop_invalid)
    for split, limit in (("train", data_args.max_train_samples), ("validation", data_args.max_eval_samples)):
        if limit is not None:
            dataset[split] = dataset[split].select(range(min(limit, len(dataset[split]))))
    return dataset, str(data_dir)


def load_model(model_args: ModelArguments, labels: dict[int, str]):
    """One saved by this toolkit (``--model_name_or_path``: a folder or Hub id), a fresh model
    (``--from_scratch``), or a fresh model whose encoder is loaded from ``--pretrained`` (default:
    the model's own)."""
    if not model_args.model_name_or_path:
        overrides = {}
        if model_args.atrous_rates is not None:
            arch_kwargs = get_spec(model_args.model).config_kwargs.get("arch_kwargs", {})
            overrides["arch_kwargs"] = {**arch_kwargs, "decoder_atrous_rates": list(model_args.atrous_rates)}
        model = create_model(model_args.model, labels, **overrides)
        if not model_args.from_scratch:
            source = model_args.pretrained or DEFAULT_PRETRAINED.get(model_args.model)
            if source is None:
                raise UsageError(f"--model {model_args.model} has no default pretrained weights: pass --pretrained "
                                 "PATH or --from_scratch.")
            load_pretrained_encoder(model, model_args.model, source)
            model_args.pretrained = source  # the resolved value is what results.json records
        return model
    model = _load_saved_model(model_args.model_name_or_path)
    saved_as = getattr(model.config, "segcompare_model", model_args.model)
    if saved_as != model_args.model:
        raise UsageError(
            f"{model_args.model_name_or_path} holds a {saved_as} model but --model is {model_args.model}: "
            f"pass --model {saved_as}."
        )
    if model.config.id2label != labels:
        raise UsageError(
            f"{model_args.model_name_or_path} predicts {model.config.num_labels} classes "
            f"({list(model.config.id2label.values())[:3]}...), the data has {len(labels)}: they must match."
        )
    return model


def _load_saved_model(name_or_path: str):
    """A model this toolkit saved, from a local folder or a Hub id (safetensors only), failing fast
    and saying what to pass when it cannot be had."""
    from transformers import AutoModelForSemanticSegmentation

    is_local = Path(name_or_path).expanduser().is_dir()
    require_saved_model_reachable(name_or_path)
    try:
        return AutoModelForSemanticSegmentation.from_pretrained(
            str(Path(name_or_path).expanduser()) if is_local else name_or_path,
            local_files_only=is_local, use_safetensors=True,
        )
    except OSError as error:  # no such repo or file, no safetensors, offline and not cached
        where = "the folder" if is_local else ("not a local folder; as a Hub id" if not hub_offline_mode()
                                               else "not a local folder, and HF_HUB_OFFLINE is set")
        raise UsageError(f"--model_name_or_path {name_or_path}: {where}: {str(error).splitlines()[0].rstrip('.')}. "
                         + SAVED_MODEL_WAYS_OUT) from None


def require_saved_model_reachable(name_or_path: str) -> None:
    """Fail within seconds when `name_or_path` is neither a local folder nor reachable on the Hub.

    Raises:
        UsageError: naming the argument and both ways out.
    """
    if Path(name_or_path).expanduser().is_dir():
        return
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name_or_path)
    except HFValidationError:
        raise UsageError(f"--model_name_or_path {name_or_path}: no such folder, and not a Hub id either. "
                         + SAVED_MODEL_WAYS_OUT) from None
    if hub_offline_mode():
        return  # from_pretrained looks in the local cache and says so itself
    reason = hub_unreachable_reason()
    if reason:
        raise UsageError(f"--model_name_or_path {name_or_path}: not a local folder, and as a Hub id: {reason}. "
                         + SAVED_MODEL_WAYS_OUT)


class ResourceMeter(TrainerCallback):
    """Peak memory of the training process: CUDA max allocated on a GPU, peak RSS on the CPU."""

    def on_train_begin(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()

    @staticmethod
    def peak_memory() -> dict[str, Any]:
        """{"bytes": ..., "kind": ...} for this process so far."""
        if torch.cuda.is_available():
            return {"bytes": int(torch.cuda.max_memory_allocated()), "kind": "cuda_max_allocated"}
        # ru_maxrss is in KiB on Linux, bytes on macOS.
        scale = 1 if sys.platform == "darwin" else 1024
        return {"bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale, "kind": "cpu_peak_rss"}


class ScheduleCheck(TrainerCallback):
    """Stops a run whose polynomial schedule cannot work, before its first step.

    transformers' polynomial decay divides by (total steps - warm-up steps): a warm-up as long as
    the run (e.g. the demo's 30 steps in a one-epoch run of 30 steps) would end in a
    ZeroDivisionError at the last step, after all the training.
    """

    def on_train_begin(self, args, state, control, **kwargs):
        if args.lr_scheduler_type != "polynomial":  # the others guard against it themselves
            return
        warmup = args.get_warmup_steps(state.max_steps)
        if warmup == state.max_steps:
            raise UsageError(
                f"the warm-up ({warmup} steps) is as long as the whole run ({state.max_steps} steps), and the "
                "polynomial schedule cannot decay over zero steps: pass a shorter --warmup_steps (e.g. "
                f"--warmup_steps {max(state.max_steps // 10, 0)}) or train for longer."
            )


def _json_safe(value):
    """NaN/inf -> None (strict JSON), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def _environment(trainer: Trainer) -> dict[str, Any]:
    import accelerate
    import datasets
    import segmentation_models_pytorch
    import torchvision
    import transformers

    device = trainer.args.device
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})",
        "num_processes": trainer.accelerator.num_processes,
        "distributed_type": str(trainer.accelerator.distributed_type),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "datasets": datasets.__version__,
        "segmentation_models_pytorch": segmentation_models_pytorch.__version__,
    }


def build_trainer(model, training_args: TrainingArguments, train_dataset, eval_dataset) -> Trainer:
    """A plain `Trainer` with streaming mean IoU, the resource meter and, for SegTrainingArguments,
    the recipe's parameter groups; the same for every model.

    Raises:
        UsageError: ``--lr_multipliers`` or ``--no_decay`` that cannot be applied to this model.
    """
    # SegFormer's forward takes **kwargs, which makes Trainer pass num_items_in_batch and skip
    # its own loss averaging over gradient-accumulation steps; no model here uses that count.
    model.accepts_loss_kwargs = False
    # with_transform builds pixel_values/labels from the image/label columns: Trainer must not drop them.
    training_args.remove_unused_columns = False
    # Evaluation keeps no predictions: per-batch confusion matrices are summed as they arrive.
    training_args.batch_eval_metrics = True
    optimizer_factory = None
    if isinstance(training_args, SegTrainingArguments):
        try:
            optimizer_factory = trainer_optimizer(training_args, model)
            if optimizer_factory is not None:  # check the groups now, not steps into training
                optimizer_factory[0]().groups(model, training_args.learning_rate)
        except RecipeError as error:
            raise UsageError(str(error)) from None
    metrics = SegmentationMetrics([model.config.id2label[i] for i in range(model.config.num_labels)])
    return Trainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        compute_metrics=metrics.compute,
        preprocess_logits_for_metrics=metrics.preprocess_logits,
        callbacks=[ResourceMeter(), ScheduleCheck()],
        optimizer_cls_and_kwargs=optimizer_factory,
    )


def optimizer_groups(trainer: Trainer) -> list[dict[str, Any]]:
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


def _recipe_record(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments,
                   trainer: Trainer) -> dict[str, Any] | None:
    """The recipe, the values given on top of it, and the optimizer's groups as Trainer built them."""
    if not isinstance(training_args, SegTrainingArguments) or not training_args.recipe:
        return None
    recipe = get_recipe(training_args.recipe, model_args.model)
    current = {**asdict(data_args), **{key: getattr(training_args, key) for key in recipe.defaults()
                                      if hasattr(training_args, key)}}
    overridden = {key: current[key] for key, value in recipe.defaults().items()
                  if key in current and current[key] != value and key != "recipe"}
    return {
        **recipe.summary(),
        "overridden": {key: getattr(value, "value", value) for key, value in overridden.items()},
        "global_batch_size": training_args.global_batch_size(),
        # accelerate wraps the optimizer; the recipe's is inside.
        "optimizer": type(getattr(trainer.optimizer, "optimizer", trainer.optimizer)).__name__
        if trainer.optimizer is not None else None,
        "param_groups": optimizer_groups(trainer),
    }


def _train_and_evaluate(trainer: Trainer, training_args: TrainingArguments) -> tuple[dict[str, Any] | None, list[dict]]:
    """Train (and save) if asked, then make sure the last step was evaluated; return the train
    summary and every evaluation."""
    train_summary = None
    if training_args.do_train:
        train_output = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        trainer.save_model()
        train_summary = {
            "wall_time_s": train_output.metrics["train_runtime"],
            "samples_per_second": train_output.metrics["train_samples_per_second"],
            "steps": train_output.global_step,
            "epochs": trainer.state.epoch,
            "final_train_loss": train_output.training_loss,
        }
    evaluations = [entry for entry in trainer.state.log_history if "eval_mean_iou" in entry]
    if training_args.do_eval and (not evaluations or evaluations[-1].get("step") != trainer.state.global_step):
        final = trainer.evaluate()
        evaluations.append({**final, "epoch": trainer.state.epoch, "step": trainer.state.global_step})
    return train_summary, evaluations


def _collect_results(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments,
                     trainer: Trainer, dataset, data_dir: str, train_summary: dict[str, Any] | None,
                     evaluations: list[dict]) -> dict[str, Any]:
    """Everything results.json records about the run (strict JSON: NaN becomes null)."""
    # Every rank measured its own peak; the run's figure is the largest.
    peak = ResourceMeter.peak_memory()
    peak["bytes"] = int(trainer.accelerator.gather(torch.tensor([peak["bytes"]], device=trainer.args.device)).max())
    peak["per_process"] = trainer.accelerator.num_processes > 1
    spec = get_spec(model_args.model)
    return _json_safe({
        "model": model_args.model,
        "architecture": spec.description,
        "family": spec.family,
        "parameters": count_parameters(trainer.model),
        "dataset": {
            "name": data_args.dataset_name,
            "path": str(data_dir),
            "dropped_invalid": getattr(dataset, "dropped", []),
            "train_samples": len(dataset["train"]),
            "validation_samples": len(dataset["validation"]),
            "class_names": list(VOC_CLASSES),
            "crop_size": data_args.crop_size,
            "eval_size": data_args.eval_size,
        },
        "train": train_summary,
        "recipe": _recipe_record(model_args, data_args, training_args, trainer),
        "peak_memory": peak,
        "evaluations": evaluations,
        "final_eval": evaluations[-1] if evaluations else None,
        "train_loss": [
            {"step": e["step"], "epoch": e.get("epoch"), "loss": e["loss"]}
            for e in trainer.state.log_history if "loss" in e
        ],
        "environment": _environment(trainer),
        "args": {
            "model": asdict(model_args),
            "data": asdict(data_args),
            "training": training_args.to_dict(),  # to_dict() masks every *_token value
        },
    })


def run(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> dict[str, Any]:
    """Train and/or evaluate one model as the arguments say; return (and save) the results."""
    check_args(model_args, data_args)
    if model_args.model_name_or_path:  # before the data: a missing model should not wait for it
        require_saved_model_reachable(model_args.model_name_or_path)
    dataset, data_dir = load_data(data_args, training_args)
    labels = id2label()
    # Resolved into the arguments, so run_args.json and results.json hold the sizes the run used.
    data_args.crop_size = data_args.crop_size or min(MAX_CROP_SIZE, size_to_fit(largest_image_side(dataset["train"])))
    data_args.eval_size = data_args.eval_size or min(MAX_EVAL_SIZE, size_to_fit(largest_image_side(dataset["validation"])))
    train_dataset = dataset["train"].with_transform(make_batch_transform(train_transforms(data_args.crop_size)))
    eval_dataset = dataset["validation"].with_transform(make_batch_transform(eval_transforms(data_args.eval_size)))

    # Trainer seeds itself only once the model exists: seed first, or every run would start from
    # other random weights (a new head included) and --seed would not repeat a run.
    set_seed(training_args.seed)
    model = load_model(model_args, labels)
    # Written before anything trains, so even an interrupted run says how it was started; sizes
    # and pretrained source resolved, so replaying the file repeats this run on changed data too.
    if training_args.process_index == 0:
        write_run_args(training_args.output_dir, model_args, data_args, training_args)
    # We push once, ourselves, after our card is written; and the token never enters the
    # arguments that Trainer pickles into training_args.bin or that results.json records.
    push_repo = (training_args.hub_model_id or Path(training_args.output_dir).name) if training_args.push_to_hub else None
    hub_token, training_args.hub_token, training_args.push_to_hub = training_args.hub_token, None, False
    trainer = build_trainer(model, training_args, train_dataset if training_args.do_train else None, eval_dataset)

    train_summary, evaluations = _train_and_evaluate(trainer, training_args)
    results = _collect_results(model_args, data_args, training_args, trainer, dataset, data_dir,
                               train_summary, evaluations)
    if trainer.is_world_process_zero():
        output_dir = Path(training_args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        if training_args.do_train:
            build_image_processor(data_args.eval_size).save_pretrained(output_dir)
        (output_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2, default=str) + "\n")
        # Our card, written after save_model: Trainer's generic one would carry an empty model-index.
        write_model_card(results, output_dir, model=trainer.model, validation=dataset["validation"],
                         model_ref=push_repo or training_args.hub_model_id)
        if push_repo:
            results["hub_commit"] = push_folder(output_dir, push_repo, token=hub_token,
                                                private=training_args.hub_private_repo)
    return results


def summary_line(results: dict[str, Any], output_dir: str) -> str:
    """The one line a run prints at the end."""
    final = results.get("final_eval") or {}
    parts = [f"{results['model']}: {results['parameters']:,} parameters"]
    if final:
        parts.append(
            f"validation mean_iou {final['eval_mean_iou']:.3f} (mean_accuracy {final['eval_mean_accuracy']:.3f}, "
            f"overall_accuracy {final['eval_overall_accuracy']:.3f})"
        )
    if results.get("train"):
        train = results["train"]
        parts.append(f"trained {train['epochs']:.2f} epochs in {train['wall_time_s']:.0f} s "
                     f"({train['samples_per_second']:.1f} samples/s)")
    peak = results["peak_memory"]
    parts.append(f"peak memory {peak['bytes'] / 2**20:.0f} MiB ({peak['kind']})")
    return "; ".join(parts) + f"\nresults: {Path(output_dir) / RESULTS_FILE}"
