"""Per-image counts of one evaluation: what a confidence interval, a paired comparison, boundary IoU
and calibration are computed from, saved beside the run's record.

Every figure of an evaluation is a sum over images divided by another, so keeping each image's
summands (instead of only the totals) costs little and allows resampling the images. Per image:

- ``intersection``, ``predicted_area``, ``label_area`` ``[N, C]``: the pixels where prediction and
  annotation are both class c, predicted c, annotated c (ignored pixels in none): mean IoU and the
  accuracies, exactly as the run's totals give them;
- ``boundary`` ``[N, 3, C]``: the same three counts over boundary regions (`boundary`);
- ``calibration`` ``[N, 3, bins]``: pixels, summed top-class probability and correct pixels per
  confidence bin (`calibration`);
- ``ids``: each image's id (its row order is the evaluation's, which groups images by shape).

The file (``per_image.npz`` beside results.json; ``<record>.per_image.npz`` beside an
evaluation-only record) is a compressed numpy archive of those arrays plus ``class_names``: about
3 x C numbers per image for IoU, a few hundred KB for 2,000 images at 150 classes.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import RecordError

PER_IMAGE_FILE = "per_image.npz"
ARRAYS = ("intersection", "predicted_area", "label_area", "boundary", "calibration")


def per_image_file(record_file: str | Path) -> Path:
    """Where the per-image counts of the record `record_file` lie: ``per_image.npz`` beside
    results.json, ``<stem>.per_image.npz`` beside an evaluation-only record."""
    record_file = Path(record_file)
    name = PER_IMAGE_FILE if record_file.name == "results.json" else f"{record_file.stem}.{PER_IMAGE_FILE}"
    return record_file.with_name(name)


@dataclass
class PerImageCounts:
    """One evaluation's counts, one row per validation image (see the module docstring)."""

    ids: list[str]
    class_names: list[str]
    intersection: np.ndarray
    predicted_area: np.ndarray
    label_area: np.ndarray
    boundary: np.ndarray
    calibration: np.ndarray

    def __post_init__(self):
        rows = {name: len(getattr(self, name)) for name in ARRAYS}
        if len(set(rows.values()) | {len(self.ids)}) != 1:
            raise ValueError(f"per-image counts of unequal lengths: {len(self.ids)} ids, {rows}")
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("per-image counts name an image twice: every validation image needs its own id")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def union(self) -> np.ndarray:
        """``[N, C]`` per-image union: predicted + annotated - intersection."""
        return self.predicted_area + self.label_area - self.intersection

    def mean_iou(self) -> float:
        """The mean IoU of all images together (what the run reports)."""
        return mean_iou_of(self.intersection.sum(axis=0), self.union.sum(axis=0))

    def aligned_to(self, ids: list[str]) -> PerImageCounts:
        """These counts in the order of `ids` (the same set of images)."""
        position = {image_id: index for index, image_id in enumerate(self.ids)}
        order = np.array([position[image_id] for image_id in ids], dtype=np.int64)
        return PerImageCounts(list(ids), self.class_names,
                              *(getattr(self, name)[order] for name in ARRAYS))

    def save(self, path: str | Path) -> Path:
        """Write the compressed archive; return its path."""
        path = Path(path)
        np.savez_compressed(path, ids=np.array(self.ids, dtype=str), class_names=np.array(self.class_names, dtype=str),
                            **{name: getattr(self, name) for name in ARRAYS})
        return path

    @classmethod
    def load(cls, path: str | Path) -> PerImageCounts:
        """Read an archive `save` wrote (no pickled objects are loaded).

        Raises:
            RecordError: the file is not such an archive (truncated, other bytes, an array missing or
                of object type); the message names it.
        """
        try:
            with np.load(path, allow_pickle=False) as archive:
                return cls(ids=[str(value) for value in archive["ids"]],
                           class_names=[str(value) for value in archive["class_names"]],
                           **{name: archive[name] for name in ARRAYS})
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise RecordError(f"{path} cannot be read as per-image counts ({reason}): it was damaged or replaced. "
                              "Restore it from the run's output folder, or evaluate the model again "
                              "(run_seg.py --do_train false) to write it anew.") from None


def mean_iou_of(intersection: np.ndarray, union: np.ndarray) -> float:
    """NaN-ignoring mean of intersection / union over the last axis (a class with no union is left out)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.nanmean(intersection / union))


__all__ = ["PER_IMAGE_FILE", "PerImageCounts", "mean_iou_of", "per_image_file"]
