"""What a run loads: its data (`load_data`) and its model (`load_model`), each checked before the
slow part starts, with errors that name the argument and what to pass instead."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

from transformers import TrainingArguments

from ..config.arguments import DataArguments, ModelArguments
from ..data import ensure_synthetic_voc, load_voc
from ..data.ade20k import WHERE_TO_GET as ADE20K_WHERE
from ..data.ade20k import load_ade20k
from ..data.cityscapes import WHERE_TO_GET as CITYSCAPES_WHERE
from ..data.cityscapes import load_cityscapes
from ..data.download import download_voc
from ..data.image_mask import load_image_mask_dataset
from ..data.label_checks import LabelCheckWarning
from ..data.label_source import LabelOptions
from ..data.segmentation_data import SegmentationData
from ..data.synthetic import DEFAULT_CACHE_DIR
from ..engine.checkpoints import WEIGHT_FILES, unreadable_weights
from ..errors import PretrainedUnavailable, UsageError
from ..hub_access import hub_offline_mode, local_or_hub
from ..labels import LabelSet
from ..models import create_model, get_entry, register_auto_classes
from ..models.pretrained import check_pretrained_source
from .output_folder import require_writable

# The releases read in place by name (--dataset_name); any other name is a Hub id or a local dataset.
RELEASE_LOADERS = {"ade20k": (load_ade20k, ADE20K_WHERE), "cityscapes": (load_cityscapes, CITYSCAPES_WHERE)}
RELEASES = ("synthetic", "voc", *RELEASE_LOADERS)

SAVED_MODEL_WAYS_OUT = (
    "Pass a local folder written by save_pretrained (e.g. an earlier run's output_dir), or --from_scratch."
)


def label_options(data_args: DataArguments) -> LabelOptions:
    """What the command line says about the data's labels (files read and checked here).

    Raises:
        DataError: a labels or label-map file that cannot be used, or a bad --ignore_index.
    """
    return LabelOptions.from_files(data_args.labels, data_args.ignore_index, data_args.label_map,
                                   data_args.reduce_labels, data_args.mask_colors, data_args.strict_labels)


def load_data(data_args: DataArguments, training_args: TrainingArguments) -> SegmentationData:
    """The `SegmentationData` (train and validation splits) that `data_args` names; its ``source`` is
    where it was read (the embedded data's folder, the VOC tree or tar, a Hub id).

    Its ``labels`` is the `LabelSet` its masks were validated against (read from the data: see
    `hf_segcompare.data.label_source`), ``label_info`` where it came from and how masks were decoded.
    """
    cache_dir = Path(data_args.cache_dir) if data_args.cache_dir else DEFAULT_CACHE_DIR
    # Every loader writes its validated splits there (and takes a lock there even to reuse them).
    require_writable(cache_dir, "--cache_dir", None if data_args.cache_dir else
                     "Pass a --cache_dir you can write to, or set HF_SEGCOMPARE_CACHE (this is its default folder).")
    options = label_options(data_args)
    name = data_args.dataset_name
    if data_args.train_val_split is not None and name in RELEASES:
        raise UsageError(f"--train_val_split: --dataset_name {name} has its own validation split.")
    if name in ("ade20k", "cityscapes") and not data_args.data_dir:
        raise UsageError(f"--dataset_name {name} needs --data_dir: {RELEASE_LOADERS[name][1]}.")
    if data_args.sbd_dir and name != "voc":
        raise UsageError("--sbd_dir adds SBD's masks to Pascal VOC: it needs --dataset_name voc.")
    # Rank 0 generates, validates and caches; the other ranks then read its cache. The label checks
    # are printed on the run's first lines (`RunPlan.first_lines`), not warned a second time.
    with training_args.main_process_first(desc="loading the data"), warnings.catch_warnings():
        warnings.simplefilter("ignore", LabelCheckWarning)
        if name not in RELEASES:
            dataset = load_image_mask_dataset(
                name, data_args.image_column_name, data_args.label_column_name, cache_dir=cache_dir,
                drop_invalid=data_args.drop_invalid, label_options=options, train_val_split=data_args.train_val_split,
            )
        elif name in RELEASE_LOADERS:
            dataset = RELEASE_LOADERS[name][0](data_args.data_dir, cache_dir=cache_dir,
                                               drop_invalid=data_args.drop_invalid, label_options=options)
        else:
            if name == "synthetic":
                data_dir, origin = ensure_synthetic_voc(cache_dir), "the embedded synthetic data (Pascal VOC's classes)"
            elif data_args.data_dir:
                data_dir, origin = data_args.data_dir, "Pascal VOC 2012"
            else:  # the user asked for VOC and named no copy: fetch the official tar
                data_dir, origin = download_voc(cache_dir / "voc", url=data_args.voc_url), "Pascal VOC 2012"
            dataset = load_voc(data_dir, sbd_dir=data_args.sbd_dir, sbd_list=data_args.sbd_list, cache_dir=cache_dir,
                               drop_invalid=data_args.drop_invalid, label_options=options, name=origin)
    return dataset.limited(data_args.max_train_samples, data_args.max_eval_samples)


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
                                ignore_index=labels.void, **overrides)
    model = _load_saved_model(model_args.model_name_or_path)
    saved_as = getattr(model.config, "segcompare_model", model_args.model)
    if saved_as != model_args.model:
        raise UsageError(
            f"{model_args.model_name_or_path} holds a {saved_as} model but --model is {model_args.model}: "
            f"pass --model {saved_as}."
        )
    saved_labels = LabelSet(tuple(model.config.id2label[index] for index in range(model.config.num_labels)),
                            labels.ignore_index)
    if saved_labels.names != labels.names:
        raise UsageError(
            f"{model_args.model_name_or_path} predicts {saved_labels.describe_classes()}, but the data's label set is "
            f"{labels.describe_classes()}: a model is scored only on the classes it was trained for. Evaluate it on "
            "data with its classes (--labels, --label_map), or train a model for these."
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

    register_auto_classes()
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
    folder = local_or_hub(name_or_path, f"--model_name_or_path {name_or_path}", SAVED_MODEL_WAYS_OUT)
    if folder is not None:
        _require_saved_model_folder(folder)


def _require_saved_model_folder(folder: Path) -> None:
    """A folder that save_pretrained wrote: a readable config.json of a known model type, and safetensors weights."""
    from transformers import AutoConfig

    register_auto_classes()  # a folder holding one of our adapters names its model_type
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
    damage = unreadable_weights(folder)
    if damage:
        raise UsageError(f"--model_name_or_path {folder}: its weights cannot be read ({damage}): the file was damaged "
                         "after it was saved. Restore it from a copy, or pass another saved model.")


__all__ = ["check_start", "command_line_wording", "load_data", "load_model", "require_saved_model_reachable"]
