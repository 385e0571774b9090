"""Every sample checked once, against the dataset's label set, while it is written to the cache.

Each loader (a VOC-format tree or tar, ADE20K, Cityscapes, a Hub/parquet/imagefolder dataset)
turns its samples into rows of `validated_features` with `validated_row`, which decodes the image
and the mask completely (a truncated file is caught here, not hours into training), checks their
sizes agree, decodes raw mask values into class ids (`MaskDecoding`) and checks every value is a
class id of the label set or its ignored value. `finish_validation` then stops with every problem
named (its split, id, file and what is wrong) or, with ``drop_invalid``, leaves those samples out.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image as PILImage

from ..errors import InvalidSamplesError
from ..labels import VOC_LABELS, LabelSet
from .images import UnsupportedImage, orientation, to_rgb, turn_like, upright
from .label_source import ResolvedLabels
from .masks import encode_mask_png, voc_palette

logger = logging.getLogger(__name__)

LABEL_WAYS_OUT = ("Pass the classes the masks hold (--labels FILE), map raw values to classes (--label_map FILE, "
                  "--reduce_labels), set the void value (--ignore_index), or --drop_invalid to leave those "
                  "samples out.")


class LabelValuesError(InvalidSamplesError):
    """Samples whose masks hold values outside the label set, and nothing else wrong: one line saying
    which values, where first, the label set, and what to pass."""

    def __init__(self, errors: list[str], values: list[int], labels: LabelSet):
        self.errors = errors
        first = errors[0]
        more = f"; {len(errors) - 1} more sample(s) too, values in all: {values[:20]}" if len(errors) > 1 else ""
        super(InvalidSamplesError, self).__init__(f"{first}{more}. {LABEL_WAYS_OUT}")


def _palette_lookup(labels: LabelSet) -> dict[tuple[int, int, int], int]:
    palette = voc_palette()
    values = [*range(labels.num_labels), *([] if labels.ignore_index is None else [labels.ignore_index])]
    return {palette[index]: index for index in values}


class SampleCheck(NamedTuple):
    """What `validate_sample` found: the mask bytes to store, the image's (width, height) as shown, and
    the problem (None when valid), with the raw mask values outside the label set, if that was it;
    `image_bytes`: the image to store instead of the file's (an EXIF-turned photo stored upright)."""

    mask_bytes: bytes
    size: tuple[int, int] | None
    error: str | None = None
    bad_values: tuple[int, ...] = ()
    image_bytes: bytes | None = None


def _png(image: PILImage.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _palette_ids(pixels: np.ndarray, labels: LabelSet) -> tuple[np.ndarray | None, str | None]:
    """An RGB mask's class ids, read through the VOC palette of the label set's ids; or, where a
    colour is no such palette colour, None and what is wrong."""
    palette = _palette_lookup(labels)
    colours, inverse = np.unique(pixels.reshape(-1, 3), axis=0, return_inverse=True)
    unknown = [tuple(int(c) for c in colour) for colour in colours if tuple(int(c) for c in colour) not in palette]
    if unknown:
        void = "" if labels.ignore_index is None else f"; {labels.ignore_index} is {voc_palette()[labels.ignore_index]}"
        return None, (f"colours that are not VOC palette colours of the label set's ids {unknown[:5]} (the palette "
                      f"maps class ids to colours{void})")
    indices = np.array([palette[tuple(int(c) for c in colour)] for colour in colours], dtype=np.uint8)
    return indices[inverse.reshape(-1)].reshape(pixels.shape[:2]), None


def validate_sample(image_bytes: bytes, mask_bytes: bytes, image_name: str, mask_name: str,
                    labels: LabelSet = VOC_LABELS, lookup: np.ndarray | None = None) -> SampleCheck:
    """Check one image/mask pair against `labels`, decoding its mask values with `lookup` first.

    Catches: an unreadable or truncated image or mask, or one whose pixels cannot be read as a
    picture (`to_rgb`: floating point, beyond 16 bits); a mask whose size differs from its image;
    mask values that are neither class ids nor the ignored value (after `lookup`, the 256-entry
    raw value -> class id table of `MaskDecoding`); an RGB mask whose colours are not palette
    colours of the set's ids. An RGB mask in the palette, or a mask `lookup` changes, is stored as
    class ids.

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
            # Drawn on the pixels as stored: it turns with the photo.
            turned_mask = turn != 1 and image_size != stored_size and mask_size == stored_size
            if turned_mask:
                mask, mask_size = turn_like(mask, turn), image_size
            pixels = np.asarray(mask.convert("RGB") if mode not in ("P", "L") else mask)
    except Exception as error:
        return SampleCheck(mask_bytes, image_size, f"{mask_name}: unreadable or truncated mask ({error})")
    if turn != 1 and image_size == stored_size:
        return SampleCheck(mask_bytes, image_size, f"{image_name}: its EXIF orientation ({turn}) turns or mirrors "
                                                   "the photo without changing its size, so its mask cannot tell "
                                                   "whether it was drawn on the photo as stored or as shown: store "
                                                   "the photo upright (e.g. exiftran -ai, or Pillow's "
                                                   "ImageOps.exif_transpose) and check its mask against it")
    if mask_size != image_size:
        return SampleCheck(mask_bytes, image_size, f"{mask_name}: mask is {mask_size[0]}x{mask_size[1]} but its image "
                                                   f"is {image_size[0]}x{image_size[1]}")
    upright_bytes = _png(shown) if turn != 1 else None
    recoded = turned_mask
    if mode not in ("P", "L"):
        pixels, problem = _palette_ids(pixels, labels)
        if problem:
            return SampleCheck(mask_bytes, image_size, f"{mask_name}: {mode} mask with {problem}")
        recoded = True
    raw_values = np.unique(pixels)
    values = raw_values if lookup is None else lookup[raw_values]
    bad = tuple(int(raw) for raw, value in zip(raw_values, values) if not labels.is_valid(int(value)))
    if bad:
        raw = "" if lookup is None else " (raw, before the label map / label reduction)"
        return SampleCheck(mask_bytes, image_size, f"{mask_name}: mask values {list(bad[:10])}{raw} are not in the "
                                                   f"label set, {labels.describe()}", bad)
    if lookup is not None and not np.array_equal(values, raw_values):
        pixels, recoded = lookup[pixels], True
    return SampleCheck(encode_mask_png(pixels) if recoded else mask_bytes, image_size, image_bytes=upright_bytes)


def validated_features():
    """Columns of a validated split, before `finish_validation` removes ``error`` and ``bad_values``."""
    from datasets import Features, Image, Sequence, Value

    return Features({
        "id": Value("string"), "image": Image(), "label": Image(),
        "width": Value("int32"), "height": Value("int32"), "error": Value("string"),
        "bad_values": Sequence(Value("int32")),
    })


def validated_row(sample_id: str, image_bytes: bytes, mask_bytes: bytes, image_name: str, mask_name: str,
                  where: str, labels: LabelSet = VOC_LABELS, lookup: np.ndarray | None = None) -> dict:
    """One row of `validated_features`: the sample's bytes (its mask decoded with `lookup`), its size,
    and its error (prefixed by `where`) or None."""
    check = validate_sample(image_bytes, mask_bytes, image_name, mask_name, labels, lookup)
    return {
        "id": sample_id,
        "image": {"bytes": check.image_bytes or image_bytes, "path": None},
        "label": {"bytes": check.mask_bytes, "path": None},
        "width": check.size[0] if check.size else 0,
        "height": check.size[1] if check.size else 0,
        "error": None if check.error is None else f"{where}: {check.error}",
        "bad_values": list(check.bad_values),
    }


LOADER_VERSION = 2  # bump when what the loaders store changes, so older caches are not reused


def _generate_samples(source, samples: tuple, split: str, labels: LabelSet, lookup):
    """Rows of `validated_features` for `samples` = ((id, image path, mask path, mask source), ...)."""
    for sample_id, image_relative, mask_relative, mask_source in samples:
        mask_reader = source if mask_source is None else mask_source
        image_bytes = source.read_bytes(image_relative)
        mask_bytes = mask_reader.read_bytes(mask_relative)
        yield validated_row(sample_id, image_bytes, mask_bytes, source.location(image_relative),
                            mask_reader.location(mask_relative), f"{split} id {sample_id!r}", labels, lookup)


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
                    "lookup": labels.lookup()},
        fingerprint=f"{kind}-{signature[:24]}",
        split=split,
    )


def finish_validation(dataset_dict, drop_invalid: bool, labels: ResolvedLabels):
    """Raise on the rows whose ``error`` is set, or drop and report them; remove the check's columns.

    Samples whose only fault is mask values outside the label set are one line
    (`LabelValuesError`): the data and the label set disagree, which is rarely one sample's fault.

    The returned `DatasetDict` has a ``dropped`` attribute (the errors of the samples left out), a
    ``labels`` attribute (the `LabelSet` its masks were validated against) and ``label_info`` (the
    `ResolvedLabels`: where the names came from, how raw values were decoded).
    """
    errors, bad_values, value_errors = [], set(), 0
    for split, dataset in dataset_dict.items():
        # Read as one Arrow column (not row by row): a cached load of a valid split costs almost nothing here.
        column = dataset.with_format("arrow")["error"]
        rows = [] if column.null_count == len(column) else \
            [index for index, error in enumerate(column.to_pylist()) if error is not None]
        failing = dataset.select(rows).select_columns(["error", "bad_values"]).to_dict() if rows else {"error": []}
        for error, values in zip(failing["error"], failing.get("bad_values", [])):
            errors.append(error)
            value_errors += bool(values)
            bad_values.update(values)
        if rows and drop_invalid:
            dataset = dataset.filter(lambda error: error is None, input_columns="error")
        dataset_dict[split] = dataset.remove_columns(["error", "bad_values"])
    if errors and not drop_invalid:
        if value_errors == len(errors):
            raise LabelValuesError(errors, sorted(bad_values), labels.labels)
        raise InvalidSamplesError(errors)
    if errors:
        logger.warning("dropped %d invalid sample(s):\n  %s", len(errors), "\n  ".join(errors))
    dataset_dict.dropped = errors
    dataset_dict.labels = labels.labels  # what the validated masks hold
    dataset_dict.label_info = labels
    return dataset_dict


__all__ = ["LOADER_VERSION", "arrow_cache", "LabelValuesError", "SampleCheck", "finish_validation", "validate_sample",
           "validated_features", "validated_row", "validated_split"]
