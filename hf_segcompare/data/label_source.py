"""Where a dataset's label set comes from, and how its raw mask values become class ids.

The label set is read from the data, never assumed. In this order:

1. ``--labels FILE``: JSON ``{"0": "road", "1": "sidewalk", ...}`` (or a JSON list), or one name a line;
2. an ``id2label.json`` at the dataset's root (a local folder, or a Hub dataset repo): the
   transformers semantic-segmentation example's convention;
3. the class names of the label column's feature, where the dataset declares them;
4. a known release's own names (Pascal VOC's 21, ADE20K's 150 from its ``objectInfo150.txt``,
   Cityscapes' 19 train ids).

A colour table (``--mask_colors FILE``, or a ``class_dict.csv`` at the dataset's root) names the
classes as well, after ``--labels`` and before ``id2label.json``.

With none of them the loader stops and says what to pass. How a mask becomes class ids is three
declared steps, applied once while the data is validated and cached, and part of the cache key:
the source's reading of the file (`MaskReading`: index values, VOC's palette, a colour table),
then ``--label_map FILE`` or ``--reduce_labels`` (`MaskDecoding`; never both), then the check
against the label set and its ignore index (``--ignore_index``, or ``none``). Everything
downstream sees class ids and the ignore index only; the evidence checks (`label_checks`) then
look at what the masks hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import DataError
from ..labels import IGNORE_INDEX, MAX_MASK_VALUE, LabelSet, names_by_id
from .label_checks import LabelCheck, LabelEvidence
from .mask_reading import MAX_RAW_VALUE, ColourTable, MaskReading, read_colour_table
from .option_files import parse_json, read_option_file

ID2LABEL_FILE = "id2label.json"
LABELS_HELP = ("pass --labels FILE (JSON {\"0\": \"road\", \"1\": \"sidewalk\", ...}, or one class name a line), "
               f"or put an {ID2LABEL_FILE} of that form at the dataset's root")


def parse_ignore_index(value: Any) -> int | None:
    """``--ignore_index``: a mask value 0-255, or ``none`` (no value is void).

    Raises:
        DataError: anything else, naming the option.
    """
    if value is None or str(value).strip().lower() in ("none", "null", ""):
        return None
    try:
        index = int(str(value).strip())
    except ValueError:
        index = -1
    if not 0 <= index <= MAX_MASK_VALUE:
        raise DataError(f"--ignore_index {value}: give the mask value of void pixels (0-255, default "
                        f"{IGNORE_INDEX}), or 'none' for data where every mask value is a class.")
    return index


def _read_json(path: Path, what: str):
    path, text = read_option_file(path, what, "")
    return parse_json(text, f"{what} {path}")


def names_from_mapping(mapping: Any, where: str) -> tuple[str, ...]:
    """Class names from an ``{id: name}`` mapping (ids 0, 1, ... without a gap) or a list of names.

    Raises:
        DataError: any other shape, or ids with gaps; the message names `where`.
    """
    if isinstance(mapping, list) and mapping and all(isinstance(name, str) for name in mapping):
        mapping = dict(enumerate(mapping))
    if not isinstance(mapping, dict) or not mapping:
        raise DataError(f"{where}: expected {{\"0\": \"name\", ...}} (class id -> name) or a list of names.")
    try:
        return names_by_id(mapping, where)
    except ValueError as error:
        raise DataError(str(error)) from None


def read_label_names(path: str | Path) -> tuple[str, ...]:
    """The class names of a ``--labels`` file: JSON ``{"0": "road", ...}`` or a JSON list, or one
    name a line (blank lines skipped).

    Raises:
        DataError: a missing, unreadable or malformed file, named.
    """
    path, text = read_option_file(path, "--labels", f"{LABELS_HELP[0].upper()}{LABELS_HELP[1:]}.")
    if path.suffix == ".json" or text.lstrip().startswith(("{", "[")):
        return names_from_mapping(parse_json(text, f"--labels {path}"), f"--labels {path}")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise DataError(f"--labels {path} names no class.")
    return names


def read_label_map(path: str | Path) -> dict[int, int]:
    """A ``--label_map``: a file of JSON ``{"7": 0, "8": 1, ...}`` (raw mask value -> class id) or
    one ``raw id`` pair a line, or that JSON given inline (``--label_map '{"0": 0, "255": 1}'``).
    Raw values (0-65535: 16-bit masks too) not in it are ignored.

    Raises:
        DataError: a missing or malformed file, raw values beyond 16 bits or class ids beyond 255, named.
    """
    inline = str(path).lstrip().startswith("{")
    where = f"--label_map {path}"
    if inline:
        pairs = parse_json(str(path), where)
    else:
        path, text = read_option_file(path, "--label_map", "Give JSON {\"7\": 0, \"8\": 1, ...} (raw mask value -> "
                                      "class id), inline or in a file, or a file of one 'raw id' pair a line.")
        where = f"--label_map {path}"
        pairs = parse_json(text, where) if path.suffix == ".json" or text.lstrip().startswith("{") else \
            [line.replace(":", " ").split()[:2] for line in text.splitlines() if line.strip()]
    if isinstance(pairs, dict):
        pairs = list(pairs.items())
    elif inline or not isinstance(pairs, list):
        raise DataError(f"{where}: expected {{\"raw value\": class id, ...}}.")
    try:
        mapping = {int(raw): int(new) for raw, new in pairs}
    except (TypeError, ValueError):
        raise DataError(f"{where}: every entry must map an integer mask value to an integer class id.") from None
    raw_outside = sorted(raw for raw in mapping if not 0 <= raw <= MAX_RAW_VALUE)
    ids_outside = sorted(new for new in mapping.values() if not 0 <= new <= MAX_MASK_VALUE)
    if raw_outside or ids_outside or not mapping:
        raise DataError(f"{where}: " + (f"raw values {raw_outside[:5]} are outside 0-{MAX_RAW_VALUE} (masks are 8- "
                                        "or 16-bit)." if raw_outside else
                                        f"class ids {ids_outside[:5]} are outside 0-255." if ids_outside
                                        else "maps nothing."))
    return mapping


@dataclass(frozen=True)
class MaskDecoding:
    """How raw mask values become class ids, applied once while the data is validated and cached.

    `label_map` (raw value -> class id, e.g. Cityscapes' labelIds -> train ids): every raw value
    not in it becomes the ignored value. `reduce_labels` then (ADE20K's convention, evaluate's
    ``reduce_labels``): 0 becomes the ignored value and every other class id moves down by one.
    """

    label_map: tuple[tuple[int, int], ...] | None = None
    reduce_labels: bool = False
    source: str | None = None  # where the map came from (a file, a release's table), for the record

    @classmethod
    def from_mapping(cls, mapping: Mapping[int, int] | None, reduce_labels: bool = False,
                     source: str | None = None) -> "MaskDecoding":
        return cls(tuple(sorted(mapping.items())) if mapping else None, reduce_labels, source)

    @property
    def identity(self) -> bool:
        return self.label_map is None and not self.reduce_labels

    def lookup(self, void: int) -> np.ndarray | None:
        """A table raw value (0-65535: 16-bit masks too) -> class id (or `void`); None when values are
        taken as they are. A raw value the decoding gives no meaning (one beyond 8 bits, reduced) is -1,
        which no label set holds, so validation names it."""
        if self.identity:
            return None
        table = np.arange(MAX_RAW_VALUE + 1, dtype=np.int32)
        if self.label_map is not None:
            table = np.full(MAX_RAW_VALUE + 1, void, dtype=np.int32)
            for raw, new in self.label_map:
                table[raw] = new
        if self.reduce_labels:
            keep = table != void
            table = np.where(table == 0, void, np.where(keep, table - 1, void)).astype(np.int32)
            if self.label_map is None:
                table[MAX_MASK_VALUE + 1:] = -1
        return table

    def describe(self) -> str | None:
        """In words, for the card and messages (None when values are taken as they are)."""
        parts = []
        if self.label_map is not None:
            parts.append(f"raw mask values mapped to class ids by {self.source or 'a label map'} "
                         f"({len(self.label_map)} values; any other is ignored)")
        if self.reduce_labels:
            convention = f"{self.source}: " if self.source and self.label_map is None else ""
            parts.append(f"labels reduced ({convention}0 ignored, every other value minus one)")
        return "; ".join(parts) or None

    def record(self) -> dict[str, Any]:
        """What results.json and the cache key hold (``mask_decoding``: `describe`)."""
        return {"label_map": None if self.label_map is None else {str(raw): new for raw, new in self.label_map},
                "reduce_labels": self.reduce_labels, "mask_decoding": self.describe()}


@dataclass(frozen=True)
class LabelOptions:
    """What the user said about a dataset's labels (the command line's ``--labels``,
    ``--ignore_index``, ``--label_map``, ``--reduce_labels``, ``--mask_colors``, ``--strict_labels``);
    the loaders add what the data says."""

    names: tuple[str, ...] | None = None
    names_source: str | None = None
    ignore_index: int | None = IGNORE_INDEX
    decoding: MaskDecoding = field(default_factory=MaskDecoding)
    colours: ColourTable | None = None
    strict: bool = False

    @classmethod
    def from_files(cls, labels: str | None = None, ignore_index: Any = IGNORE_INDEX, label_map: str | None = None,
                   reduce_labels: bool = False, mask_colors: str | None = None,
                   strict_labels: bool = False) -> "LabelOptions":
        """Read the files the options name (see `read_label_names`, `read_label_map`, `read_colour_table`).

        Raises:
            DataError: a file that cannot be used, a bad ignore index, or options that contradict or
                whose order would matter (a label map with --reduce_labels; either with a colour table).
        """
        ignore = parse_ignore_index(ignore_index)
        if ignore is None and (reduce_labels or label_map):
            raise DataError("--ignore_index none leaves no value for what --reduce_labels / --label_map ignore: "
                            "give the ignore index (e.g. 255).")
        if label_map and reduce_labels:
            raise DataError("--label_map and --reduce_labels both say what each raw value becomes, and their order "
                            "would decide it: give the map alone, with the reduction in it (leave 0 out, so it is "
                            "ignored, and map each other value v to v - 1).")
        if mask_colors and (label_map or reduce_labels):
            raise DataError("--mask_colors gives each colour its class id (its id column, 'ignore' for void): drop "
                            "--label_map / --reduce_labels and put the ids in the table.")
        mapping = read_label_map(label_map) if label_map else None
        return cls(read_label_names(labels) if labels else None, f"--labels {labels}" if labels else None, ignore,
                   MaskDecoding.from_mapping(mapping, reduce_labels, f"--label_map {label_map}" if label_map else None),
                   read_colour_table(mask_colors) if mask_colors else None, strict_labels)

    def resolve(self, found: tuple[tuple[str, ...], str] | None, dataset: str,
                decoding: MaskDecoding | None = None, reading: MaskReading | None = None,
                table: ColourTable | None = None) -> "ResolvedLabels":
        """The label set and how the masks are read: the names given (``--labels``), else the colour
        table's (``--mask_colors``, else `table`, the one at the dataset's root), else those the data
        provides (`found`: names and where they were read), with the ignore index given. `decoding`
        overrides the options' one (a release's own convention); `reading` is the source's reading
        of mask files (default: index values), which a colour table replaces.

        Raises:
            DataError: no names anywhere (the message says what to pass), a colour table with another
                number of classes than the names given, or a set that cannot work.
        """
        table = self.colours or table
        if self.names:
            names, source = self.names, self.names_source
        elif table is not None:
            names, source = table.names, f"the colour table {table.source}"
        else:
            names, source = found or (None, None)
        if not names:
            raise DataError(f"dataset {dataset} says nothing about its classes: {LABELS_HELP}.")
        if table is not None and len(table.names) != len(names):
            raise DataError(f"{source} names {len(names)} classes but the colour table {table.source} has "
                            f"{len(table.names)}: give both the same classes, or drop --labels (the table names them).")
        try:
            labels = LabelSet(names, self.ignore_index)
        except ValueError as error:
            raise DataError(f"the label set of {dataset} ({source}) cannot be used: {error}.") from None
        return ResolvedLabels(labels, source, decoding or self.decoding,
                              MaskReading.colours(table) if table is not None else reading or MaskReading.index(),
                              strict=self.strict)


@dataclass(frozen=True)
class ResolvedLabels:
    """A dataset's label set, where its names came from, how its mask files are read (`reading`) and
    their raw values decoded (`decoding`); once validated, what the masks hold (`evidence`) and the
    checks that fired on it (`checks`; `strict`: they stop the run)."""

    labels: LabelSet
    source: str
    decoding: MaskDecoding = field(default_factory=MaskDecoding)
    reading: MaskReading = field(default_factory=MaskReading)
    evidence: LabelEvidence | None = None
    checks: tuple[LabelCheck, ...] = ()
    strict: bool = False

    def lookup(self) -> np.ndarray | None:
        return self.decoding.lookup(self.labels.void)

    def describe_decoding(self) -> str:
        """How a mask file becomes class ids, in words: the reading, then the map or reduction."""
        return "; ".join(filter(None, (self.reading.describe(), self.decoding.describe())))

    def cache_key(self) -> list:
        """What the validated cache depends on besides the files: a change here validates anew."""
        return [list(self.labels.names), self.labels.ignore_index, self.decoding.record(), self.reading.record()]

    def record(self) -> dict[str, Any]:
        """What results.json holds about the labels (``dataset`` block)."""
        return {"class_names": list(self.labels.names), "ignore_index": self.labels.ignore_index,
                "label_source": self.source, **self.decoding.record(), "mask_decoding": self.describe_decoding(),
                "mask_reading": self.reading.record(),
                "label_checks": [check.record() for check in self.checks],
                "class_pixels": None if self.evidence is None else self.evidence.record(self.labels)}


def id2label_in_folder(folder: Path) -> tuple[tuple[str, ...], str] | None:
    """Names from ``folder/id2label.json``, with where they came from; None when there is no such file."""
    path = folder / ID2LABEL_FILE
    if not path.is_file():
        return None
    return names_from_mapping(_read_json(path, ID2LABEL_FILE), str(path)), str(path)


def feature_class_names(feature) -> tuple[str, ...] | None:
    """The class names a `datasets` feature declares (a `ClassLabel`, or a sequence of them), if any."""
    for candidate in (feature, getattr(feature, "feature", None)):
        names = getattr(candidate, "names", None)
        if names:
            return tuple(str(name) for name in names)
    return None


__all__ = ["ID2LABEL_FILE", "LabelOptions", "MaskDecoding", "ResolvedLabels", "feature_class_names",
           "id2label_in_folder", "names_from_mapping", "parse_ignore_index", "read_label_map", "read_label_names"]
