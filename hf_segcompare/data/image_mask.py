"""Your own segmentation data: a Hub dataset, parquet, an imagefolder, a save_to_disk folder (each with an image and a
mask column), or images and masks in folders paired by name.

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
  ``metadata.jsonl`` with ``{"file_name": "x.jpg", "label_file_name": "x.png"}`` per image;
- a folder ``DatasetDict.save_to_disk`` (or ``Dataset.save_to_disk``) wrote, read with ``load_from_disk``;
- images and masks in folders, paired by name (`hf_segcompare.data.paired_folders`): ``images/`` +
  ``masks/``, CamVid's ``train/`` + ``train_labels/``, ``x.jpg`` + ``x_mask.png`` ...

A mask column may hold images (PNG of class ids, 8- or 16-bit, or RGB with a colour table) or
integer arrays (lists of rows), which are stored as PNGs of their values.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from pathlib import Path

from ..errors import DataError
from .label_source import ID2LABEL_FILE, LabelOptions, feature_class_names, id2label_in_folder, names_from_mapping
from .mask_reading import find_colour_table
from .masks import encode_mask_png
from .paired_folders import LAYOUTS_HELP, find_paired_layout
from .segmentation_data import SegmentationData
from .sources import FolderSource
from .validation import arrow_cache, finish_validation, validated_features, validated_row, validated_split

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


SAVED_DATASET_FILES = ("dataset_dict.json", "state.json")  # what save_to_disk writes at a folder's root
IMAGEFOLDER_METADATA = ("metadata.jsonl", "metadata.csv", "metadata.parquet")


def _datasets_folder_kind(path: Path) -> str | None:
    """How `datasets` reads the folder at `path`: ``saved`` (a ``save_to_disk`` folder), ``parquet``,
    ``imagefolder`` (a ``metadata.*`` names each image's mask); None when it reads it in no way (its
    images and masks may still pair by name: `find_paired_layout`)."""
    if any((path / name).is_file() for name in SAVED_DATASET_FILES):
        return "saved"
    if any(path.rglob("*.parquet")):
        return "parquet"
    if any(file.name in IMAGEFOLDER_METADATA for file in path.rglob("metadata.*")):
        return "imagefolder"
    return None


def _load_raw(source: str, cache_dir: str | None, folder_kind: str | None = None):
    """The dataset `source` names, as `datasets` reads it: a parquet file, a Hub id, or a folder of
    `folder_kind` (`_datasets_folder_kind`: a ``save_to_disk`` folder, parquet, an imagefolder).
    (Image and mask folders without metadata are read by `_validated_paired_folders` instead.)

    Raises:
        FileNotFoundError: a local path that does not exist.
        DataError: a folder in none of the layouts (the message lists them); the Hub unreachable.
    """
    from datasets import DatasetDict, load_dataset, load_from_disk

    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".parquet":
        with _quiet_progress():
            return load_dataset("parquet", data_files={"train": str(path)}, cache_dir=_local_cache_dir(path, cache_dir))
    if path.is_dir():
        if folder_kind == "saved":
            saved = load_from_disk(str(path))
            return saved if isinstance(saved, DatasetDict) else DatasetDict(train=saved)
        if folder_kind is None:
            raise DataError(f"{path} is a folder in none of the layouts a dataset is read from: {LAYOUTS_HELP}.")
        with _quiet_progress():
            return load_dataset(folder_kind, data_dir=str(path), cache_dir=_local_cache_dir(path, cache_dir))
    if path.suffix or source.startswith((".", "/", "~")):
        raise FileNotFoundError(f"dataset {source} does not exist (expected a parquet file, a folder, or a Hub id).")
    _check_hub_reachable(source)
    return load_dataset(source, cache_dir=cache_dir)


def _file_bytes(value, name: str) -> tuple[bytes, str]:
    """An image or mask column's value as file bytes, and its name: an image's own, or (a mask column
    of arrays) an integer array's as a PNG of its values (8-bit, or 16-bit where they need it).

    Raises:
        DataError: an array that is not two-dimensional integers 0-65535, named.
    """
    import numpy as np
    from PIL import Image

    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return value["bytes"], value.get("path") or name
        return Path(value["path"]).read_bytes(), value["path"]
    array = np.asarray(value)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer) or (array.size and (array.min() < 0 or
                                                                                        array.max() > 65535)):
        raise DataError(f"{name}: a mask array must be two-dimensional integers 0-65535 (class ids, a list of rows); "
                        f"it has shape {array.shape} and type {array.dtype}.")
    if array.size and array.max() > 255:
        import io

        buffer = io.BytesIO()
        Image.fromarray(array.astype(np.uint16)).save(buffer, format="PNG")
        return buffer.getvalue(), name
    return encode_mask_png(array.astype(np.uint8)), name


def _validate_row(image, label, index, split, image_column, label_column, labels, lookup, reading):
    image_bytes, image_name = _file_bytes(image, f"{split}[{index}].{image_column}")
    mask_bytes, mask_name = _file_bytes(label, f"{split}[{index}].{label_column}")
    sample_id = Path(image["path"]).stem if image.get("path") else f"{split}-{index:06d}"
    return validated_row(sample_id, image_bytes, mask_bytes, image_name, mask_name,
                         f"{split} row {index} ({sample_id!r})", labels, lookup, reading)


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
        DataError: see `_check_split_options`.
    """
    splits = {}
    for name, dataset in raw.items():
        if SPLIT_ALIASES.get(name) and SPLIT_ALIASES[name] not in splits:
            splits[SPLIT_ALIASES[name]] = dataset
    _check_split_options(list(splits), source, train_val_split, listed=list(raw))
    return splits


def _validated_split(dataset, split: str, source: str, image_column: str, label_column: str, labels,
                     cache_file_name: str | None = None):
    """One split validated against `labels` (`ResolvedLabels`), its files read undecoded (a mask
    column of arrays as it is); `cache_file_name`: where the validated split is cached, for a
    dataset whose own folder must not be written (a ``save_to_disk`` folder).

    Raises:
        DataError: the split lacks the image or the label column, or its images are not images.
    """
    from datasets import Image

    absent = [column for column in (image_column, label_column) if column not in dataset.column_names]
    if absent:
        raise DataError(
            f"dataset {source} ({split}) has no column {absent}; its columns are {dataset.column_names}. "
            "Pass --image_column_name / --label_column_name."
        )
    if not isinstance(dataset.features[image_column], Image):
        raise DataError(f"dataset {source} ({split}): its image column {image_column!r} holds "
                        f"{type(dataset.features[image_column]).__name__} values, not images; pass "
                        "--image_column_name with its image column.")
    undecoded = dataset.select_columns([image_column, label_column])
    for column in (image_column, label_column):
        if isinstance(undecoded.features[column], Image):  # a mask column of integer arrays stays as it is
            undecoded = undecoded.cast_column(column, Image(decode=False))
    return undecoded.map(
        _validate_row,
        input_columns=[image_column, label_column],
        with_indices=True,
        fn_kwargs={"split": split, "image_column": image_column, "label_column": label_column,
                   "labels": labels.labels, "lookup": labels.lookup(), "reading": labels.reading},
        remove_columns=[image_column, label_column],
        features=validated_features(),
        desc=f"validating {split}",
        cache_file_name=cache_file_name,
    )


def _folder_names(folder: Path) -> tuple[tuple[tuple[str, ...], str] | None, object]:
    """The class names an ``id2label.json`` at `folder` gives, and its colour table (either may be
    None). Both present, they must name the same classes.

    Raises:
        DataError: the two name other classes.
    """
    found, table = id2label_in_folder(folder), find_colour_table(folder)
    if found and table is not None and tuple(found[0]) != tuple(table.names):
        raise DataError(f"{found[1]} and the colour table {table.source} name different classes ({len(found[0])} and "
                        f"{len(table.names)}: {list(found[0][:3])}... and {list(table.names[:3])}...); keep one.")
    return found, table


def _hold_out(splits: dict, source: str, train_val_split: float | None) -> dict | None:
    """Hold out `train_val_split` of the training split as validation (seeded with `SPLIT_SEED`: the
    same images every run) where asked; returns the record of it (None when not asked)."""
    if not train_val_split:
        return None
    held_out = splits["train"].train_test_split(test_size=train_val_split, seed=SPLIT_SEED)
    splits["train"], splits["validation"] = held_out["train"], held_out["test"]
    logger.warning("%s has no validation split: %d of its %d training samples (%.0f%%, seed %d) are held out "
                   "as validation.", source, len(held_out["test"]), len(held_out["train"]) + len(held_out["test"]),
                   100 * train_val_split, SPLIT_SEED)
    return {"validation_from_train": train_val_split, "seed": SPLIT_SEED}


def _check_split_options(names: list[str], source: str, train_val_split: float | None,
                         listed: list[str] | None = None) -> None:
    """A train split, and a validation split or ``--train_val_split`` (not both); `names` are the
    splits under their usual names, `listed` those the source calls them (for the message).

    Raises:
        DataError: no train split; a validation split and --train_val_split both, or neither; a
            share outside (0, 1).
    """
    listed = sorted(listed if listed is not None else names)
    if "train" not in names:
        raise DataError(f"dataset {source} has splits {listed}; it needs a train split (named train).")
    if "validation" in names and train_val_split:
        raise DataError(f"dataset {source} has a validation split: drop --train_val_split, which would hold out "
                        "part of train instead.")
    if "validation" not in names and not train_val_split:
        raise DataError(f"dataset {source} has splits {listed} and no validation split (named validation, val "
                        "or valid): pass --train_val_split 0.15 to hold out 15% of train as validation.")
    if train_val_split is not None and not 0 < train_val_split < 1:
        raise DataError(f"--train_val_split {train_val_split}: give the share of train to hold out, e.g. 0.15.")


def _validated_paired_folders(root: Path, layout, options: LabelOptions, train_val_split: float | None,
                              cache_dir) -> tuple[dict, object]:
    """The splits of image and mask folders paired by name, validated like a release's (each file's
    signature in the cache key), and their labels."""
    samples = layout.samples()
    _check_split_options(list(samples), str(root), train_val_split)
    found, table = _folder_names(root)
    labels = options.resolve(found, str(root), table=table)
    source = FolderSource(root)
    splits = {}
    for split, split_samples in samples.items():
        key = [layout.name, [sample[0] for sample in split_samples],
               source.signature([path for sample in split_samples for path in sample[1:3]])]
        splits[split] = validated_split(source, split_samples, split, labels, key, "folders", cache_dir)
    return splits, labels


def load_image_mask_dataset(
    source: str,
    image_column: str | None = None,
    label_column: str | None = None,
    cache_dir: str | Path | None = None,
    drop_invalid: bool = False,
    label_options: LabelOptions | None = None,
    train_val_split: float | None = None,
) -> SegmentationData:
    """Load a Hub dataset id, a local parquet file/folder, an imagefolder, a ``save_to_disk`` folder,
    or image and mask folders paired by name as ``train`` and ``validation`` splits (a `SegmentationData`).

    Args:
        image_column, label_column: the columns (default: ``image`` or ``pixel_values``, ``label`` or
            ``annotation``, whichever the dataset has).
        label_options: what the user said about the labels; the class names default to the dataset's
            own (a colour table or `_names_in_data`), and a dataset naming none is refused. Masks are
            read as index values (RGB ones only through a colour table).
        train_val_split: for a dataset without a validation split, the share of its training split
            held out as validation (seeded with `SPLIT_SEED`: the same images every run); the
            result's ``split_info`` records it. A dataset with a validation split refuses it.

    Raises:
        FileNotFoundError: a local path that does not exist.
        DataError: the Hub is unreachable, a folder in no known layout, a split or column is missing
            (the message lists what there is), the classes are named nowhere, or samples are invalid
            (`InvalidSamplesError`).
    """
    from datasets import DatasetDict

    options = label_options or LabelOptions()
    path = Path(source).expanduser()
    # What reads a folder is decided once: `datasets` (saved, parquet, imagefolder), else pairing by name.
    folder_kind = _datasets_folder_kind(path) if path.is_dir() else None
    layout = find_paired_layout(path) if path.is_dir() and folder_kind is None else None
    if layout is not None:
        validated, labels = _validated_paired_folders(path, layout, options, train_val_split, cache_dir)
        columns = None  # files, not columns
    else:
        raw = _load_raw(source, arrow_cache(cache_dir), folder_kind)
        splits = _named_splits(raw, source, train_val_split)
        first = splits["train"]
        image_column = _column(first, image_column, IMAGE_COLUMNS, "--image_column_name", source)
        label_column = _column(first, label_column, LABEL_COLUMNS, "--label_column_name", source)
        found, table = _folder_names(path) if path.is_dir() else (None, None)
        if not found and not options.names:
            found = _names_in_data(source, raw, label_column, arrow_cache(cache_dir))
        labels = options.resolve(found, source, table=table)
        saved = folder_kind == "saved"
        validated = {split: _validated_split(dataset, split, source, image_column, label_column, labels,
                                             _saved_cache_file(path, cache_dir, split, labels, image_column,
                                                               label_column) if saved else None)
                     for split, dataset in splits.items()}
        columns = {"image": image_column, "label": label_column}
    split_info = _hold_out(validated, source, train_val_split)
    return finish_validation(DatasetDict(validated), drop_invalid, labels, source=source, split_info=split_info,
                             columns=columns)


def _saved_cache_file(path: Path, cache_dir, split: str, labels, image_column: str, label_column: str) -> str:
    """Where the validated split of a ``save_to_disk`` folder is cached: in the toolkit's cache, keyed
    by the folder's files and everything validation depends on (`datasets` would write it into the
    user's folder)."""
    import json

    from .validation import LOADER_VERSION

    folder = Path(_local_cache_dir(path, arrow_cache(cache_dir)))
    folder.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(json.dumps([LOADER_VERSION, split, image_column, label_column, labels.cache_key()]
                                    ).encode()).hexdigest()[:16]
    return str(folder / f"validated-{split}-{key}.arrow")
