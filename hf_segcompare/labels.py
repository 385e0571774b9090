"""Label sets: the class names a model predicts and the mask value that is ignored.

This module sits at the bottom of the import graph (standard library only): models, metrics and
data all take their labels from here, so no model or metric imports the data package. Pascal VOC's
set is the default; a dataset with other classes carries its own `LabelSet`.
"""

from __future__ import annotations

from dataclasses import dataclass

IGNORE_INDEX = 255
"""Mask value of VOC's "void" pixels (object boundaries, hard regions): ignored by loss and metric."""

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


@dataclass(frozen=True)
class LabelSet:
    """What a segmentation dataset's masks mean: class ``i`` is ``names[i]``; `ignore_index` is void."""

    names: tuple[str, ...]
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self):
        if not self.names:
            raise ValueError("a label set needs at least one class name")
        if 0 <= self.ignore_index < len(self.names):
            raise ValueError(
                f"ignore_index {self.ignore_index} is also the id of class {self.names[self.ignore_index]!r}"
            )

    @property
    def num_labels(self) -> int:
        return len(self.names)

    @property
    def id2label(self) -> dict[int, str]:
        """Class id -> name, as every model config carries it."""
        return dict(enumerate(self.names))


VOC_LABELS = LabelSet(VOC_CLASSES, IGNORE_INDEX)


def label_config(id2label: dict[int, str], ignore_index: int = IGNORE_INDEX) -> dict:
    """The label fields of a transformers config: id2label, label2id, and the loss's ignore index."""
    return {"id2label": dict(id2label), "label2id": {name: index for index, name in id2label.items()},
            "semantic_loss_ignore_index": ignore_index}


__all__ = ["IGNORE_INDEX", "LabelSet", "VOC_CLASSES", "VOC_LABELS", "label_config"]
