"""How a mask *file* becomes raw values: a reading each source declares, recorded with the run.

Three readings, each named on the run's labels line, in results.json and on the card:

- ``index`` (every source): the pixel value is the value. 8-bit greyscale (``L``), palette PNGs
  (``P``: the index, the palette's colours ignored), 1-bit, and 16-bit greyscale (``I;16``, ``I``:
  values read as they are, never as grey levels or colours).
- ``voc_palette`` (VOC-format sources only): as ``index``, and an RGB mask read through VOC's
  256-entry colour map, as VOC's own colour masks are drawn.
- ``colour_table``: an RGB mask read through a table of colours (``--mask_colors FILE``, or a
  ``class_dict.csv`` / ``mask_colors.csv`` / ``mask_colors.json`` at the dataset's root): CamVid's
  ``class_dict.csv`` of ``name,r,g,b`` rows is one. The table names the classes too.

An RGB mask with no colour table is refused (a colour means nothing without one: CamVid's sky is
VOC's class 7 colour); so is a lossy (JPEG) mask, whose edges hold values no class has, a mask
with transparent pixels and a floating-point one. Each refusal is a `MaskProblem` of a kind the
whole dataset usually shares, so validation reports it in one line.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from ..errors import DataError
from ..labels import MAX_MASK_VALUE, names_by_id
from .images import SIXTEEN_BIT_MODES
from .masks import voc_palette
from .option_files import parse_json, read_option_file

COLOUR_TABLE_FILES = ("mask_colors.json", "mask_colors.csv", "class_dict.csv")
COLOUR_TABLE_HELP = ("pass --mask_colors FILE (CSV rows name,r,g,b as CamVid's class_dict.csv, or JSON "
                     "{\"sky\": [128, 128, 128], ...}), or put a class_dict.csv at the dataset's root")
LOSSY_FORMATS = ("JPEG", "MPO")  # MPO: a JPEG with more frames (some cameras)
IGNORED_ID = "ignore"  # a colour table's id for a colour that marks void pixels
MAX_RAW_VALUE = 65535  # 16-bit masks: what a label map may map from

Colour = tuple[int, int, int]


class MaskProblem(NamedTuple):
    """Why a mask cannot be read: `kind` (one of `PROBLEM_WAYS_OUT`'s keys) and the message."""

    kind: str
    message: str


# What to do about each kind of problem, said once for the whole dataset.
PROBLEM_WAYS_OUT = {
    "lossy": "Export the masks as PNG (lossless): a JPEG's values along every edge belong to no class, and no "
             "option can tell which class they were.",
    "rgb_without_table": f"A colour means a class only through a table: {COLOUR_TABLE_HELP}.",
    "unknown_colours": "Pass a colour table that lists them (--mask_colors FILE; a colour of void pixels gets the id "
                       "'ignore'), or --drop_invalid to leave those samples out.",
    "unreadable_pixels": "Store the masks as 8-bit or 16-bit PNGs of class ids, or as RGB PNGs with a colour table.",
}


def _colour(values: Any, where: str) -> Colour:
    try:
        colour = tuple(int(str(value).strip()) for value in values)
    except (TypeError, ValueError):
        colour = ()
    if len(colour) != 3 or not all(0 <= channel <= 255 for channel in colour):
        raise DataError(f"{where}: a colour is three integers 0-255 (r, g, b), not {values!r}.")
    return colour


def _class_id(value: Any, where: str) -> int | None:
    """A table row's id: a class id, or None for ``ignore`` (the colour marks void pixels)."""
    if str(value).strip().lower() in (IGNORED_ID, "void", "none", "null"):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        raise DataError(f"{where}: an id is a class id (0, 1, ...) or '{IGNORED_ID}', not {value!r}.") from None


@dataclass(frozen=True)
class ColourTable:
    """Colours of RGB masks and what each means: ``rows`` of (colour, name, class id or None for
    void), in the file's order. Without an id column the row order gives the ids (0, 1, ...)."""

    rows: tuple[tuple[Colour, str, int | None], ...]
    source: str

    def __post_init__(self):
        colours = [colour for colour, _, _ in self.rows]
        repeated = sorted({colour for colour in colours if colours.count(colour) > 1})
        if repeated:
            raise DataError(f"{self.source}: the colours {repeated[:5]} are listed more than once.")
        names = {}
        for _, name, class_id in self.rows:
            if class_id is not None and names.setdefault(class_id, name) != name:
                raise DataError(f"{self.source}: class id {class_id} is named both {names[class_id]!r} and {name!r}.")
        if not names:
            raise DataError(f"{self.source}: names no class (every row is '{IGNORED_ID}').")
        try:
            self.names  # ids 0, 1, ... without a gap, names unique
        except ValueError as error:
            raise DataError(str(error)) from None

    @property
    def names(self) -> tuple[str, ...]:
        """The class names, by id."""
        return names_by_id({class_id: name for _, name, class_id in self.rows if class_id is not None}, self.source)

    @property
    def void_colours(self) -> tuple[Colour, ...]:
        return tuple(colour for colour, _, class_id in self.rows if class_id is None)

    def lookup(self, void: int) -> dict[Colour, int]:
        """Colour -> class id (void colours -> `void`)."""
        return {colour: void if class_id is None else class_id for colour, _, class_id in self.rows}

    def describe(self) -> str:
        void = f", {len(self.void_colours)} of them void" if self.void_colours else ""
        return f"RGB colours through the colour table {self.source} ({len(self.rows)} colours{void})"


def read_colour_table(path: str | Path, option: str = "--mask_colors") -> ColourTable:
    """A colour table file: CSV with a header naming ``name``, ``r``, ``g``, ``b`` (CamVid's
    ``class_dict.csv``) and optionally ``id``; or JSON: ``{"sky": [128, 128, 128], ...}``, a list
    of ``{"name": ..., "color": [r, g, b], "id": ...}``, or ``{"0": {"name": ..., "color": ...}}``.
    An id ``ignore`` marks a colour of void pixels.

    Raises:
        DataError: a missing or malformed file, named with `option`.
    """
    path, text = read_option_file(path, option, "Give a CSV of name,r,g,b rows (as CamVid's class_dict.csv) or JSON "
                                  "{\"sky\": [128, 128, 128], ...}.", encoding="utf-8-sig")
    where = f"{option} {path}"
    rows = _json_rows(text, where) if path.suffix == ".json" or text.lstrip().startswith(("{", "[")) \
        else _csv_rows(text, where)
    if not rows:
        raise DataError(f"{where}: lists no colour.")
    explicit_ids = [row[2] for row in rows]
    if any(value is not None for value in explicit_ids) and not all(value is not None for value in explicit_ids):
        raise DataError(f"{where}: give every row an id, or none (the row order is then the class id).")
    table = tuple((_colour(colour, where), str(name).strip(),
                   index if class_id is None else _class_id(class_id, where))
                  for index, (colour, name, class_id) in enumerate(rows))
    return ColourTable(table, str(path))


def _csv_rows(text: str, where: str) -> list[tuple]:
    reader = csv.DictReader(io.StringIO(text))
    fields = {name.strip().lower(): name for name in reader.fieldnames or []}
    missing = [column for column in ("name", "r", "g", "b") if column not in fields]
    if missing:
        raise DataError(f"{where}: a CSV colour table needs a header with the columns name, r, g, b (and optionally "
                        f"id); it has {reader.fieldnames}.")
    return [((row[fields["r"]], row[fields["g"]], row[fields["b"]]), row[fields["name"]],
             row[fields["id"]] if "id" in fields and row[fields["id"]] not in (None, "") else None)
            for row in reader if any((value or "").strip() for value in row.values())]


def _json_rows(text: str, where: str) -> list[tuple]:
    data = parse_json(text, where)
    if isinstance(data, dict) and all(isinstance(value, list) for value in data.values()):
        return [(colour, name, None) for name, colour in data.items()]  # {"sky": [r, g, b], ...}
    if isinstance(data, dict) and all(isinstance(value, dict) for value in data.values()):
        data = [{"id": key, **value} for key, value in data.items()]  # {"0": {"name": ..., "color": ...}}
    if isinstance(data, list) and all(isinstance(entry, dict) for entry in data):
        try:
            return [(entry.get("color", entry.get("colour")), entry["name"], entry.get("id")) for entry in data]
        except KeyError:
            pass
    raise DataError(f"{where}: expected {{\"sky\": [128, 128, 128], ...}}, or a list of {{\"name\": ..., \"color\": "
                    "[r, g, b], \"id\": ...}}.")


def find_colour_table(folder: Path) -> ColourTable | None:
    """The colour table at a dataset's root (`COLOUR_TABLE_FILES`, first found), if any."""
    for name in COLOUR_TABLE_FILES:
        if (folder / name).is_file():
            return read_colour_table(folder / name, option="the colour table")
    return None


@dataclass(frozen=True)
class MaskReading:
    """How a source's mask files become raw values (see the module): ``index``, ``voc_palette`` or
    ``colour_table`` (with its `table`)."""

    kind: str = "index"
    table: ColourTable | None = None

    @classmethod
    def index(cls) -> "MaskReading":
        return cls("index")

    @classmethod
    def voc_palette(cls) -> "MaskReading":
        return cls("voc_palette")

    @classmethod
    def colours(cls, table: ColourTable) -> "MaskReading":
        return cls("colour_table", table)

    def describe(self) -> str:
        """In words, for the labels line, the card and results.json."""
        if self.kind == "colour_table":
            return self.table.describe()
        if self.kind == "voc_palette":
            return "values as stored (palette PNGs by index), RGB masks through VOC's colour map"
        return "values as stored (8- or 16-bit greyscale, palette PNGs by index), RGB masks only through a colour table"

    def record(self) -> dict[str, Any]:
        """What results.json and the cache key hold (``mask_reading``)."""
        return {"kind": self.kind, "colour_table": None if self.table is None else self.table.source,
                "colours": None if self.table is None else
                {",".join(map(str, colour)): (IGNORED_ID if class_id is None else class_id)
                 for colour, _, class_id in self.table.rows},
                "description": self.describe()}

    def pixels(self, mask: Image.Image, name: str, void: int) -> tuple[np.ndarray | None, MaskProblem | None]:
        """The raw values of a loaded mask (H, W; uint8, or a wider integer type for 16-bit masks),
        or None and what is wrong with it. `void`: what a colour table's void colours become."""
        if mask.format in LOSSY_FORMATS:
            distinct = len(np.unique(np.asarray(mask).reshape(-1, len(mask.getbands())), axis=0))
            return None, MaskProblem("lossy", f"{name}: a {mask.format} mask, lossy ({distinct} distinct values where "
                                              "a mask holds one per class present)")
        mode = mask.mode
        if mode in ("LA", "La", "PA", "RGBA", "RGBa"):
            alpha = np.asarray(mask.getchannel("A"))
            if alpha.min() < 255:
                return None, MaskProblem("unreadable_pixels", f"{name}: {mode} mask with transparent pixels (a mask's "
                                                              "pixels are classes, not a picture to blend)")
            # Opaque: the value band (greyscale, palette index) or the colour is the mask.
            mask = mask.convert("RGB") if mode.startswith("RGB") else mask.getchannel(0)
            mode = mask.mode
        if mode in ("L", "P"):
            return np.asarray(mask, dtype=np.uint8), None
        if mode == "1":
            return np.asarray(mask, dtype=np.uint8), None
        if mode in SIXTEEN_BIT_MODES:
            values = np.asarray(mask)
            if values.size and (values.min() < 0 or values.max() > MAX_RAW_VALUE):
                return None, MaskProblem("unreadable_pixels", f"{name}: {mode} mask with values {values.min()}-"
                                                              f"{values.max()}, beyond 16 bits")
            return values.astype(np.uint16 if values.size and values.max() > MAX_MASK_VALUE else np.uint8), None
        if mode != "RGB":
            return None, MaskProblem("unreadable_pixels", f"{name}: a {mode} mask (neither greyscale, palette nor "
                                                          "RGB)")
        rgb = np.asarray(mask)
        if self.kind == "index":
            grey = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
            hint = (" (its three channels are equal everywhere: if the values are class ids, save it as a greyscale "
                    "PNG)") if grey else ""
            return None, MaskProblem("rgb_without_table", f"{name}: an RGB mask and no colour table says which colour "
                                                          f"is which class{hint}")
        lookup = self.table.lookup(void) if self.table is not None else \
            {colour: index for index, colour in enumerate(voc_palette())}
        return _colours_to_ids(rgb, lookup, name, self)


def _colours_to_ids(rgb: np.ndarray, lookup: dict[Colour, int], name: str, reading: MaskReading
                    ) -> tuple[np.ndarray | None, MaskProblem | None]:
    colours, inverse = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
    known = [tuple(int(channel) for channel in colour) for colour in colours]
    unknown = [colour for colour in known if colour not in lookup]
    if unknown:
        table = f"the colour table {reading.table.source}" if reading.table is not None else "VOC's colour map"
        return None, MaskProblem("unknown_colours", f"{name}: RGB mask with colours that are not in {table}: "
                                                    f"{unknown[:5]}")
    ids = np.array([lookup[colour] for colour in known], dtype=np.uint8)
    return ids[inverse.reshape(-1)].reshape(rgb.shape[:2]), None


__all__ = ["COLOUR_TABLE_FILES", "ColourTable", "MaskProblem", "MaskReading", "PROBLEM_WAYS_OUT", "find_colour_table",
           "read_colour_table"]
