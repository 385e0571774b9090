"""Any segmentation dataset with an image and a mask column: a Hub dataset, parquet, or imagefolder.

The convention is the transformers semantic-segmentation example's: ``--dataset_name`` names the
source and ``--image_column_name`` / ``--label_column_name`` its columns (default: ``image`` or
``pixel_values``, and ``label`` or ``annotation``, whichever the dataset has); an ``id2label.json``
at its root names the classes (see `hf_segcompare.data.label_source` for every way a label set is
found). Masks hold class ids as palette or greyscale PNGs (or VOC-palette RGB), decoded by
``--label_map`` / ``--reduce_labels`` where given. A dataset without a validation split gets one
held out from its training split (``train_val_split``, seeded, recorded). The result has the same
columns as `load_voc` and passes the same validation; `datasets` caches both the loading and the
validation pass, so a second load reads the cache.

Local layouts:
- parquet: a ``.parquet`` file (with an image and a label column) per split, e.g.
  ``train-00000.parquet`` and ``validation-00000.parquet`` in one folder;
- imagefolder: ``train/`` and ``validation/`` folders each holding the images and a
  ``metadata.jsonl`` with ``{"file_name": "x.jpg", "label_file_name": "x.png"}`` per image.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from pathlib import Path

from ..errors import DataError
from .label_source import ID2LABEL_FILE, LabelOptions, feature_class_names, id2label_in_folder, names_from_mapping
from .validation import arrow_cache, finish_validation, validated_features, validated_row

logger = logging.getLogger(__name__)

SPLIT_ALIASES = {"train": "train", "validation": "validation", "val": "validation", "valid": "validation"}
# The transformers example reads either naming: (image, label) or (pixel_values, annotation).
IMAGE_COLUMNS = ("image", "pixel_values")
LABEL_COLUMNS = ("label", "annotation")
SPLIT_SEED = 0  # the held-out validation split does not move with --seed: every run is scored on the same images


def _check_hub_reachable(dataset_id: str) -> None:
    """Fail within seconds when the Hub cannot be reached (datasets itself retries for ~25 s)."""
    from ..hub_access import require_hub

    if os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return  # offline mode: datasets answers from its cache, or says it has nothing
    require_hub(f"dataset {dataset_id!r}", "Pass a local parquet file or folder, or an imagefolder, as --dataset_name; "
                "or --dataset_name voc --data_dir PATH; or --dataset_name synthetic.", error=DataError)


def _local_cache_dir(path: Path, cache_dir: str) -> str:
    """A cache folder of its own for this exact state of the local files under `path`.

    `datasets` keys a local file's cache by its modification time alone, which a rewrite can set
    back; this key also holds size, inode and ctime (`file_signature`), so a rewritten file is
    never served from an old cache.
    """
    from .sources import file_signature

    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.relative_to(path) if file != path else file.name}\0{file_signature(file)}\n".encode())
    return str(Path(cache_dir) / f"local-{digest.hexdigest()[:16]}")


@contextlib.contextmanager
def _quiet_progress():
    """No "Downloading data" bars for files that are read from this disk, not downloaded."""
    from datasets.utils import logging as datasets_logging

    was_enabled = datasets_logging.is_progress_bar_enabled()
    datasets_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            datasets_logging.enable_progress_bar()


def _load_raw(source: str, cache_dir: str | None):
    from datasets import load_dataset

    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".parquet":
        with _quiet_progress():
            return load_dataset("parquet", data_files={"train": str(path)}, cache_dir=_local_cache_dir(path, cache_dir))
    if path.is_dir():
        builder = "parquet" if any(path.rglob("*.parquet")) else "imagefolder"
        with _quiet_progress():
            return load_dataset(builder, data_dir=str(path), cache_dir=_local_cache_dir(path, cache_dir))
    if path.suffix or source.startswith((".", "/", "~")):
        raise FileNotFoundError(f"dataset {source} does not exist (expected a parquet file, a folder, or a Hub id).")
    _check_hub_reachable(source)
    return load_dataset(source, cache_dir=cache_dir)


def _validate_row(image, label, index, split, image_column, label_column, labels, lookup):
    def raw(entry, column):
        if entry.get("bytes") is not None:
            return entry["bytes"], entry.get("path") or f"{split}[{index}].{column}"
        return Path(entry["path"]).read_bytes(), entry["path"]

    image_bytes, image_name = raw(image, image_column)
    mask_bytes, mask_name = raw(label, label_column)
    sample_id = Path(image["path"]).stem if image.get("path") else f"{split}-{index:06d}"
    return validated_row(sample_id, image_bytes, mask_bytes, image_name, mask_name,
                         f"{split} row {index} ({sample_id!r})", labels, lookup)


def hub_id2label(dataset_id: str, cache_dir: str | None = None) -> tuple[tuple[str, ...], str] | None:
    """Names from the ``id2label.json`` of a Hub dataset repo (the transformers example's
    convention), with where they came from; None when the repo has none."""
    import json

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    from ..hub_access import hub_endpoint

    try:
        path = hf_hub_download(dataset_id, ID2LABEL_FILE, repo_type="dataset", cache_dir=cache_dir,
                               endpoint=hub_endpoint())
    except (EntryNotFoundError, LocalEntryNotFoundError):
        return None
    where = f"{ID2LABEL_FILE} of the Hub dataset {dataset_id}"
    try:
        mapping = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DataError(f"{where}: not valid JSON ({error}).") from None
    return names_from_mapping(mapping, where), where


def _names_in_data(source: str, raw, label_column: str, cache_dir: str | None) -> tuple[tuple[str, ...], str] | None:
    """The class names the dataset itself gives: an ``id2label.json`` at its root (local folder or
    Hub repo), else its label feature's class names."""
    path = Path(source).expanduser()
    found = id2label_in_folder(path) if path.is_dir() else None if path.exists() else hub_id2label(source, cache_dir)
    if found:
        return found
    first = next(iter(raw.values()))
    names = feature_class_names(first.features.get(label_column))
    return (names, f"the class names of {source}'s {label_column!r} feature") if names else None


def _column(dataset, given: str | None, candidates: tuple[str, ...], option: str, source: str) -> str:
    """The column `given`, else the first of `candidates` the dataset has."""
    for column in ([given] if given else candidates):
        if column in dataset.column_names:
            return column
    raise DataError(f"dataset {source} has no column {given or ' or '.join(map(repr, candidates))}; its columns are "
                    f"{dataset.column_names}. Pass {option}.")


def _named_splits(raw, source: str, train_val_split: float | None) -> dict:
    """The train and validation splits of `raw` under their usual names (``val``, ``valid``...).

    Raises:
        DataError: no train split; a validation split and --train_val_split both, or neither; a
            share outside (0, 1).
    """
    splits = {}
    for name, dataset in raw.items():
        if SPLIT_ALIASES.get(name) and SPLIT_ALIASES[name] not in splits:
            splits[SPLIT_ALIASES[name]] = dataset
    if "train" not in splits:
        raise DataError(f"dataset {source} has splits {sorted(raw)}; it needs a train split (named train).")
    if "validation" in splits and train_val_split:
        raise DataError(f"dataset {source} has a validation split: drop --train_val_split, which would hold out "
                        "part of train instead.")
    if "validation" not in splits and not train_val_split:
        raise DataError(f"dataset {source} has splits {sorted(raw)} and no validation split (named validation, val "
                        "or valid): pass --train_val_split 0.15 to hold out 15% of train as validation.")
    if train_val_split is not None and not 0 < train_val_split < 1:
        raise DataError(f"--train_val_split {train_val_split}: give the share of train to hold out, e.g. 0.15.")
    return splits


def _validated_split(dataset, split: str, source: str, image_column: str, label_column: str, labels):
    """One split validated against `labels` (`ResolvedLabels`), its files read undecoded.

    Raises:
        DataError: the split lacks the image or the label column.
    """
    from datasets import Image

    absent = [column for column in (image_column, label_column) if column not in dataset.column_names]
    if absent:
        raise DataError(
            f"dataset {source} ({split}) has no column {absent}; its columns are {dataset.column_names}. "
            "Pass --image_column_name / --label_column_name."
        )
    undecoded = dataset.select_columns([image_column, label_column])
    for column in (image_column, label_column):
        undecoded = undecoded.cast_column(column, Image(decode=False))
    return undecoded.map(
        _validate_row,
        input_columns=[image_column, label_column],
        with_indices=True,
        fn_kwargs={"split": split, "image_column": image_column, "label_column": label_column,
                   "labels": labels.labels, "lookup": labels.lookup()},
        remove_columns=[image_column, label_column],
        features=validated_features(),
        desc=f"validating {split}",
    )


def load_image_mask_dataset(
    source: str,
    image_column: str | None = None,
    label_column: str | None = None,
    cache_dir: str | Path | None = None,
    drop_invalid: bool = False,
    label_options: LabelOptions | None = None,
    train_val_split: float | None = None,
):
    """Load a Hub dataset id, a local parquet file/folder, or an imagefolder as ``DatasetDict(train, validation)``.

    Args:
        image_column, label_column: the columns (default: ``image`` or ``pixel_values``, ``label`` or
            ``annotation``, whichever the dataset has).
        label_options: what the user said about the labels; the class names default to the dataset's
            own (`_names_in_data`), and a dataset naming none is refused.
        train_val_split: for a dataset without a validation split, the share of its training split
            held out as validation (seeded with `SPLIT_SEED`: the same images every run); the
            result's ``split_info`` records it. A dataset with a validation split refuses it.

    Raises:
        FileNotFoundError: a local path that does not exist.
        DataError: the Hub is unreachable, a split or column is missing (the message lists what
            there is), the classes are named nowhere, or samples are invalid (`InvalidSamplesError`).
    """
    from datasets import DatasetDict

    raw = _load_raw(source, arrow_cache(cache_dir))
    splits = _named_splits(raw, source, train_val_split)
    first = splits["train"]
    image_column = _column(first, image_column, IMAGE_COLUMNS, "--image_column_name", source)
    label_column = _column(first, label_column, LABEL_COLUMNS, "--label_column_name", source)
    labels = (label_options or LabelOptions()).resolve(
        None if (label_options and label_options.names) else _names_in_data(
            source, raw, label_column, arrow_cache(cache_dir)), source)
    result = {split: _validated_split(dataset, split, source, image_column, label_column, labels)
              for split, dataset in splits.items()}
    dataset_dict = finish_validation(DatasetDict(result), drop_invalid, labels)
    dataset_dict.split_info = None
    if train_val_split:
        held_out = dataset_dict["train"].train_test_split(test_size=train_val_split, seed=SPLIT_SEED)
        dataset_dict["train"], dataset_dict["validation"] = held_out["train"], held_out["test"]
        dataset_dict.split_info = {"validation_from_train": train_val_split, "seed": SPLIT_SEED}
        logger.warning("%s has no validation split: %d of its %d training samples (%.0f%%, seed %d) are held out "
                       "as validation.", source, len(held_out["test"]), len(held_out["train"]) + len(held_out["test"]),
                       100 * train_val_split, SPLIT_SEED)
    dataset_dict.columns = {"image": image_column, "label": label_column}
    return dataset_dict
