"""Label sets: the class names a model predicts and the mask value that is ignored.

This module sits at the bottom of the import graph (standard library only): models, metrics and
data all take their labels from here, so no model or metric imports the data package. A dataset's
label set is read from the data (`hf_segcompare.data.label_source`); Pascal VOC's is one of them.

Masks are stored as 8-bit PNGs, so every mask value, the ignored one included, lies in 0-255.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

IGNORE_INDEX = 255
"""Mask value of VOC's "void" pixels (object boundaries, hard regions): ignored by loss and metric."""
MAX_MASK_VALUE = 255  # masks are 8-bit

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


@dataclass(frozen=True)
class LabelSet:
    """What a segmentation dataset's masks mean: class ``i`` is ``names[i]``; `ignore_index` is void.

    `ignore_index` None means the data has no void label (every mask value is a class, as evaluate's
    ``mean_iou(ignore_index=None)``). Padding still needs a value that loss and metric skip:
    `void` is 255 then, a value validation guarantees no mask of such a set holds.
    """

    names: tuple[str, ...]
    ignore_index: int | None = IGNORE_INDEX

    def __post_init__(self):
        object.__setattr__(self, "names", tuple(str(name) for name in self.names))
        if not self.names:
            raise ValueError("a label set needs at least one class name")
        _require_unique(self.names)
        if self.ignore_index is not None and 0 <= self.ignore_index < len(self.names):
            raise ValueError(
                f"ignore_index {self.ignore_index} is also the id of class {self.names[self.ignore_index]!r}"
            )
        if self.ignore_index is None and len(self.names) > MAX_MASK_VALUE:
            raise ValueError(f"{len(self.names)} classes and no ignore index leave no 8-bit mask value for padding: "
                             "at most 255 classes without an ignore index")

    @property
    def num_labels(self) -> int:
        return len(self.names)

    @property
    def id2label(self) -> dict[int, str]:
        """Class id -> name, as every model config carries it."""
        return dict(enumerate(self.names))

    @property
    def void(self) -> int:
        """The value padding takes and loss and metric skip: `ignore_index`, or 255 for a set without one."""
        return MAX_MASK_VALUE if self.ignore_index is None else self.ignore_index

    def is_valid(self, value: int) -> bool:
        """Whether a mask may hold `value`: a class id, or the ignored value."""
        return 0 <= value < self.num_labels or value == self.ignore_index

    def describe_classes(self, shown: int = 6) -> str:
        """The classes in a few words, for messages: ``3 classes (0 cat, 1 dog, 2 bird)``."""
        pairs = [f"{index} {name}" for index, name in enumerate(self.names)]
        if len(pairs) > shown:
            pairs = pairs[: shown - 1] + ["...", pairs[-1]]
        return f"{self.num_labels} classes ({', '.join(pairs)})"

    def describe(self, shown: int = 6) -> str:
        """The set in a few words, for messages: ``3 classes (0 cat, 1 dog, 2 bird), 255 ignored``."""
        ignored = "no ignore index" if self.ignore_index is None else f"{self.ignore_index} ignored"
        return f"{self.describe_classes(shown)}, {ignored}"

    @classmethod
    def from_id2label(cls, id2label: Mapping, ignore_index: int | None = IGNORE_INDEX,
                      where: str = "id2label") -> "LabelSet":
        """The set an ``{id: name}`` mapping names (see `names_by_id`).

        Raises:
            ValueError: ids that are not 0, 1, ... or names that repeat; the message names `where`.
        """
        try:
            return cls(names_by_id(id2label, where), ignore_index)
        except ValueError as error:
            message = str(error)
            raise ValueError(message if message.startswith(where) else f"{where}: {message}") from None


def names_by_id(id2label: Mapping, where: str = "id2label") -> tuple[str, ...]:
    """The names of an ``{id: name}`` mapping in id order (keys may be strings, as in JSON). The ids
    must be 0, 1, ... without a gap, since a class id is the model's output channel, and no name may
    repeat (each class is reported as ``eval_iou_<name>``).

    Raises:
        ValueError: the message names `where` and what is wrong.
    """
    try:
        by_id = {int(key): str(name) for key, name in id2label.items()}
    except (TypeError, ValueError):
        raise ValueError(f"{where}: the keys must be class ids (0, 1, ...), not {list(id2label)[:5]}") from None
    missing = sorted(set(range(len(by_id))) - set(by_id))
    if missing:
        raise ValueError(f"{where}: class ids must run from 0 without a gap; {missing[:10]} are missing "
                         f"among {len(by_id)} entries")
    names = tuple(by_id[index] for index in range(len(by_id)))
    _require_unique(names, f"{where}: ")
    return names


def _require_unique(names: tuple[str, ...], where: str = "") -> None:
    # Each class is reported as eval_iou_<name>: two classes of one name would overwrite each other.
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{where}class names must be unique; {duplicates[:5]} name more than one class")


VOC_LABELS = LabelSet(VOC_CLASSES, IGNORE_INDEX)


def label_config(id2label: dict[int, str], ignore_index: int = IGNORE_INDEX) -> dict:
    """The label fields of a transformers config: id2label, label2id, and the loss's ignore index."""
    return {"id2label": dict(id2label), "label2id": {name: index for index, name in id2label.items()},
            "semantic_loss_ignore_index": ignore_index}


__all__ = ["IGNORE_INDEX", "LabelSet", "MAX_MASK_VALUE", "VOC_CLASSES", "VOC_LABELS", "label_config", "names_by_id"]
