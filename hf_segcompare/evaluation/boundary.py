"""Boundary IoU (Cheng et al., CVPR 2021), counted per image so it sums like mean IoU.

For each class c, the boundary region of a binary mask is the set of its pixels within distance d
of its contour, d = 2 % of the image diagonal (at least 1 px), and the image's edge counts as
contour: the definition of the paper's reference code (``mask_to_boundary``: pad with one row of
background, erode d times with a 3 x 3 kernel, subtract), whose distance is therefore the
chessboard one. A pixel of class c is such a pixel exactly when the (2d + 1)² window around it holds
another value or reaches past the image, which two separable max/min pools over the label map find
for every class at once: no loop over classes, no erosion per class.

Per image and class three counts come out: the intersection of the annotation's and the
prediction's boundary regions of c, and the area of each. Pixels whose annotation is ignored are
counted in none, as for mean IoU, and the annotation takes the prediction's value there before its
contours are found: VOC's void band is where the true edge is unknown, so any edge the prediction
draws inside it is right (treated as a class of its own instead, the band would move every
annotated contour a few pixels off the object's, and even a prediction perfect on every scored
pixel would score below 1). Summed over images, intersection / union is the class's boundary IoU,
so the figure is exact under any split of the images over processes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

BOUNDARY_DILATION_RATIO = 0.02  # the paper's d: 2 % of the image diagonal
# A value no map holds: the window reaching past the image sees it, so edge pixels are boundary.
_OUTSIDE = -1.0e6


def boundary_radius(height: int, width: int, ratio: float = BOUNDARY_DILATION_RATIO) -> int:
    """The paper's d for an image of `height` x `width`: ``round(ratio * diagonal)``, at least 1."""
    return max(1, int(round(ratio * math.hypot(height, width))))


def _window_extremes(values: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Max and min of ``[h, w]`` `values` over each (2r + 1)² window, outside the image `_OUTSIDE`
    (two 1-D pools each: a square window's extreme is the extreme of its rows' extremes)."""
    padded = F.pad(values[None, None], (radius, radius, radius, radius), value=_OUTSIDE)
    size = 2 * radius + 1

    def pool(tensor):
        return F.max_pool2d(F.max_pool2d(tensor, (1, size), stride=1), (size, 1), stride=1)

    return pool(padded)[0, 0], -pool(-padded)[0, 0]


def boundary_region(label_map: torch.Tensor, radius: int) -> torch.Tensor:
    """Boolean ``[h, w]``: pixels within `radius` (chessboard) of a pixel of another value or of the
    image's edge, i.e. of their own class's contour."""
    values = label_map.to(torch.float32)
    highest, lowest = _window_extremes(values, radius)
    return (highest != values) | (lowest != values)


def boundary_counts(prediction: torch.Tensor, reference: torch.Tensor, num_labels: int,
                    ignore_index: int | None, radius: int | None = None) -> torch.Tensor:
    """``[3, C]`` int64 counts of one image (``[h, w]`` maps, already cropped to the image):
    boundary intersection, predicted boundary area, annotated boundary area per class.

    `radius`: d in pixels (default: `boundary_radius` of the map's size)."""
    height, width = reference.shape
    radius = boundary_radius(height, width) if radius is None else radius
    scored = (reference >= 0) if ignore_index is None else (reference != ignore_index) & (reference >= 0)
    reference = torch.where(scored, reference, prediction.to(reference.dtype))  # an ignored pixel has no edge of its own
    reference_edge = boundary_region(reference, radius) & scored & (reference < num_labels)
    prediction_edge = boundary_region(prediction, radius) & scored & (prediction >= 0) & (prediction < num_labels)
    both = reference_edge & prediction_edge & (reference == prediction)
    counts = [torch.bincount(values.reshape(-1), minlength=num_labels)[:num_labels]
              for values in (reference[both], prediction[prediction_edge], reference[reference_edge])]
    return torch.stack(counts).to(torch.int64)


def boundary_iou(counts: np.ndarray) -> tuple[float, np.ndarray]:
    """(mean, per-class) boundary IoU from ``[3, C]`` summed counts; a class with no boundary pixel in
    either map is NaN and left out of the mean."""
    counts = np.asarray(counts, dtype=np.float64)
    intersection, predicted, annotated = counts
    union = predicted + annotated - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        per_class = intersection / union
    mean = float(np.nanmean(per_class)) if np.isfinite(per_class).any() else float("nan")
    return mean, per_class


__all__ = ["BOUNDARY_DILATION_RATIO", "boundary_counts", "boundary_iou", "boundary_radius", "boundary_region"]
