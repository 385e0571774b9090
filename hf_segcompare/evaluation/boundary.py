"""Boundary IoU (Cheng et al., CVPR 2021), counted per image so it sums like mean IoU.

The official definition, per class c: the boundary region of the binary mask "pixels of class c" is
the set of its pixels within distance d of a pixel outside it, d = 2 % of the image diagonal (at
least 1 px, ``round``ed), and the image's edge counts as outside: the boundary-iou-api's
``mask_to_boundary`` (pad with one row of background, erode d times with a 3 x 3 kernel, subtract),
whose distance is therefore the chessboard one. Over the whole label map that is one test per pixel:
a pixel of class c is in c's region exactly when the (2d + 1)² window around it holds another value
or reaches past the image, which one dilation of the map's contour pixels finds for every class at
once (box sums by cumulative sums, whatever d): no loop over classes, no erosion per class.

Void (the ignore index) is a value of its own, as in the official semantic-segmentation evaluation
(detectron2's ``SemSegEvaluator`` gives ignored pixels a class id of their own before it finds
boundaries): it is not class c, so c's annotated contour runs along a void band. Pixels annotated
void are counted in no area, as for mean IoU: a prediction's boundary pixel there is neither right
nor wrong. So where VOC draws a void band round every object, the annotated boundary is the band's
inner edge, and a prediction has to draw its edge within d of that to score.

Per image and class three counts come out: the intersection of the annotation's and the
prediction's boundary regions of c, and the area of each. Summed over images, intersection / union
is the class's boundary IoU, so the figure is exact under any split of the images over processes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

BOUNDARY_DILATION_RATIO = 0.02  # the paper's d: 2 % of the image diagonal


def boundary_radius(height: int, width: int, ratio: float = BOUNDARY_DILATION_RATIO) -> int:
    """The paper's d for an image of `height` x `width`: ``round(ratio * diagonal)``, at least 1."""
    return max(1, int(round(ratio * math.hypot(height, width))))


def _contour_pixels(label_map: torch.Tensor) -> torch.Tensor:
    """Boolean ``[h, w]``: pixels with an 8-neighbour of another value (both sides of every contour)."""
    contour = torch.zeros(label_map.shape, dtype=torch.bool, device=label_map.device)
    rest, head, tail = slice(None), slice(1, None), slice(None, -1)
    for this, other in (((rest, head), (rest, tail)), ((head, rest), (tail, rest)),
                        ((head, head), (tail, tail)), ((head, tail), (tail, head))):
        differs = label_map[this] != label_map[other]
        contour[this] |= differs
        contour[other] |= differs
    return contour


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """`mask` dilated by a (2r + 1)² square (chessboard distance r): box sums from cumulative sums,
    one pass per axis, so the cost does not grow with `radius`."""
    if radius <= 0:
        return mask
    dilated = mask.to(torch.int32)
    for axis in (0, 1):
        size = dilated.shape[axis]
        padded = F.pad(dilated.movedim(axis, -1), (radius + 1, radius))
        sums = padded.cumsum(dim=-1)
        dilated = (sums[..., 2 * radius + 1:] - sums[..., :size] > 0).to(torch.int32).movedim(-1, axis)
    return dilated.bool()


def boundary_region(label_map: torch.Tensor, radius: int) -> torch.Tensor:
    """Boolean ``[h, w]``: pixels within `radius` (chessboard) of a pixel of another value or of the
    image's edge, i.e. of their own class's contour.

    A pixel p is within r of a pixel of another value exactly when it is within r - 1 of a pixel
    with an 8-neighbour of another value (on a straight chessboard path from p, the last pixel of
    p's value); and the (2r + 1)² window reaches past the image for the r pixels nearest each edge."""
    height, width = label_map.shape
    region = _dilate(_contour_pixels(label_map), radius - 1)
    region[:radius] = True
    region[max(height - radius, 0):] = True
    region[:, :radius] = True
    region[:, max(width - radius, 0):] = True
    return region


def boundary_counts(prediction: torch.Tensor, reference: torch.Tensor, num_labels: int,
                    ignore_index: int | None, radius: int | None = None) -> torch.Tensor:
    """``[3, C]`` int64 counts of one image (``[h, w]`` maps, already cropped to the image):
    boundary intersection, predicted boundary area, annotated boundary area per class.

    `radius`: d in pixels (default: `boundary_radius` of the map's size)."""
    height, width = reference.shape
    radius = boundary_radius(height, width) if radius is None else radius
    scored = (reference >= 0) if ignore_index is None else (reference != ignore_index) & (reference >= 0)
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
