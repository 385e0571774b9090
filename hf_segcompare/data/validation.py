"""Every sample checked once, against the dataset's label set, while it is written to the cache.

Each loader (a VOC-format tree or tar, ADE20K, Cityscapes, paired image and mask folders, a
Hub/parquet/imagefolder/saved dataset) turns its samples into rows of `validated_features` with
`validated_row`, which decodes the image and the mask completely (a truncated file is caught here,
not hours into training), checks their sizes agree, reads the mask file as its source declares
(`MaskReading`: a lossy or unreadable mask is refused), decodes raw values into class ids
(`MaskDecoding`), checks every value is a class id of the label set or its ignored value, and
counts the pixels of each. `finish_validation` then stops with every problem named (its split, id,
file and what is wrong; one line where the whole dataset shares it) or, with ``drop_invalid``,
leaves those samples out; and checks what the masks hold against the label set (`label_checks`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image as PILImage

from ..errors import DataError, InvalidSamplesError
from ..labels import MAX_MASK_VALUE, VOC_LABELS, LabelSet
from .images import UnsupportedImage, orientation, to_rgb, turn_like, upright
from .label_checks import LabelCheckWarning, LabelEvidence, label_checks
from .label_source import ResolvedLabels
from .mask_reading import PROBLEM_WAYS_OUT, MaskReading
from .masks import encode_mask_png
from .segmentation_data import SegmentationData

logger = logging.getLogger(__name__)

LABEL_WAYS_OUT = ("Pass the classes the masks hold (--labels FILE), map raw values to classes (--label_map FILE, "
                  "--reduce_labels), set the void value (--ignore_index), or --drop_invalid to leave those "
                  "samples out.")


class LabelValuesError(InvalidSamplesError):
    """Samples whose masks hold values outside the label set, and nothing else wrong: one line saying
    which values, where first, the label set, and what to pass."""

    def __init__(self, errors: list[str], values: list[int], labels: LabelSet, reduced: bool = False):
        self.errors = errors
        first = errors[0]
        more = f"; {len(errors) - 1} more sample(s) too, values in all: {values[:20]}" if len(errors) > 1 else ""
        hint = ""
        if values == [labels.num_labels] and not reduced:
            hint = (f" {values[0]} is one above the top class id {labels.num_labels - 1}: if the masks' 0 means "
                    "'other' or unlabelled (ADE20K's convention), pass --reduce_labels.")
        super(InvalidSamplesError, self).__init__(f"{first}{more}.{hint} {LABEL_WAYS_OUT}")


class MaskProblemsError(InvalidSamplesError):
    """Samples whose masks cannot be read, all for one reason (lossy, RGB without a colour table,
    colours outside it ...): one line naming the first, how many, and what to do."""

    def __init__(self, errors: list[str], kind: str):
        self.errors = errors
        more = f"; {len(errors) - 1} more sample(s) too" if len(errors) > 1 else ""
        super(InvalidSamplesError, self).__init__(f"{errors[0]}{more}. {PROBLEM_WAYS_OUT[kind]}")


class SampleCheck(NamedTuple):
    """What `validate_sample` found: the mask bytes to store, the image's (width, height) as shown, and
    the problem (None when valid), with the raw mask values outside the label set, if that was it,
    or the kind of mask problem (`MaskProblem`); `image_bytes`: the image to store instead of the
    file's (an EXIF-turned photo stored upright); `pixels`: the stored mask's pixels of each value
    0-255 (None for an invalid sample)."""

    mask_bytes: bytes
    size: tuple[int, int] | None
    error: str | None = None
    bad_values: tuple[int, ...] = ()
    image_bytes: bytes | None = None
    problem: str | None = None
    pixels: np.ndarray | None = None


def _png(image: PILImage.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def validate_sample(image_bytes: bytes, mask_bytes: bytes, image_name: str, mask_name: str,
                    labels: LabelSet = VOC_LABELS, lookup: np.ndarray | None = None,
                    reading: MaskReading = MaskReading.voc_palette()) -> SampleCheck:
    """Check one image/mask pair against `labels`: the mask read as `reading` says, its raw values
    decoded with `lookup` (`MaskDecoding.lookup`: raw value -> class id).

    Catches: an unreadable or truncated image or mask, or one whose pixels cannot be read as a
    picture (`to_rgb`: floating point, beyond 16 bits); a mask whose size differs from its image; a
    mask the reading refuses (lossy, RGB without a colour table or with colours outside it,
    transparent); mask values that are neither class ids nor the ignored value. A mask stored
    other than as 8-bit class ids (RGB, 16-bit, decoded) is stored as class ids.

    A photo with an EXIF orientation is stored upright (as its viewer shows it, which is how
    training, evaluation and ``predict.py`` read every image), and its mask must agree: a mask of
    the upright size is taken as drawn on the upright photo, one of the stored size (the pixels as
    stored, where the orientation turns the photo) is turned the same way. Where the orientation
    keeps the size (a square photo, a mirror, a half turn) the mask cannot tell which picture it was
    drawn on, and the sample is refused rather than guessed.
    """
    try:
        with PILImage.open(io.BytesIO(image_bytes)) as image:
            image.load()  # decodes every byte: a truncated JPEG fails here, not during training
            turn, stored_size = orientation(image), image.size
            shown = upright(image)
            to_rgb(shown, image_name)  # the decoding every reader uses must work on it
            image_size = shown.size
    except UnsupportedImage as error:
        return SampleCheck(mask_bytes, None, str(error))
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError... for bad files
        return SampleCheck(mask_bytes, None, f"{image_name}: unreadable or truncated image ({error})")
    try:
        with PILImage.open(io.BytesIO(mask_bytes)) as mask:
            mask.load()
            mode, mask_size = mask.mode, mask.size
            pixels, problem = reading.pixels(mask, mask_name, labels.void)
    except Exception as error:
        return SampleCheck(mask_bytes, image_size, f"{mask_name}: unreadable or truncated mask ({error})")
    if problem is not None:
        return SampleCheck(mask_bytes, image_size, problem.message, problem=problem.kind)
    if turn != 1 and image_size == stored_size:
        return SampleCheck(mask_bytes, image_size, f"{image_name}: its EXIF orientation ({turn}) turns or mirrors "
                                                   "the photo without changing its size, so its mask cannot tell "
                                                   "whether it was drawn on the photo as stored or as shown: store "
                                                   "the photo upright (e.g. exiftran -ai, or Pillow's "
                                                   "ImageOps.exif_transpose) and check its mask against it")
    # Drawn on the pixels as stored: it turns with the photo.
    turned_mask = turn != 1 and mask_size == stored_size
    if turned_mask:
        pixels = np.asarray(turn_like(PILImage.fromarray(pixels), turn))
        mask_size = image_size
    if mask_size != image_size:
        return SampleCheck(mask_bytes, image_size, f"{mask_name}: mask is {mask_size[0]}x{mask_size[1]} but its image "
                                                   f"is {image_size[0]}x{image_size[1]}")
    upright_bytes = _png(shown) if turn != 1 else None
    # One counting pass gives both the values present and their pixels (bincount: linear, where
    # np.unique sorts); a 16-bit mask's values are counted the same way, up to its largest.
    raw_pixels = np.bincount(pixels.ravel(), minlength=MAX_MASK_VALUE + 1)
    raw_values = np.flatnonzero(raw_pixels)
    values = raw_values if lookup is None else lookup[raw_values]
    bad = tuple(int(raw) for raw, value in zip(raw_values, values) if not labels.is_valid(int(value)))
    if bad:
        raw = "" if lookup is None else " (raw, before the label map / label reduction)"
        return SampleCheck(mask_bytes, image_size, f"{mask_name}: mask values {list(bad[:10])}{raw} are not in the "
                                                   f"label set, {labels.describe()}", bad)
    decoded = lookup is not None and not np.array_equal(values, raw_values)
    stored_as_is = mode in ("P", "L") and not turned_mask and not decoded
    if decoded:  # a decoding that maps every value present to itself leaves the pixels as they are
        pixels = lookup[pixels]
    pixels = pixels.astype(np.uint8)  # every value is a class id or the void value, both 8-bit
    # The stored values' pixels: the raw values' counts, added up where the decoding joins values.
    counts = np.bincount(values, weights=raw_pixels[raw_values], minlength=MAX_MASK_VALUE + 1).astype(np.int64)
    return SampleCheck(mask_bytes if stored_as_is else encode_mask_png(pixels), image_size, image_bytes=upright_bytes,
                       pixels=counts)


def validated_features():
    """Columns of a validated split, before `finish_validation` removes the check's own columns
    (``error``, ``bad_values``, ``problem``, and the pixels of each value: ``mask_values``,
    ``mask_pixels``)."""
    from datasets import Features, Image, Sequence, Value

    return Features({
        "id": Value("string"), "image": Image(), "label": Image(),
        "width": Value("int32"), "height": Value("int32"), "error": Value("string"),
        "bad_values": Sequence(Value("int32")), "problem": Value("string"),
        "mask_values": Sequence(Value("int32")), "mask_pixels": Sequence(Value("int64")),
    })


CHECK_COLUMNS = ["error", "bad_values", "problem", "mask_values", "mask_pixels"]


def validated_row(sample_id: str, image_bytes: bytes, mask_bytes: bytes, image_name: str, mask_name: str,
                  where: str, labels: LabelSet = VOC_LABELS, lookup: np.ndarray | None = None,
                  reading: MaskReading = MaskReading.voc_palette()) -> dict:
    """One row of `validated_features`: the sample's bytes (its mask read by `reading`, decoded with
    `lookup`), its size, its error (prefixed by `where`) or None, and its mask's pixels per value."""
    check = validate_sample(image_bytes, mask_bytes, image_name, mask_name, labels, lookup, reading)
    held = np.flatnonzero(check.pixels) if check.pixels is not None else np.zeros(0, dtype=np.int64)
    return {
        "id": sample_id,
        "image": {"bytes": check.image_bytes or image_bytes, "path": None},
        "label": {"bytes": check.mask_bytes, "path": None},
        "width": check.size[0] if check.size else 0,
        "height": check.size[1] if check.size else 0,
        "error": None if check.error is None else f"{where}: {check.error}",
        "bad_values": list(check.bad_values),
        "problem": check.problem,
        "mask_values": held.tolist(),
        "mask_pixels": [] if check.pixels is None else check.pixels[held].tolist(),
    }


LOADER_VERSION = 3  # bump when what the loaders store changes, so older caches are not reused


def _generate_samples(source, samples: tuple, split: str, labels: LabelSet, lookup, reading: MaskReading):
    """Rows of `validated_features` for `samples` = ((id, image path, mask path, mask source), ...)."""
    for sample_id, image_relative, mask_relative, mask_source in samples:
        mask_reader = source if mask_source is None else mask_source
        image_bytes = source.read_bytes(image_relative)
        mask_bytes = mask_reader.read_bytes(mask_relative)
        yield validated_row(sample_id, image_bytes, mask_bytes, source.location(image_relative),
                            mask_reader.location(mask_relative), f"{split} id {sample_id!r}", labels, lookup,
                            reading)


def arrow_cache(cache_dir: str | Path | None = None) -> str:
    """Where validated splits are cached: ``<cache_dir>/arrow``, `cache_dir` being the toolkit's cache
    (the command line's ``--cache_dir``; default ``$HF_SEGCOMPARE_CACHE`` or ``~/.cache/hf_segcompare``),
    so Python and the command line share one cache."""
    from .synthetic import DEFAULT_CACHE_DIR

    return str(Path(cache_dir or DEFAULT_CACHE_DIR).expanduser() / "arrow")


def validated_split(source, samples: list[tuple], split: str, labels: ResolvedLabels, key: list, kind: str,
                    cache_dir: str | Path | None = None):
    """One split of a file source (a folder, a tar or zip) validated into an Arrow cache.

    `samples` are (id, image path, mask path, mask source or None) relative to `source`; `key` is
    what identifies the files (ids and file signatures): with the label set and the decoding it
    names the cache, so the second load of the same state memory-maps it without reading anything
    and any change to a listed file, the classes, the ignore index or the label map validates anew.
    """
    from datasets import Dataset

    signature = hashlib.sha256(json.dumps([LOADER_VERSION, split, *key, labels.cache_key()]).encode()).hexdigest()
    return Dataset.from_generator(
        _generate_samples,
        features=validated_features(),
        cache_dir=arrow_cache(cache_dir),
        gen_kwargs={"source": source, "samples": tuple(samples), "split": split, "labels": labels.labels,
                    "lookup": labels.lookup(), "reading": labels.reading},
        fingerprint=f"{kind}-{signature[:24]}",
        split=split,
    )


def _flat(column) -> np.ndarray:
    """The values of an Arrow list column (one list per row), end to end."""
    import pyarrow as pa

    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.flatten().to_numpy(zero_copy_only=False)


def _pixels_per_value(dataset) -> np.ndarray:
    """The pixels of each stored mask value (0-255) over a validated split, from the counts
    validation stored (read as two Arrow columns: no mask is decoded again)."""
    table = dataset.with_format("arrow")
    values, pixels = _flat(table["mask_values"]), _flat(table["mask_pixels"])
    return np.bincount(values.astype(np.int64), weights=pixels.astype(np.float64),
                       minlength=MAX_MASK_VALUE + 1).round().astype(np.int64)


def _raise_for(errors: list[str], kinds: list[str | None], bad_values: set[int], labels: ResolvedLabels) -> None:
    """Stop on invalid samples: one line where they all fail for one reason the data shares (values
    outside the label set, a mask problem), else the list."""
    shared = set(kinds)
    if shared == {"values"}:
        raise LabelValuesError(errors, sorted(bad_values), labels.labels, reduced=labels.decoding.reduce_labels)
    if len(shared) == 1 and next(iter(shared)) in PROBLEM_WAYS_OUT:
        raise MaskProblemsError(errors, next(iter(shared)))
    raise InvalidSamplesError(errors)


def finish_validation(dataset_dict, drop_invalid: bool, labels: ResolvedLabels, *, source: str | Path,
                      split_info: dict | None = None, columns: dict | None = None) -> SegmentationData:
    """Raise on the rows whose ``error`` is set, or drop and report them; remove the check's columns;
    then check what the masks hold (`label_checks`), warning, or stopping under ``strict``.

    Samples that all fail for one reason the dataset shares are one line (`LabelValuesError` for
    mask values outside the label set, `MaskProblemsError` for masks that cannot be read as
    declared): the data and the options disagree, which is rarely one sample's fault.

    Returns the `SegmentationData`: the splits, the errors of the samples left out (``dropped``), the
    `ResolvedLabels` the masks were validated against (``label_info``: where the names came from,
    how masks were read and decoded, what they hold and the checks that fired), and the loader's
    `source` (where it read the data), `split_info` and `columns`.

    Raises:
        InvalidSamplesError: invalid samples (without ``drop_invalid``).
        DataError: ``drop_invalid`` left a split empty; a label check fired under ``strict``.
    """
    errors, kinds, bad_values = [], [], set()
    evidence = {}
    for split, dataset in dataset_dict.items():
        # Read as one Arrow column (not row by row): a cached load of a valid split costs almost nothing here.
        column = dataset.with_format("arrow")["error"]
        rows = [] if column.null_count == len(column) else \
            [index for index, error in enumerate(column.to_pylist()) if error is not None]
        failing = dataset.select(rows).select_columns(["error", "bad_values", "problem"]).to_dict() if rows \
            else {"error": [], "bad_values": [], "problem": []}
        for error, values, problem in zip(failing["error"], failing["bad_values"], failing["problem"]):
            errors.append(error)
            kinds.append("values" if values else problem)
            bad_values.update(values)
        if rows and drop_invalid:
            dataset = dataset.filter(lambda error: error is None, input_columns="error")
            if len(dataset) == 0:
                raise DataError(f"--drop_invalid left the {split} split empty: all {len(rows)} of its samples are "
                                f"invalid, the first: {failing['error'][0]}. Fix the data or the label options.")
        evidence[split] = (len(dataset), _pixels_per_value(dataset))
        dataset_dict[split] = dataset.remove_columns(CHECK_COLUMNS)
    if errors and not drop_invalid:
        _raise_for(errors, kinds, bad_values, labels)
    if errors:
        logger.warning("dropped %d invalid sample(s):\n  %s", len(errors), "\n  ".join(errors))
    found = LabelEvidence.from_counts(evidence)
    checks = label_checks(labels.labels, found, reduced=labels.decoding.reduce_labels)
    if checks and labels.strict:
        raise DataError("--strict_labels: " + "; ".join(check.message for check in checks) + ".")
    for check in checks:
        warnings.warn(f"label check: {check.message}", LabelCheckWarning, stacklevel=2)
    return SegmentationData(dataset_dict, dataclasses.replace(labels, evidence=found, checks=checks),
                            source=str(source), dropped=tuple(errors), split_info=split_info, columns=columns)


__all__ = ["CHECK_COLUMNS", "LOADER_VERSION", "arrow_cache", "LabelValuesError", "MaskProblemsError", "SampleCheck",
           "finish_validation", "validate_sample", "validated_features", "validated_row", "validated_split"]
