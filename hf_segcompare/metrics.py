"""Mean IoU by accumulated confusion matrices, wired into `Trainer` without keeping predictions.

Semantics (those of `evaluate`'s ``mean_iou``): intersection, union, predicted area and label
area are totalled over the whole evaluation set, not averaged per image; pixels whose reference is
``ignore_index`` (255) are dropped; a class whose union is zero (in neither prediction nor
reference) gets NaN and is left out of the means.

- ``per_category_iou[c]``      = intersection_c / union_c
- ``per_category_accuracy[c]`` = intersection_c / label_area_c
- ``mean_iou`` / ``mean_accuracy`` = NaN-ignoring means of the two arrays
- ``overall_accuracy``         = total intersection / total label area

How it reaches `Trainer` (decision 1 of DESIGN.md): `preprocess_logits_for_metrics` turns each
batch of logits into per-sample confusion matrices ``[B, C, C]`` (rows = reference, columns =
prediction). Trainer gathers those across processes — `gather_for_metrics` trims the duplicated
tail samples along dim 0, which is why they stay per sample — and with ``batch_eval_metrics=True``
hands every gathered batch to `StreamingMeanIoU`, which sums them. Memory is O(C^2) per image,
whatever the size of the validation set or the number of processes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .data.voc import IGNORE_INDEX

TRAINER_PAD_INDEX = -100  # what Trainer pads labels with when it aligns shapes across processes


def confusion_matrices(predictions: torch.Tensor, references: torch.Tensor, num_labels: int,
                       ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Per-sample confusion matrices ``[B, num_labels, num_labels]`` (int64, rows = reference).

    Pixels whose reference is `ignore_index`, Trainer's -100 padding, or outside
    ``[0, num_labels)`` are not counted. Runs on the device of the inputs with one `bincount`.
    """
    batch_size = predictions.shape[0]
    predictions = predictions.reshape(batch_size, -1).long()
    references = references.reshape(batch_size, -1).long()
    valid = (references != ignore_index) & (references >= 0) & (references < num_labels)
    sample_index = torch.arange(batch_size, device=references.device)[:, None].expand_as(references)
    flat = (sample_index * num_labels + references) * num_labels + predictions
    counts = torch.bincount(flat[valid], minlength=batch_size * num_labels * num_labels)
    return counts.reshape(batch_size, num_labels, num_labels)


def scores_from_confusion(confusion: np.ndarray) -> dict[str, np.ndarray | float]:
    """evaluate-compatible scores from a summed ``[C, C]`` confusion matrix (rows = reference)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    intersection = np.diag(confusion)
    label_area = confusion.sum(axis=1)
    prediction_area = confusion.sum(axis=0)
    union = label_area + prediction_area - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = intersection / union
        accuracy = intersection / label_area
        overall_accuracy = intersection.sum() / label_area.sum()
    # evaluate divides 0/0 for a class absent from both sides: NaN, which nanmean skips.
    return {
        "mean_iou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        "mean_accuracy": float(np.nanmean(accuracy)) if np.isfinite(accuracy).any() else float("nan"),
        "overall_accuracy": float(overall_accuracy),
        "per_category_iou": iou,
        "per_category_accuracy": accuracy,
    }


class SegmentationMetrics:
    """The pair of callables `Trainer` needs for streaming mean IoU.

    Use ``preprocess_logits_for_metrics=metrics.preprocess_logits`` and
    ``compute_metrics=metrics.compute`` with ``batch_eval_metrics=True``. `compute` sums the
    gathered per-sample matrices of each batch and returns the scores on the last batch; it
    also accepts the whole stacked set at once (``batch_eval_metrics=False``).
    """

    def __init__(self, class_names: Sequence[str], ignore_index: int = IGNORE_INDEX):
        self.class_names = list(class_names)
        self.num_labels = len(self.class_names)
        self.ignore_index = ignore_index
        self._total: torch.Tensor | None = None

    def preprocess_logits(self, logits, labels: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C, h, w]`` -> per-sample confusion matrices ``[B, C, C]``."""
        if isinstance(logits, (tuple, list)):  # models that also return hidden states
            logits = logits[0]
        if logits.shape[-2:] != labels.shape[-2:]:
            # SegFormer and ViT predict at a fraction of the input size; score at label resolution.
            logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
        return confusion_matrices(logits.argmax(dim=1), labels, self.num_labels, self.ignore_index)

    def compute(self, eval_prediction, compute_result: bool = True) -> dict[str, float]:
        """Accumulate one (gathered) batch of matrices; on the last batch return the scores and reset."""
        matrices = torch.as_tensor(eval_prediction.predictions)
        batch_total = matrices.reshape(-1, self.num_labels, self.num_labels).sum(dim=0).cpu()
        self._total = batch_total if self._total is None else self._total + batch_total
        if not compute_result:
            return {}
        total, self._total = self._total.numpy(), None
        scores = scores_from_confusion(total)
        metrics = {key: scores[key] for key in ("mean_iou", "mean_accuracy", "overall_accuracy")}
        for name, value in zip(self.class_names, scores["per_category_iou"]):
            metrics[f"iou_{name}"] = float(value)
        return metrics
