"""Calibration of the top-class probability: expected calibration error (ECE) over equal-width bins.

Every scored pixel (annotation not ignored) falls in the bin of its top-class softmax probability p,
bin b covering (b/15, (b+1)/15] (p = 0 cannot occur: the top class of C has p >= 1/C). Per image and
bin three numbers are kept: the pixel count, the sum of p, and the number of pixels whose top class
is the annotated one. Summed over images,

    ECE = sum over bins of |correct_b - confidence_sum_b| / total pixels

(= sum_b n_b / N * |accuracy_b - mean confidence_b|, Guo et al. 2017), and the same sums draw the
reliability diagram. Each image's sums are exact (integers), and the images' are added in the
evaluation's order, so one process and several give the same figure.
"""

from __future__ import annotations

import numpy as np
import torch

CALIBRATION_BINS = 15
_CONFIDENCE_UNIT = 2**30


def top_class_probability(logits: torch.Tensor, top: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """The softmax probability of the top class, given `logits` and their maximum `top` along `dim`,
    without materialising the softmax: p_top = 1 / sum(exp(logit - logit_top))."""
    return 1.0 / (logits.float() - top.float().unsqueeze(dim)).exp_().sum(dim=dim)


def calibration_counts(confidence: torch.Tensor, predicted: torch.Tensor, reference: torch.Tensor,
                       ignore_index: int | None, bins: int = CALIBRATION_BINS) -> torch.Tensor:
    """``[3, bins]`` float64 of one image: pixel count, summed top-class probability, correct pixels.

    `confidence`, `predicted`: ``[h, w]`` top-class probability (`top_class_probability`) and class;
    `reference`: ``[h, w]`` annotation (negative values, Trainer's padding, are not scored)."""
    scored = (reference >= 0) if ignore_index is None else (reference != ignore_index) & (reference >= 0)
    confidence, correct = confidence[scored].to(torch.float64), (predicted[scored] == reference[scored])
    index = (torch.ceil(confidence * bins).long() - 1).clamp_(0, bins - 1)
    count = torch.bincount(index, minlength=bins)
    # Summed as integers (units of 2^-30, far below float32's resolution of p): exact and in any
    # order the same, where a GPU's float atomics are not.
    quantized = torch.round(confidence * _CONFIDENCE_UNIT).long()
    confidence_sum = torch.zeros(bins, dtype=torch.int64, device=confidence.device).index_add_(0, index, quantized)
    correct_sum = torch.bincount(index[correct], minlength=bins)
    return torch.stack([count.double(), confidence_sum.double() / _CONFIDENCE_UNIT, correct_sum.double()])


def expected_calibration_error(counts: np.ndarray) -> float:
    """ECE from ``[3, bins]`` summed counts (NaN when no pixel was scored)."""
    count, confidence_sum, correct = np.asarray(counts, dtype=np.float64)
    total = count.sum()
    return float(np.abs(correct - confidence_sum).sum() / total) if total else float("nan")


def reliability(counts: np.ndarray) -> dict[str, list]:
    """The reliability diagram's data from summed counts: per bin its pixels, mean confidence and
    accuracy (None for an empty bin), as results.json records it."""
    count, confidence_sum, correct = np.asarray(counts, dtype=np.float64)
    bins = len(count)
    with np.errstate(divide="ignore", invalid="ignore"):
        confidence, accuracy = confidence_sum / count, correct / count
    return {
        "bin_edges": [index / bins for index in range(bins + 1)],
        "pixels": [int(value) for value in count],
        "mean_confidence": [float(value) if n else None for value, n in zip(confidence, count)],
        "accuracy": [float(value) if n else None for value, n in zip(accuracy, count)],
        "ece": expected_calibration_error(counts),
    }


__all__ = ["CALIBRATION_BINS", "calibration_counts", "expected_calibration_error", "reliability",
           "top_class_probability"]
