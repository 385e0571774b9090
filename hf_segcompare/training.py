"""One training run: arguments, data, model, `Trainer`, and the measured results.

`parse_args` reads `ModelArguments`, `DataArguments` and `TrainingArguments` with
`HfArgumentParser`; the chosen model's recipe supplies the defaults, and anything on the command
line overrides them. `run` builds the data and model, trains and evaluates through an unmodified
`Trainer`, and writes ``results.json`` (parameters, wall time, samples/s, peak memory, every
evaluation) into the output folder.
"""

from __future__ import annotations

import json
import math
import platform
import resource
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments

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
from .data.download import VOC_TRAINVAL_URL, download_voc
from .data.image_mask import load_image_mask_dataset
from .data.synthetic import DEFAULT_CACHE_DIR
from .cards import write_model_card
from .hub import push_folder
from .inference import build_image_processor
from .metrics import SegmentationMetrics
from .models import count_parameters, create_model, get_spec, list_models
from .models.pretrained import DEFAULT_PRETRAINED, load_pretrained_encoder

RESULTS_FILE = "results.json"
MAX_CROP_SIZE = 512  # the published VOC recipes train on 512x512 crops
MAX_EVAL_SIZE = 512  # holds every VOC image (at most 500 px); larger images are shrunk to fit

# Recipes for the embedded synthetic data (random init, CPU, minutes): the values every run
# starts from, overridable on the command line. A "-tiny" test variant uses its model's recipe.
# The published VOC recipes (mmsegmentation, SegFormer paper) arrive with pretrained starting points.
COMMON_DEFAULTS: dict[str, Any] = {
    "do_train": True,
    "do_eval": True,
    "eval_strategy": "epoch",
    "save_strategy": "epoch",
    "save_total_limit": 1,
    "logging_strategy": "steps",
    "logging_steps": 10,
    "per_device_eval_batch_size": 8,
    "optim": "adamw_torch",
    "lr_scheduler_type": "polynomial",
    "warmup_steps": 30,
    "weight_decay": 0.01,
    "report_to": "none",
    "dataloader_pin_memory": torch.cuda.is_available(),  # pinning without a GPU only warns
}
RECIPES: dict[str, dict[str, Any]] = {
    "unet": {"learning_rate": 1e-3, "per_device_train_batch_size": 8, "num_train_epochs": 15},
    "deeplabv3plus": {"learning_rate": 1e-3, "per_device_train_batch_size": 8, "num_train_epochs": 15},
    "vit": {"learning_rate": 3e-4, "per_device_train_batch_size": 8, "num_train_epochs": 15},
    "segformer-b0": {"learning_rate": 2e-3, "per_device_train_batch_size": 8, "num_train_epochs": 15},
}


@dataclass
class ModelArguments:
    """Which architecture to train, and where its weights start."""

    model: str = field(
        default="segformer-b0",
        metadata={"help": "Architecture to train.", "choices": list_models(include_test_variants=True)},
    )
    from_scratch: bool = field(
        default=False,
        metadata={"help": "Start from random weights instead of a pretrained encoder."},
    )
    pretrained: str | None = field(
        default=None,
        metadata={"help": "Where the encoder's weights come from: a Hub id, a local folder or state-dict file, or an "
                          "smp weights name. Default per model: " + ", ".join(f"{k}: {v}" for k, v in DEFAULT_PRETRAINED.items())},
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "A local folder saved by this toolkit (save_pretrained) to start from or to evaluate."},
    )


@dataclass
class DataArguments:
    """Where the data comes from and at what size it is cropped and scored."""

    dataset_name: str = field(
        default="synthetic",
        metadata={
            "help": "'synthetic': the embedded VOC-format data (generated once into --cache_dir); "
            "'voc': Pascal VOC 2012 from --data_dir (or downloaded); anything else: a Hub dataset id, a local "
            "parquet file or folder, or an imagefolder, with an image and a mask column."
        },
    )
    image_column_name: str = field(default="image", metadata={"help": "Image column of a Hub/parquet/imagefolder dataset."})
    label_column_name: str = field(default="label", metadata={"help": "Mask column of a Hub/parquet/imagefolder dataset."})
    data_dir: str | None = field(
        default=None,
        metadata={"help": "With --dataset_name voc: a folder holding VOCdevkit/VOC2012 (or that folder), "
                          "or the official VOCtrainval_11-May-2012.tar, read without extracting. Without it, "
                          "the tar is downloaded into --cache_dir (resumable, MD5-checked)."},
    )
    voc_url: str = field(
        default=VOC_TRAINVAL_URL, metadata={"help": "Where to download VOCtrainval_11-May-2012.tar from."}
    )
    sbd_dir: str | None = field(
        default=None,
        metadata={"help": "A SegmentationClassAug folder (SBD masks): train becomes VOC train + SBD minus VOC val "
                          "(10,582 ids on the real data)."},
    )
    sbd_list: str | None = field(
        default=None, metadata={"help": "The SBD id list (default: train_aug.txt in or beside --sbd_dir)."}
    )
    drop_invalid: bool = field(
        default=False,
        metadata={"help": "Leave out samples that fail validation (and report them) instead of stopping."},
    )
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "Where the synthetic data is generated and the Arrow cache is written "
                          "(default: $HF_SEGCOMPARE_CACHE or ~/.cache/hf_segcompare)."},
    )
    crop_size: int | None = field(
        default=None,
        metadata={"help": "Training crop size (default: the smallest multiple of 32 holding the largest "
                          f"training image, at most {MAX_CROP_SIZE})."},
    )
    eval_size: int | None = field(
        default=None,
        metadata={"help": "Evaluation images are padded to this square size, and only shrunk when larger "
                          "(default: the smallest multiple of 32 holding the largest validation image, at most "
                          f"{MAX_EVAL_SIZE}: 512 for VOC)."},
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training samples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N validation samples."})


class UsageError(ValueError):
    """Arguments that cannot work together; the message says what to pass instead."""


def build_parser() -> HfArgumentParser:
    """The parser over (ModelArguments, DataArguments, TrainingArguments)."""
    return HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))


def recipe_defaults(model_name: str) -> dict[str, Any]:
    """Training-argument defaults for `model_name`: shared values, then its recipe."""
    spec = get_spec(model_name)
    base_name = spec.name.removesuffix("-tiny")
    base_name = {"segformer": "segformer-b0"}.get(base_name, base_name)
    return {**COMMON_DEFAULTS, **RECIPES[base_name], "output_dir": str(Path("outputs") / model_name)}


def parse_args(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, TrainingArguments]:
    """Parse the command line; the chosen model's recipe fills in every value not given."""
    parser = build_parser()
    # First pass reads only --model (an unknown name exits with status 2 listing the valid
    # names), so that its recipe can become the defaults of the real pass.
    probe, _ = parser.parse_known_args(argv)
    parser.set_defaults(**recipe_defaults(probe.model))
    if _multi_process_without_gpu():
        # `accelerate launch --multi_gpu` on a machine without CUDA starts N processes, but
        # accelerate only joins them into one gloo group (MULTI_CPU) when asked for the CPU;
        # otherwise each process would silently train and evaluate everything on its own.
        parser.set_defaults(use_cpu=True)
    return parser.parse_args_into_dataclasses(args=argv)


def _multi_process_without_gpu() -> bool:
    import os

    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def check_args(model_args: ModelArguments, data_args: DataArguments) -> None:
    """Reject combinations that cannot work, before anything is loaded or built."""
    if model_args.from_scratch and (model_args.pretrained or model_args.model_name_or_path):
        raise UsageError("--from_scratch means random weights: drop it, or drop --pretrained / --model_name_or_path.")
    if model_args.model_name_or_path and not Path(model_args.model_name_or_path).is_dir():
        raise UsageError(
            f"--model_name_or_path {model_args.model_name_or_path}: no such folder. Pass a local folder written by "
            "save_pretrained (e.g. an earlier run's output_dir), or --from_scratch."
        )


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
    """One saved by this toolkit (``--model_name_or_path``), a fresh model (``--from_scratch``), or
    a fresh model whose encoder is loaded from ``--pretrained`` (default: the model's own)."""
    if not model_args.model_name_or_path:
        model = create_model(model_args.model, labels)
        if not model_args.from_scratch:
            source = model_args.pretrained or DEFAULT_PRETRAINED.get(model_args.model)
            if source is None:
                raise UsageError(f"--model {model_args.model} has no default pretrained weights: pass --pretrained "
                                 "PATH or --from_scratch.")
            load_pretrained_encoder(model, model_args.model, source)
            model_args.pretrained = source  # the resolved value is what results.json records
        return model
    from transformers import AutoModelForSemanticSegmentation

    model = AutoModelForSemanticSegmentation.from_pretrained(model_args.model_name_or_path, local_files_only=True)
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
    """A plain `Trainer` with streaming mean IoU and the resource meter; the same for every model."""
    # SegFormer's forward takes **kwargs, which makes Trainer pass num_items_in_batch and skip
    # its own loss averaging over gradient-accumulation steps; no model here uses that count.
    model.accepts_loss_kwargs = False
    # with_transform builds pixel_values/labels from the image/label columns: Trainer must not drop them.
    training_args.remove_unused_columns = False
    # Evaluation keeps no predictions: per-batch confusion matrices are summed as they arrive.
    training_args.batch_eval_metrics = True
    metrics = SegmentationMetrics([model.config.id2label[i] for i in range(model.config.num_labels)])
    return Trainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        compute_metrics=metrics.compute,
        preprocess_logits_for_metrics=metrics.preprocess_logits,
        callbacks=[ResourceMeter()],
    )


def run(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> dict[str, Any]:
    """Train and/or evaluate one model as the arguments say; return (and save) the results."""
    check_args(model_args, data_args)
    dataset, data_dir = load_data(data_args, training_args)
    labels = id2label()
    crop_size = data_args.crop_size or min(MAX_CROP_SIZE, size_to_fit(largest_image_side(dataset["train"])))
    eval_size = data_args.eval_size or min(MAX_EVAL_SIZE, size_to_fit(largest_image_side(dataset["validation"])))
    train_dataset = dataset["train"].with_transform(make_batch_transform(train_transforms(crop_size)))
    eval_dataset = dataset["validation"].with_transform(make_batch_transform(eval_transforms(eval_size)))

    model = load_model(model_args, labels)
    # We push once, ourselves, after our card is written; and the token never enters the
    # arguments that Trainer pickles into training_args.bin or that results.json records.
    push_repo = (training_args.hub_model_id or Path(training_args.output_dir).name) if training_args.push_to_hub else None
    hub_token, training_args.hub_token, training_args.push_to_hub = training_args.hub_token, None, False
    trainer = build_trainer(model, training_args, train_dataset if training_args.do_train else None, eval_dataset)

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

    # Every rank measured its own peak; the run's figure is the largest.
    peak = ResourceMeter.peak_memory()
    peak["bytes"] = int(trainer.accelerator.gather(torch.tensor([peak["bytes"]], device=trainer.args.device)).max())
    peak["per_process"] = trainer.accelerator.num_processes > 1

    spec = get_spec(model_args.model)
    results = _json_safe({
        "model": model_args.model,
        "architecture": spec.description,
        "family": spec.family,
        "parameters": count_parameters(model),
        "dataset": {
            "name": data_args.dataset_name,
            "path": str(data_dir),
            "dropped_invalid": getattr(dataset, "dropped", []),
            "train_samples": len(dataset["train"]),
            "validation_samples": len(dataset["validation"]),
            "class_names": list(VOC_CLASSES),
            "crop_size": crop_size,
            "eval_size": eval_size,
        },
        "train": train_summary,
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
    if trainer.is_world_process_zero():
        output_dir = Path(training_args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        if training_args.do_train:
            build_image_processor(eval_size).save_pretrained(output_dir)
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
