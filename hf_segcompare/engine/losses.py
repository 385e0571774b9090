"""Training losses beyond the models' own cross-entropy, and class weights for imbalanced classes.

`SegmentationLoss` is what ``--loss`` and ``--class_weights`` build: cross-entropy (torch's, with
its ``weight``), or segmentation-models-pytorch's Dice, Focal and Lovász losses, or cross-entropy
plus Dice, all ignoring the label set's void value. SegFormer's logits come at a quarter of the
input's size: they are upsampled to the labels' size first (bilinear, as SegFormer's own loss
does), so every model is trained on the same objective.

`median_frequency_weights` is Eigen & Fergus's "median frequency balancing" (ICCV 2015), the
``balanced`` choice: a class's frequency is its pixels over the pixels of the training images it
appears in, and its weight the median frequency over that frequency.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import UsageError

LOSSES = ("ce", "dice", "focal", "lovasz", "ce+dice")
# smp's Lovász-softmax takes no class weights.
WEIGHTED_LOSSES = ("ce", "dice", "focal", "ce+dice")


def check_loss(name: str, weighted: bool) -> None:
    """Raise `UsageError` for an unknown loss, or for class weights (`weighted`) with one that cannot take them."""
    if name not in LOSSES:
        raise UsageError(f"--loss {name}: choose one of {', '.join(LOSSES)}.")
    if weighted and name not in WEIGHTED_LOSSES:
        raise UsageError(f"--loss {name} takes no class weights (smp's Lovász-softmax has none): pass "
                         f"--class_weights none, or one of --loss {', '.join(WEIGHTED_LOSSES)}.")


def check_class_weights_choice(choice: str | Path) -> None:
    """Raise `UsageError` for a ``--class_weights`` that is neither ``none``, ``balanced`` nor a file."""
    if str(choice) not in ("none", "balanced") and not Path(choice).is_file():
        raise UsageError(f"--class_weights {choice}: no such file. Pass none, balanced, or a JSON file: a list of "
                         "one weight per class in id order, or {\"class name\": weight, ...}.")


class SegmentationLoss:
    """``loss(logits, labels)``: the mean loss of a batch, `ignore_index` pixels left out.

    Args:
        name: one of `LOSSES`.
        ignore_index: the mask value no loss is computed on (None: every value is a class).
        class_weights: one weight per class (None: all equal).

    Raises:
        UsageError: an unknown name, or class weights with a loss that cannot take them.
    """

    def __init__(self, name: str, ignore_index: int | None, class_weights: list[float] | None = None):
        check_loss(name, weighted=class_weights is not None)
        self.name = name
        self.ignore_index = ignore_index
        self.class_weights = None if class_weights is None else [float(weight) for weight in class_weights]
        self._terms = [self._term(part) for part in name.split("+")]

    def _term(self, part: str):
        import segmentation_models_pytorch.losses as smp_losses

        weights = self.class_weights
        if part == "ce":
            weight = None if weights is None else torch.tensor(weights)
            ignore = -100 if self.ignore_index is None else self.ignore_index

            def cross_entropy(logits, labels):
                return nn.functional.cross_entropy(logits, labels, ignore_index=ignore,
                                                   weight=None if weight is None else weight.to(logits.device))
            return cross_entropy
        if part == "dice":
            return smp_losses.DiceLoss("multiclass", ignore_index=self.ignore_index, class_weights=weights)
        if part == "focal":
            return smp_losses.FocalLoss("multiclass", ignore_index=self.ignore_index, class_weights=weights)
        return smp_losses.LovaszLoss("multiclass", ignore_index=self.ignore_index)

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.shape[-2:] != labels.shape[-2:]:
            logits = nn.functional.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
        labels = labels.long()
        # float32 whatever the autocast: Dice and Focal sum over many pixels
        logits = logits.float()
        return sum(term(logits, labels) for term in self._terms)

    def record(self) -> dict:
        """What results.json and the card say of it."""
        return {"name": self.name, "class_weights": self.class_weights}


def median_frequency_weights(pixel_counts: np.ndarray, image_pixels: np.ndarray) -> list[float]:
    """Median-frequency weights from each class's annotated pixels (`pixel_counts`) and the pixels
    of the images holding it (`image_pixels`), both ``[C]``. A class no training image holds gets
    1.0 (the median class's weight): it is never a target, and a weight of 0 would stop the losses
    that score every class (Focal, Dice) from pushing its predictions down."""
    present = pixel_counts > 0
    if not present.any():
        raise UsageError("--class_weights balanced: the training masks annotate no class.")
    frequency = np.where(present, pixel_counts / np.maximum(image_pixels, 1), np.nan)
    median = np.nanmedian(frequency)
    return [float(median / value) if present[index] else 1.0 for index, value in enumerate(frequency)]


def count_class_pixels(masks: Iterable[np.ndarray], num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Per class: its annotated pixels over `masks`, and the annotated pixels of the masks it appears
    in (void, and any value beyond the classes, counts in neither)."""
    pixel_counts = np.zeros(num_classes, dtype=np.int64)
    image_pixels = np.zeros(num_classes, dtype=np.int64)
    for mask in masks:
        counts = np.bincount(np.asarray(mask, dtype=np.uint8).ravel(), minlength=256)[:num_classes]
        pixel_counts += counts
        image_pixels[counts > 0] += counts.sum()
    return pixel_counts, image_pixels


def read_class_weights(path: str | Path, class_names: list[str]) -> list[float]:
    """A ``--class_weights FILE``: JSON, a list of one weight per class in id order, or an object
    {class name: weight} naming every class.

    Raises:
        UsageError: a missing or unreadable file, a wrong count, unknown or missing names, or a
            weight that is not a finite number >= 0.
    """
    path = Path(path)
    check_class_weights_choice(path)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UsageError(f"--class_weights {path}: not valid JSON ({error}).") from None
    if isinstance(values, dict):
        unknown = sorted(set(values) - set(class_names))
        missing = [name for name in class_names if name not in values]
        if unknown or missing:
            raise UsageError(f"--class_weights {path}: " + "; ".join(
                part for part in (f"unknown classes {unknown}" if unknown else "",
                                  f"no weight for {missing}" if missing else "") if part)
                + f". The classes are {class_names}.")
        values = [values[name] for name in class_names]
    if not isinstance(values, list) or len(values) != len(class_names):
        raise UsageError(f"--class_weights {path}: expected {len(class_names)} weights (one per class, in id "
                         f"order) or {{\"class name\": weight, ...}}.")
    if not all(isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
               and value >= 0 for value in values):
        raise UsageError(f"--class_weights {path}: every weight must be a finite number >= 0.")
    if not any(values):
        raise UsageError(f"--class_weights {path}: the weights are all 0, which trains nothing.")
    return [float(value) for value in values]


def class_weights_of(choice: str, train_dataset, labels) -> tuple[list[float] | None, str | None]:
    """The weights ``--class_weights`` names for a training set with `labels` (a `LabelSet`), and
    where they came from: ``none``, ``balanced`` (counted from its ``label`` column, the masks as
    cached: class ids), or a JSON file (`read_class_weights`)."""
    from ..data.masks import mask_to_array

    if choice == "none":
        return None, None
    names = list(labels.names)
    if choice != "balanced":
        return read_class_weights(choice, names), str(choice)
    masks = (mask_to_array(row["label"]) for row in train_dataset.select_columns(["label"]))
    pixel_counts, image_pixels = count_class_pixels(masks, len(names))
    return median_frequency_weights(pixel_counts, image_pixels), (
        f"median frequency balancing over the {len(train_dataset)} training masks, "
        f"{int(pixel_counts.sum()):,} annotated pixels")
