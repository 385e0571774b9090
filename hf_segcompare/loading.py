"""What a run loads: its data (`load_data`) and its model (`load_model`), each checked before the
slow part starts, with errors that name the argument and what to pass instead."""

from __future__ import annotations

import contextlib
from pathlib import Path

from transformers import TrainingArguments

from .arguments import DataArguments, ModelArguments
from .checkpoints import WEIGHT_FILES
from .data import ensure_synthetic_voc, load_voc
from .data.download import download_voc
from .data.image_mask import load_image_mask_dataset
from .data.synthetic import DEFAULT_CACHE_DIR
from .errors import PretrainedUnavailable, UsageError
from .hub import hub_offline_mode, require_hub
from .labels import LabelSet
from .models import create_model, get_entry
from .models.pretrained import check_pretrained_source

SAVED_MODEL_WAYS_OUT = (
    "Pass a local folder written by save_pretrained (e.g. an earlier run's output_dir), or --from_scratch."
)


def load_data(data_args: DataArguments, training_args: TrainingArguments):
    """The `DatasetDict(train, validation)` that `data_args` names, and the path it came from.

    The dict's ``labels`` attribute is the `LabelSet` its masks were validated against.
    """
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


def load_model(model_args: ModelArguments, labels: LabelSet):
    """One saved by this toolkit (``--model_name_or_path``: a folder or Hub id), a fresh model
    (``--from_scratch``), or a fresh model whose encoder is loaded from ``--pretrained`` (default:
    the model's own); always predicting `labels`."""
    if not model_args.model_name_or_path:
        overrides = {}
        if model_args.atrous_rates is not None:
            arch_kwargs = dict(get_entry(model_args.model).config_kwargs.get("arch_kwargs", {}))
            overrides["arch_kwargs"] = {**arch_kwargs, "decoder_atrous_rates": list(model_args.atrous_rates)}
        pretrained = None if model_args.from_scratch else (model_args.pretrained or True)
        with command_line_wording():
            return create_model(model_args.model, id2label=labels.id2label, pretrained=pretrained,
                                ignore_index=labels.ignore_index, **overrides)
    model = _load_saved_model(model_args.model_name_or_path)
    saved_as = getattr(model.config, "segcompare_model", model_args.model)
    if saved_as != model_args.model:
        raise UsageError(
            f"{model_args.model_name_or_path} holds a {saved_as} model but --model is {model_args.model}: "
            f"pass --model {saved_as}."
        )
    if model.config.id2label != labels.id2label:
        raise UsageError(
            f"{model_args.model_name_or_path} predicts {model.config.num_labels} classes "
            f"({list(model.config.id2label.values())[:3]}...), the data has {labels.num_labels}: they must match."
        )
    return model


def check_start(model_args: ModelArguments) -> None:
    """Fail before any data loads when ``--pretrained`` names a local file that cannot be read, or
    ``--model_name_or_path`` neither a saved model folder nor a reachable Hub id."""
    if model_args.model_name_or_path:
        require_saved_model_reachable(model_args.model_name_or_path)
    if model_args.pretrained:
        with command_line_wording():
            check_pretrained_source(model_args.model, model_args.pretrained)


@contextlib.contextmanager
def command_line_wording():
    """Re-word a `PretrainedUnavailable` with the command line's options."""
    try:
        yield
    except PretrainedUnavailable as error:
        raise UsageError(
            f"--model {error.model}: cannot load the pretrained starting point {error.source!r} ({error.reason}). "
            f"Pass --pretrained with a local path (for this model: {error.hint}), or --from_scratch to start "
            "from random weights."
        ) from None


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
    """Fail within seconds when `name_or_path` is neither a usable local folder nor reachable on the Hub.

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
    require_hub(f"--model_name_or_path {name_or_path}: not a local folder, and as a Hub id", SAVED_MODEL_WAYS_OUT)


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


__all__ = ["check_start", "command_line_wording", "load_data", "load_model", "require_saved_model_reachable"]
