"""One training run: data, model, `Trainer`, and the measured results.

`run` takes the parsed arguments (see `hf_segcompare.arguments`), builds the data and the model,
trains and evaluates through an unmodified `Trainer` (the recipe's parameter groups go in through
Trainer's optimizer-factory hook), and writes into the output folder: ``run_args.json`` (the
resolved arguments, before anything is trained), the model with its image processor, its card and
``results.json`` (parameters, wall time, samples/s, peak memory, the optimizer's groups, every
evaluation).
"""

from __future__ import annotations

import errno
import json
import math
import platform
import re
import resource
import sys
import tempfile
import time
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
    AugmentationSeeds,
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
from .checkpoints import WEIGHT_FILES, CheckpointError, clear_previous_run, resolve_resume
from .hub import hub_offline_mode, hub_unreachable_reason, push_folder
from .inference import build_image_processor
from .metrics import SegmentationMetrics
from .models import count_parameters, create_model, get_spec
from .models.pretrained import DEFAULT_PRETRAINED, check_pretrained_source, load_pretrained_encoder
from .optim import RecipeError, trainer_optimizer
from .recipes import get_recipe
from .trainer import SegTrainer, TrainingDiverged, describe_write_error

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
    folder = Path(name_or_path).expanduser()
    if folder.is_dir():
        _require_saved_model_folder(folder)
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


def _require_saved_model_folder(folder: Path) -> None:
    """A folder that save_pretrained wrote: a readable config.json of a known model type, and safetensors weights."""
    from transformers import AutoConfig

    def refuse(what: str) -> UsageError:
        return UsageError(f"--model_name_or_path {folder}: {what}, so it is not a model saved by save_pretrained. "
                          + SAVED_MODEL_WAYS_OUT)

    if not (folder / "config.json").is_file():
        raise refuse("no config.json")
    try:
        AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as error:  # bad JSON, or a model_type nobody registered
        raise refuse(f"its config.json cannot be used ({str(error).splitlines()[0][:200]})") from None
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise refuse("no model.safetensors (only safetensors weights are loaded)")


class ResourceMeter(TrainerCallback):
    """Peak memory (CUDA max allocated on a GPU, peak RSS on the CPU) and training wall time, for
    the whole run even when it was resumed.

    Before every checkpoint is written, one entry goes into ``state.log_history`` (so into the
    checkpoint's trainer_state.json) with the seconds trained and the peak memory so far; a resumed
    run starts its clock from there instead of reporting only the part after the resume.
    """

    KEY = "segcompare_train_seconds"
    PEAK_KEY = "segcompare_peak_memory_bytes"

    def __init__(self):
        self.started = self.ended = None
        self.previous_seconds = 0.0
        self.previous_peak = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        carried = [entry for entry in state.log_history if self.KEY in entry]
        self.previous_seconds = carried[-1][self.KEY] if carried else 0.0
        self.previous_peak = carried[-1].get(self.PEAK_KEY, 0) if carried else 0
        self.started, self.ended = time.monotonic(), None

    def on_train_end(self, args, state, control, **kwargs):
        self.ended = time.monotonic()

    def seconds(self) -> float:
        """Training wall time of the whole run (so far), resumed parts included."""
        if self.started is None:
            return self.previous_seconds
        return self.previous_seconds + ((self.ended or time.monotonic()) - self.started)

    def on_step_end(self, args, state, control, **kwargs):
        self._record_before_save(state, control)

    def on_epoch_end(self, args, state, control, **kwargs):
        self._record_before_save(state, control)

    def _record_before_save(self, state, control) -> None:
        if control.should_save and not any(entry.get("step") == state.global_step and self.KEY in entry
                                           for entry in state.log_history[-2:]):
            state.log_history.append({"step": state.global_step, self.KEY: self.seconds(),
                                      self.PEAK_KEY: self.peak_memory()["bytes"]})

    def peak_memory(self) -> dict[str, Any]:
        """{"bytes": ..., "kind": ...}: this process so far, or the resumed run's earlier peak if larger."""
        if torch.cuda.is_available():
            measured = {"bytes": int(torch.cuda.max_memory_allocated()), "kind": "cuda_max_allocated"}
        else:
            # ru_maxrss is in KiB on Linux, bytes on macOS.
            scale = 1 if sys.platform == "darwin" else 1024
            measured = {"bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale, "kind": "cpu_peak_rss"}
        measured["bytes"] = max(measured["bytes"], self.previous_peak)
        return measured


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


class AugmentationEpoch(TrainerCallback):
    """Keeps `AugmentationSeeds.epoch` at the epoch Trainer is about to train (a resumed one too)."""

    def __init__(self, seeds: AugmentationSeeds):
        self.seeds = seeds

    def on_epoch_begin(self, args, state, control, train_dataloader=None, **kwargs):
        # Trainer's own count: epochs completed = optimizer steps so far // optimizer steps per epoch.
        batches = len(train_dataloader)
        per_epoch = max(math.ceil(batches / args.gradient_accumulation_steps), 1)
        self.seeds.epoch = state.global_step // per_epoch


class BudgetLine(TrainerCallback):
    """Prints, as training starts, how long it will train and what set that (a recipe's
    ``max_steps`` would otherwise override a ``--num_train_epochs`` without a word)."""

    def on_train_begin(self, args, state, control, train_dataloader=None, **kwargs):
        if not state.is_world_process_zero:
            return
        batch = args.train_batch_size * args.gradient_accumulation_steps * args.world_size
        images = len(train_dataloader.dataset) if train_dataloader is not None else None
        epochs = f"{state.max_steps * batch / images:.2f} epochs of {images:,} images" if images else "epochs unknown"
        given = f"--max_steps {args.max_steps}" if args.max_steps > 0 else f"--num_train_epochs {args.num_train_epochs:g}"
        resumed = f"; resuming at step {state.global_step}" if state.global_step else ""
        print(f"training budget: {state.max_steps:,} optimizer steps at a global batch of {batch} ({epochs}), "
              f"set by {given}{resumed}", flush=True)


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


def build_trainer(model, training_args: TrainingArguments, train_dataset, eval_dataset,
                  augmentation: AugmentationSeeds | None = None) -> SegTrainer:
    """A `SegTrainer` (exact resume, divergence stops the run) with streaming mean IoU, the
    resource meter, the budget line and, for SegTrainingArguments, the recipe's parameter groups;
    the same for every model.

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
    if augmentation is not None and training_args.dataloader_persistent_workers and \
            training_args.dataloader_num_workers > 0:
        # Persistent workers keep the copy of the augmentation seeds they started with: every
        # epoch would repeat the first epoch's crops.
        raise UsageError("--dataloader_persistent_workers would give every epoch the first epoch's random crops "
                         "(each worker keeps its copy of the augmentation epoch): leave it off.")
    metrics = SegmentationMetrics([model.config.id2label[i] for i in range(model.config.num_labels)])
    return SegTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        compute_metrics=metrics.compute,
        preprocess_logits_for_metrics=metrics.preprocess_logits,
        callbacks=[ResourceMeter(), ScheduleCheck(), BudgetLine()]
        + ([AugmentationEpoch(augmentation)] if augmentation is not None else []),
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


def _meter(trainer: Trainer) -> ResourceMeter:
    return next(callback for callback in trainer.callback_handler.callbacks if isinstance(callback, ResourceMeter))


def _mean_logged_loss(log_history: list[dict]) -> float | None:
    """Mean training loss per step over the logged entries (each covers the steps since the last)."""
    total, steps, last_step = 0.0, 0, 0
    for entry in log_history:
        if "loss" in entry and "step" in entry:
            covered = entry["step"] - last_step
            total, steps, last_step = total + entry["loss"] * covered, steps + covered, entry["step"]
    return total / steps if steps else None


def _whole_run_loss(log_history: list[dict], this_call: float, resume_from: str | None) -> float | None:
    logged = _mean_logged_loss(log_history)
    if logged is not None:
        return logged
    return None if resume_from else this_call


def _train_and_evaluate(trainer: Trainer, training_args: TrainingArguments,
                        resume_from: str | None) -> tuple[dict[str, Any] | None, list[dict]]:
    """Train (resuming from `resume_from` if set) and save if asked, then make sure the last step was
    evaluated; return the train summary and every evaluation (those before a resume included)."""
    train_summary = None
    if training_args.do_train:
        train_output = trainer.train(resume_from_checkpoint=resume_from)
        try:
            trainer.save_model()
        except (OSError, RuntimeError) as error:
            raise CheckpointError(describe_write_error(error, Path(training_args.output_dir))
                                  + ". The checkpoints already written are intact.") from None
        wall_time = _meter(trainer).seconds()
        # Trainer's own figures cover this call only; a resumed run reports the whole run.
        samples = trainer.state.global_step * training_args.train_batch_size * \
            training_args.gradient_accumulation_steps * training_args.world_size
        train_summary = {
            "wall_time_s": wall_time,
            "samples_per_second": samples / wall_time if wall_time else 0.0,
            "steps": train_output.global_step,
            "epochs": trainer.state.epoch,
            # Trainer's own mean covers this call only: after a resume, only the logged losses span the run.
            "final_train_loss": _whole_run_loss(trainer.state.log_history, train_output.training_loss, resume_from),
            "resumed_from": Path(resume_from).name if resume_from else None,
        }
    evaluations = [entry for entry in trainer.state.log_history if "eval_mean_iou" in entry]
    if training_args.do_eval and (not evaluations or evaluations[-1].get("step") != trainer.state.global_step):
        trainer.check_weights_finite("the final evaluation")
        final = trainer.evaluate()
        evaluations.append({**final, "epoch": trainer.state.epoch, "step": trainer.state.global_step})
    return train_summary, evaluations


def _collect_results(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments,
                     trainer: Trainer, dataset, data_dir: str, train_summary: dict[str, Any] | None,
                     evaluations: list[dict], status: str = "complete") -> dict[str, Any]:
    """Everything results.json records about the run (strict JSON: NaN becomes null).

    `status` is ``complete``, or ``diverged`` for a run stopped by non-finite numbers: such a record
    has no ``final_eval``, and the comparison page and push refuse it.
    """
    # Every rank measured its own peak; the run's figure is the largest.
    peak = _meter(trainer).peak_memory()
    peak["bytes"] = int(trainer.accelerator.gather(torch.tensor([peak["bytes"]], device=trainer.args.device)).max())
    peak["per_process"] = trainer.accelerator.num_processes > 1
    spec = get_spec(model_args.model)
    return _json_safe({
        "status": status,
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
        "final_eval": evaluations[-1] if evaluations and status == "complete" else None,
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


def _require_writable(folder: Path) -> None:
    """Fail before any data loads when the run could not write into `folder`; create nothing.

    The probe is a temporary file in `folder`, or in its nearest existing parent when it does not
    exist yet, removed at once: the real errno (read-only file system, permission, not a folder)
    goes into the message.
    """
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{existing} is a file")
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-test-"):
            pass
    except OSError as error:
        raise UsageError(f"--output_dir {folder}: cannot write there ({error.strerror or error}). "
                         "Pass an --output_dir you can write to.") from None


def prepare_output_dir(training_args: TrainingArguments) -> str | None:
    """Check the output folder and decide where training resumes from (None: a fresh start).

    A training run resumes from the last complete checkpoint in --output_dir unless
    --overwrite_output_dir, which first removes what an earlier run wrote there. A folder holding a
    finished run and no checkpoint is refused rather than overwritten.

    Raises:
        UsageError: the folder is not writable, the checkpoint asked for cannot be resumed, or the
            folder holds a finished run.
    """
    output_dir = Path(training_args.output_dir)
    _require_writable(output_dir)
    if not training_args.do_train:
        return None
    overwrite = getattr(training_args, "overwrite_output_dir", False)
    try:
        resume_from = resolve_resume(training_args.resume_from_checkpoint, output_dir, overwrite)
    except CheckpointError as error:
        raise UsageError(str(error)) from None
    if overwrite and training_args.process_index == 0:
        clear_previous_run(output_dir)
    finished = [name for name in (RESULTS_FILE, "model.safetensors") if (output_dir / name).exists()]
    if resume_from is None and finished and not overwrite:
        raise UsageError(f"--output_dir {output_dir} holds a finished run ({', '.join(finished)}) and no checkpoint "
                         "to resume: pass --overwrite_output_dir to replace it, or another --output_dir.")
    # training_args keeps what the user gave (None, "last", a path): run_args.json replays that,
    # not this folder's checkpoint.
    return resume_from


def evaluation_record_name(dataset_name: str, split: str = "validation") -> str:
    """``eval_<dataset>_<split>.json``: where an evaluation-only run writes its record."""
    name = Path(dataset_name).name if Path(dataset_name).expanduser().exists() else dataset_name.replace("/", "--")
    return f"eval_{re.sub(r'[^A-Za-z0-9._-]+', '-', name).strip('-') or 'data'}_{split}.json"


def _write_json(path: Path, results: dict[str, Any]) -> None:
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def _publish_training(results, trainer, training_args, data_args, dataset, push_repo, hub_token) -> None:
    """results.json, image processor and card of a finished training run; then the push, if asked."""
    output_dir = Path(training_args.output_dir)
    build_image_processor(data_args.eval_size).save_pretrained(output_dir)
    _write_json(output_dir / RESULTS_FILE, results)
    # Our card, written after save_model: Trainer's generic one would carry an empty model-index.
    write_model_card(results, output_dir, model=trainer.model, validation=dataset["validation"],
                     model_ref=push_repo or training_args.hub_model_id)
    if push_repo:
        push_folder(output_dir, push_repo, token=hub_token, private=training_args.hub_private_repo)


def _publish_evaluation(results, training_args, data_args) -> Path:
    """An evaluation-only run's record, beside the model's: never results.json, which belongs to
    the training run. A trained folder's card is re-rendered with the evaluation added."""
    output_dir = Path(training_args.output_dir)
    path = output_dir / evaluation_record_name(data_args.dataset_name)
    _write_json(path, results)
    trained = output_dir / RESULTS_FILE
    if trained.is_file():
        training_record = json.loads(trained.read_text())
        if training_record.get("status", "complete") == "complete":
            write_model_card(training_record, output_dir, model_ref=training_args.hub_model_id)
    return path


def run(model_args: ModelArguments, data_args: DataArguments, training_args: TrainingArguments) -> dict[str, Any]:
    """Train and/or evaluate one model as the arguments say; return (and save) the results.

    Raises:
        UsageError, DataError, PretrainedUnavailable: bad input, before any data loads where the
            cause is knowable up front.
        TrainingDiverged: non-finite loss, gradients or weights; results.json says ``diverged``,
            and no card is written or pushed.
        CheckpointError: a checkpoint or the model could not be written (e.g. a full disk).
    """
    check_args(model_args, data_args)
    resume_from = prepare_output_dir(training_args)
    if model_args.model_name_or_path:  # before the data: a missing model should not wait for it
        require_saved_model_reachable(model_args.model_name_or_path)
    if model_args.pretrained:
        check_pretrained_source(model_args.model, model_args.pretrained)
    dataset, data_dir = load_data(data_args, training_args)
    labels = id2label()
    # Resolved into the arguments, so run_args.json and results.json hold the sizes the run used.
    data_args.crop_size = data_args.crop_size or min(MAX_CROP_SIZE, size_to_fit(largest_image_side(dataset["train"])))
    data_args.eval_size = data_args.eval_size or min(MAX_EVAL_SIZE, size_to_fit(largest_image_side(dataset["validation"])))
    augmentation = AugmentationSeeds(training_args.data_seed if training_args.data_seed is not None else training_args.seed)
    train_dataset = dataset["train"].with_transform(make_batch_transform(train_transforms(data_args.crop_size),
                                                                         augmentation))
    eval_dataset = dataset["validation"].with_transform(make_batch_transform(eval_transforms(data_args.eval_size)))

    # Trainer seeds itself only once the model exists: seed first, or every run would start from
    # other random weights (a new head included) and --seed would not repeat a run.
    set_seed(training_args.seed)
    model = load_model(model_args, labels)
    # Written before anything trains, so even an interrupted run says how it was started; sizes
    # and pretrained source resolved, so replaying the file repeats this run on changed data too.
    if training_args.process_index == 0 and training_args.do_train:
        write_run_args(training_args.output_dir, model_args, data_args, training_args)
    # We push once, ourselves, after our card is written; and the token never enters the
    # arguments that Trainer pickles into training_args.bin or that results.json records.
    push_repo = (training_args.hub_model_id or Path(training_args.output_dir).name) if training_args.push_to_hub else None
    hub_token, training_args.hub_token, training_args.push_to_hub = training_args.hub_token, None, False
    trainer = build_trainer(model, training_args, train_dataset if training_args.do_train else None, eval_dataset,
                            augmentation)

    try:
        train_summary, evaluations = _train_and_evaluate(trainer, training_args, resume_from)
    except TrainingDiverged as error:
        results = _collect_results(model_args, data_args, training_args, trainer, dataset, data_dir, None,
                                   [entry for entry in trainer.state.log_history if "eval_mean_iou" in entry],
                                   status="diverged")
        results["diverged"] = {"step": error.step, "message": str(error)}
        if trainer.is_world_process_zero():
            _write_json(Path(training_args.output_dir) / RESULTS_FILE, results)
        raise
    results = _collect_results(model_args, data_args, training_args, trainer, dataset, data_dir,
                               train_summary, evaluations)
    if trainer.is_world_process_zero():
        if training_args.do_train:
            _publish_training(results, trainer, training_args, data_args, dataset, push_repo, hub_token)
        else:
            _publish_evaluation(results, training_args, data_args)
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
    # An evaluation-only run's record is its own file; results.json stays the training record.
    record = RESULTS_FILE if results.get("train") else evaluation_record_name(results["dataset"]["name"])
    return "; ".join(parts) + f"\nresults: {Path(output_dir) / record}"
