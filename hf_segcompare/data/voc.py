"""Pascal VOC 2012 segmentation as a validated, cached `datasets.DatasetDict`.

`load_voc(data_dir)` reads the layout of the official release, from the extracted folder or
straight from `VOCtrainval_11-May-2012.tar`::

    VOCdevkit/VOC2012/
        JPEGImages/<id>.jpg
        SegmentationClass/<id>.png          palette PNG, pixel value = class id, 255 = "void" boundary
        ImageSets/Segmentation/train.txt    one id per line (1,464 ids)
        ImageSets/Segmentation/val.txt      (1,449 ids)

optionally with the SBD "aug" masks for a 10,582-id train split, and returns
``DatasetDict(train=..., validation=...)`` with the columns ``id`` (string), ``image`` and
``label`` (Image). Every sample is validated once, while it is written to an Arrow cache keyed
by the source's file signatures; later loads memory-map that cache and read nothing else.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from ..errors import DataError, InvalidSamplesError
from ..labels import IGNORE_INDEX, VOC_CLASSES, VOC_LABELS

logger = logging.getLogger(__name__)

# `datasets` split names; VOC's own split files are called train.txt / val.txt.
SPLIT_FILES = {"train": "train", "validation": "val"}


def voc_palette() -> list[tuple[int, int, int]]:
    """The 256-entry VOC colour map (index 0 black, 1 dark red, ..., 255 cream for void).

    VOC builds it by spreading the bits of the class id over the high bits of R, G and B.
    """
    palette = []
    for index in range(256):
        red = green = blue = 0
        bits = index
        for shift in range(7, -1, -1):
            red |= (bits & 1) << shift
            green |= ((bits >> 1) & 1) << shift
            blue |= ((bits >> 2) & 1) << shift
            bits >>= 3
        palette.append((red, green, blue))
    return palette


LOADER_VERSION = 1  # bump when what load_voc stores changes, so older caches are not reused


def read_split_ids(source, split_file: str) -> list[str]:
    """Ids listed in `ImageSets/Segmentation/<split_file>.txt`, in file order."""
    relative = f"ImageSets/Segmentation/{split_file}.txt"
    if not source.exists(relative):
        raise FileNotFoundError(
            f"{source.location(relative)} is missing: a VOC-format folder needs it to know the {split_file} ids."
        )
    ids = [line.strip() for line in source.read_bytes(relative).decode().splitlines() if line.strip()]
    if not ids:
        raise DataError(f"{source.location(relative)} lists no ids.")
    return ids


def read_id_list(path: Path) -> list[str]:
    """Ids of a plain list file (one per line; SBD lists may carry paths, of which the stem is kept)."""
    if not path.is_file():
        raise FileNotFoundError(f"SBD id list {path} is missing.")
    return [Path(line.split()[0]).stem for line in path.read_text().splitlines() if line.strip()]


def _palette_lookup() -> dict[tuple[int, int, int], int]:
    palette = voc_palette()
    return {palette[index]: index for index in (*range(len(VOC_CLASSES)), IGNORE_INDEX)}


def _encode_png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(array, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def validate_sample(
    image_bytes: bytes, mask_bytes: bytes, image_name: str, mask_name: str
) -> tuple[bytes, tuple[int, int] | None, str | None]:
    """Check one image/mask pair; return (mask bytes to store, image (width, height), error or None).

    Catches: an unreadable or truncated image or mask; a mask whose size differs from its
    image; class values outside 0-20 and 255; an RGB mask whose colours are not VOC palette
    colours. An RGB mask that does map onto the palette is stored as class ids.
    """
    try:
        with PILImage.open(io.BytesIO(image_bytes)) as image:
            image.load()  # decodes every byte: a truncated JPEG fails here, not during training
            image_size = image.size
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError... for bad files
        return mask_bytes, None, f"{image_name}: unreadable or truncated image ({error})"
    try:
        with PILImage.open(io.BytesIO(mask_bytes)) as mask:
            mask.load()
            mode, mask_size = mask.mode, mask.size
            pixels = np.asarray(mask.convert("RGB") if mode not in ("P", "L") else mask)
    except Exception as error:
        return mask_bytes, image_size, f"{mask_name}: unreadable or truncated mask ({error})"
    if mask_size != image_size:
        return (
            mask_bytes, image_size,
            f"{mask_name}: mask is {mask_size[0]}x{mask_size[1]} but its image is {image_size[0]}x{image_size[1]}",
        )
    if mode not in ("P", "L"):
        lookup = _palette_lookup()
        colours, inverse = np.unique(pixels.reshape(-1, 3), axis=0, return_inverse=True)
        unknown = [tuple(int(c) for c in colour) for colour in colours if tuple(int(c) for c in colour) not in lookup]
        if unknown:
            return mask_bytes, image_size, (f"{mask_name}: {mode} mask with colours that are not VOC palette colours "
                                f"{unknown[:5]} (the palette maps class ids to colours; 255 is (224, 224, 192))")
        indices = np.array([lookup[tuple(int(c) for c in colour)] for colour in colours], dtype=np.uint8)
        return _encode_png(indices[inverse.reshape(-1)].reshape(pixels.shape[:2])), image_size, None
    values = np.unique(pixels)
    bad = [int(v) for v in values if v >= len(VOC_CLASSES) and v != IGNORE_INDEX]
    if bad:
        return (
            mask_bytes,
            image_size,
            (
                f"{mask_name}: mask values {bad[:10]} are neither class ids 0-{len(VOC_CLASSES) - 1} "
                f"nor {IGNORE_INDEX} (ignore)"
            ),
        )
    return mask_bytes, image_size, None


def validated_features():
    """Columns of a validated split, before `finish_validation` removes ``error``."""
    from datasets import Features, Image, Value

    return Features({
        "id": Value("string"), "image": Image(), "label": Image(),
        "width": Value("int32"), "height": Value("int32"), "error": Value("string"),
    })


def _generate_samples(source, samples: tuple, split: str):
    """Rows {id, image, label, width, height, error} for `samples` = ((id, image path, mask path, mask source), ...)."""
    for sample_id, image_relative, mask_relative, mask_source in samples:
        mask_reader = source if mask_source is None else mask_source
        image_bytes = source.read_bytes(image_relative)
        mask_bytes = mask_reader.read_bytes(mask_relative)
        yield validated_row(sample_id, image_bytes, mask_bytes, source.location(image_relative),
                            mask_reader.location(mask_relative), where=f"{split} id {sample_id!r}")


def validated_row(sample_id: str, image_bytes: bytes, mask_bytes: bytes, image_name: str, mask_name: str,
                  where: str) -> dict:
    """One row of `validated_features`: the sample's bytes, its size, and its error (prefixed by `where`) or None."""
    mask_bytes, size, error = validate_sample(image_bytes, mask_bytes, image_name, mask_name)
    return {
        "id": sample_id,
        "image": {"bytes": image_bytes, "path": None},
        "label": {"bytes": mask_bytes, "path": None},
        "width": size[0] if size else 0,
        "height": size[1] if size else 0,
        "error": None if error is None else f"{where}: {error}",
    }


def _split_samples(source, ids: list[str], split_file: str, sbd=None) -> list[tuple]:
    """(id, image, mask, mask source) per id, after checking every file is there."""
    samples = []
    for sample_id in ids:
        image = f"JPEGImages/{sample_id}.jpg"
        mask, mask_source = f"SegmentationClass/{sample_id}.png", None
        if sbd is not None and sbd.exists(f"{sample_id}.png"):
            mask, mask_source = f"{sample_id}.png", sbd
        for reader, relative in ((source, image), (mask_source or source, mask)):
            if not reader.exists(relative):
                raise FileNotFoundError(
                    f"{split_file} lists id {sample_id!r} but {reader.location(relative)} is missing."
                )
        samples.append((sample_id, image, mask, mask_source))
    return samples


def load_voc(
    data_dir: str | Path,
    *,
    sbd_dir: str | Path | None = None,
    sbd_list: str | Path | None = None,
    cache_dir: str | Path | None = None,
    drop_invalid: bool = False,
):
    """Load Pascal VOC segmentation as ``DatasetDict(train, validation)``, validated and cached.

    Args:
        data_dir: a folder holding `VOCdevkit/VOC2012` (or `VOC2012`, or being it), or the official
            `VOCtrainval_11-May-2012.tar`, read in place.
        sbd_dir: a `SegmentationClassAug` folder of index PNGs (the SBD "aug" masks). With it, the
            train split is VOC train + the ids of `sbd_list`, minus every VOC val id (10,582 ids on the
            real data); validation stays VOC val. Images come from VOC's `JPEGImages`.
        sbd_list: the SBD id list (default: `train_aug.txt` beside or inside `sbd_dir`).
        cache_dir: where the Arrow cache goes (default: the `datasets` cache). The same source loads
            from the cache the second time without reading or validating anything again; any change
            to a listed file (size or time) makes a new cache.
        drop_invalid: leave out samples that fail validation (reporting how many and which)
            instead of raising.

    Returns:
        `datasets.DatasetDict` with columns ``id``, ``image`` (JPEG bytes), ``label`` (PNG of
        class ids, 255 = ignore), ``width`` and ``height`` (of the image). ``.dropped`` lists the
        samples `drop_invalid` left out.

    Raises:
        FileNotFoundError: naming the missing folder, split list, image or mask.
        InvalidSamplesError: listing every invalid sample, each with its id, file and problem.
    """
    from datasets import Dataset, DatasetDict

    from .sources import FolderSource, open_voc_source

    source = open_voc_source(data_dir)
    ids = {split: read_split_ids(source, split_file) for split, split_file in SPLIT_FILES.items()}
    sbd = None
    if sbd_dir is not None:
        sbd_dir = Path(sbd_dir).expanduser()
        aug_root = sbd_dir / "SegmentationClassAug" if (sbd_dir / "SegmentationClassAug").is_dir() else sbd_dir
        if not aug_root.is_dir():
            raise FileNotFoundError(f"SBD folder {sbd_dir} does not exist (expected a SegmentationClassAug folder).")
        sbd_list = Path(sbd_list) if sbd_list else next(
            (p for p in (sbd_dir / "train_aug.txt", aug_root.parent / "train_aug.txt") if p.is_file()),
            sbd_dir / "train_aug.txt",
        )
        val_ids = set(ids["validation"])
        # train_aug = (VOC train | SBD) - VOC val: the 10,582-image set the published DeepLab numbers use.
        ids["train"] = [i for i in dict.fromkeys(ids["train"] + read_id_list(sbd_list)) if i not in val_ids]
        sbd = FolderSource(aug_root)
    overlap = sorted(set(ids["train"]) & set(ids["validation"]))
    if overlap:
        raise DataError(
            f"{len(overlap)} id(s) are in both train and validation of {source.description}: {overlap[:10]}. "
            "A validation image seen in training inflates mIoU; remove them from one split list."
        )

    splits = {}
    for split, split_ids in ids.items():
        # SBD masks serve the train split only: validation is always scored on VOC's own masks.
        samples = _split_samples(source, split_ids, SPLIT_FILES[split], sbd if split == "train" else None)
        listed = [f"ImageSets/Segmentation/{SPLIT_FILES[split]}.txt"]
        for _, image, mask, mask_source in samples:
            listed += [image] if mask_source is not None else [image, mask]
        signature = hashlib.sha256(json.dumps([
            LOADER_VERSION, split, split_ids, source.signature(listed),
            sbd.signature([s[2] for s in samples if s[3] is not None]) if sbd else None,
        ]).encode()).hexdigest()[:24]
        dataset = Dataset.from_generator(
            _generate_samples,
            features=validated_features(),
            cache_dir=str(cache_dir) if cache_dir else None,
            gen_kwargs={"source": source, "samples": tuple(samples), "split": split},
            fingerprint=f"voc-{signature}",
            split=split,
        )
        splits[split] = dataset
    return finish_validation(DatasetDict(splits), drop_invalid)


def finish_validation(dataset_dict, drop_invalid: bool):
    """Raise on the rows whose ``error`` is set, or drop and report them; remove the column.

    The returned `DatasetDict` has a ``dropped`` attribute (the errors of the samples left out) and a
    ``labels`` attribute (the `LabelSet` its masks were validated against).
    """
    errors = []
    for split, dataset in dataset_dict.items():
        split_errors = [e for e in dataset["error"] if e is not None]
        if split_errors:
            errors += split_errors
            if drop_invalid:
                dataset = dataset.filter(lambda error: error is None, input_columns="error")
        dataset_dict[split] = dataset.remove_columns("error")
    if errors and not drop_invalid:
        raise InvalidSamplesError(errors)
    if errors:
        logger.warning("dropped %d invalid sample(s):\n  %s", len(errors), "\n  ".join(errors))
    dataset_dict.dropped = errors
    dataset_dict.labels = VOC_LABELS  # what the validated masks hold
    return dataset_dict


def mask_to_array(mask: PILImage.Image) -> np.ndarray:
    """Class-id array (H, W, uint8) of a VOC mask.

    VOC masks are palette ("P") PNGs whose pixel values *are* the class ids; converting them
    with ``.convert("L")`` would turn palette colours into grey levels, so they are read as is.
    """
    if mask.mode not in ("P", "L"):
        raise ValueError(
            f"mask {getattr(mask, 'filename', '')!r} has mode {mask.mode}; expected a palette (P) or "
            "greyscale (L) PNG whose pixel values are class ids."
        )
    return np.asarray(mask, dtype=np.uint8)
