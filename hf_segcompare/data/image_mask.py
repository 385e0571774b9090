"""Any segmentation dataset with an image and a mask column: a Hub dataset, parquet, or imagefolder.

The convention is the transformers semantic-segmentation example's: ``--dataset_name`` names the
source and ``--image_column_name`` / ``--label_column_name`` its columns (default ``image`` and
``label``). Masks hold VOC class ids (0-20, 255 = ignore), as palette or greyscale PNGs, or
VOC-palette RGB. The result has the same columns as `load_voc` and passes the same validation;
`datasets` caches both the loading and the validation pass, so a second load reads the cache.

Local layouts:
- parquet: a ``.parquet`` file (with an image and a label column) per split, e.g.
  ``train-00000.parquet`` and ``validation-00000.parquet`` in one folder;
- imagefolder: ``train/`` and ``validation/`` folders each holding the images and a
  ``metadata.jsonl`` with ``{"file_name": "x.jpg", "label_file_name": "x.png"}`` per image.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..errors import DataError
from .voc import finish_validation, validated_features, validated_row

SPLIT_ALIASES = {"train": "train", "validation": "validation", "val": "validation", "valid": "validation"}


def _check_hub_reachable(dataset_id: str) -> None:
    """Fail within seconds when the Hub cannot be reached (datasets itself retries for ~25 s)."""
    from ..hub import require_hub

    if os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return  # offline mode: datasets answers from its cache, or says it has nothing
    require_hub(f"dataset {dataset_id!r}", "Pass a local parquet file or folder, or an imagefolder, as --dataset_name; "
                "or --dataset_name voc --data_dir PATH; or --dataset_name synthetic.", error=DataError)


def _local_cache_dir(path: Path, cache_dir: str | None) -> str | None:
    """A cache folder of its own for this exact state of the local files under `path`.

    `datasets` keys a local file's cache by its modification time alone, which a rewrite can set
    back; this key also holds size, inode and ctime (`file_signature`), so a rewritten file is
    never served from an old cache.
    """
    if cache_dir is None:
        return None
    from .sources import file_signature

    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.relative_to(path) if file != path else file.name}\0{file_signature(file)}\n".encode())
    return str(Path(cache_dir) / f"local-{digest.hexdigest()[:16]}")


def _load_raw(source: str, cache_dir: str | None):
    from datasets import load_dataset

    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".parquet":
        return load_dataset("parquet", data_files={"train": str(path)}, cache_dir=_local_cache_dir(path, cache_dir))
    if path.is_dir():
        builder = "parquet" if any(path.rglob("*.parquet")) else "imagefolder"
        return load_dataset(builder, data_dir=str(path), cache_dir=_local_cache_dir(path, cache_dir))
    if path.suffix or source.startswith((".", "/", "~")):
        raise FileNotFoundError(f"dataset {source} does not exist (expected a parquet file, a folder, or a Hub id).")
    _check_hub_reachable(source)
    return load_dataset(source, cache_dir=cache_dir)


def _validate_row(image, label, index, split, image_column, label_column):
    def raw(entry, column):
        if entry.get("bytes") is not None:
            return entry["bytes"], entry.get("path") or f"{split}[{index}].{column}"
        return Path(entry["path"]).read_bytes(), entry["path"]

    image_bytes, image_name = raw(image, image_column)
    mask_bytes, mask_name = raw(label, label_column)
    sample_id = Path(image["path"]).stem if image.get("path") else f"{split}-{index:06d}"
    return validated_row(sample_id, image_bytes, mask_bytes, image_name, mask_name,
                         where=f"{split} row {index} ({sample_id!r})")


def load_image_mask_dataset(
    source: str,
    image_column: str = "image",
    label_column: str = "label",
    cache_dir: str | Path | None = None,
    drop_invalid: bool = False,
):
    """Load a Hub dataset id, a local parquet file/folder, or an imagefolder as ``DatasetDict(train, validation)``.

    Raises:
        FileNotFoundError: a local path that does not exist.
        DataError: the Hub is unreachable, a split or column is missing (the message lists what
            there is), or samples are invalid (`InvalidSamplesError`).
    """
    from datasets import DatasetDict, Image

    raw = _load_raw(source, str(cache_dir) if cache_dir else None)
    splits = {}
    for name, dataset in raw.items():
        if SPLIT_ALIASES.get(name) and SPLIT_ALIASES[name] not in splits:
            splits[SPLIT_ALIASES[name]] = dataset
    missing = [s for s in ("train", "validation") if s not in splits]
    if missing:
        raise DataError(
            f"dataset {source} has splits {sorted(raw)}; it needs {missing} (named train, validation or val)."
        )
    result = {}
    for split, dataset in splits.items():
        absent = [c for c in (image_column, label_column) if c not in dataset.column_names]
        if absent:
            raise DataError(
                f"dataset {source} ({split}) has no column {absent}; its columns are {dataset.column_names}. "
                "Pass --image_column_name / --label_column_name."
            )
        undecoded = dataset.select_columns([image_column, label_column])
        for column in (image_column, label_column):
            undecoded = undecoded.cast_column(column, Image(decode=False))
        result[split] = undecoded.map(
            _validate_row,
            input_columns=[image_column, label_column],
            with_indices=True,
            fn_kwargs={"split": split, "image_column": image_column, "label_column": label_column},
            remove_columns=[image_column, label_column],
            features=validated_features(),
            desc=f"validating {split}",
        )
    return finish_validation(DatasetDict(result), drop_invalid)
