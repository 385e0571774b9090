"""Mean IoU with the semantics of `evaluate`'s ``mean_iou``, by accumulated confusion matrices.

Semantics (those of `evaluate`'s ``metrics/mean_iou``, which follows mmsegmentation, with one
difference in 1.):

1. ``label_map`` ({old: new}) remaps reference values, every mapping reading the *original*
   labels (no chaining; evaluate applies its entries one after another, so a swap chains there —
   evaluate's PR #810 proposes what is done here).
2. ``reduce_labels`` then turns reference 0 into 255 and lowers every other value by one (255
   stays 255): for data sets whose 0 means "background, not a class" (e.g. ADE20K).
3. Pixels whose reference equals ``ignore_index`` are dropped, prediction included (``None``: none
   are, as evaluate's ``ignore_index=None``).
4. Areas are totalled over the whole set, not averaged per image: intersection (prediction ==
   reference), predicted area, label area. Values outside ``[0, num_labels)`` count in neither
   histogram: a prediction of 30 still counts in its reference's label area, a reference of 30
   (not ignored) still counts in its prediction's predicted area.
5. ``per_category_iou`` = intersection / union and ``per_category_accuracy`` = intersection /
   label area; a class whose denominator is zero (for IoU: in neither prediction nor reference)
   is NaN. ``mean_iou`` and ``mean_accuracy`` are NaN-ignoring means; ``overall_accuracy`` is
   total intersection / total label area.
6. ``nan_to_num``, when given, replaces NaN in every returned value (as evaluate does; in
   practice only the per-category arrays hold NaN unless no pixel was scored at all).

Every statistic above is a sum over pixels of a function of the (reference, prediction) pair, so
a confusion matrix with one extra row/column for "outside [0, num_labels)" holds all of them:
``(num_labels + 1) x (num_labels + 1)``, rows = reference. Nothing else is kept.

Three ways in:

- `mean_iou(predictions, references, ...)`: lists of arrays in, evaluate's dict out.
- ``evaluate.load(MEAN_IOU_MODULE)``: the same as an `evaluate.Metric`, for where
  ``evaluate.load("mean_iou")`` cannot reach the Hub. Its `add_batch` accumulates a joint
  histogram of raw (reference, prediction) values, so the compute-time arguments still apply.
- `SegmentationMetrics` for `Trainer`: `preprocess_logits_for_metrics` turns each batch of
  logits into per-sample confusion matrices ``[B, C+1, C+1]``: one torch `bincount` on a GPU,
  numpy's byte-pair count on the CPU. Trainer gathers those across processes — `gather_for_metrics`
  trims the duplicated tail samples along dim 0, which is why they stay per sample — and with
  ``batch_eval_metrics=True`` `compute` sums them. Memory is O(C^2) per image, whatever the size
  of the validation set or the number of processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..labels import IGNORE_INDEX
from .boundary import boundary_counts, boundary_iou
from .calibration import CALIBRATION_BINS, calibration_counts, expected_calibration_error, top_class_probability

TRAINER_PAD_INDEX = -100  # what Trainer pads labels with when it aligns shapes across processes
MEAN_IOU_MODULE = str(Path(__file__).parent / "evaluate_modules" / "mean_iou.py")
"""Path for ``evaluate.load(MEAN_IOU_MODULE)``: this metric as an `evaluate` module, no Hub needed."""


def reduce_reference_labels(values: np.ndarray) -> np.ndarray:
    """evaluate's ``reduce_labels``: 0 -> 255, v -> v - 1, and 255 stays 255."""
    reduced = np.where(values == 0, 255, values - 1)
    return np.where(reduced == 254, 255, reduced)


def remap_references(values: np.ndarray, label_map: dict | None, reduce_labels: bool) -> np.ndarray:
    """Apply ``label_map`` to the original values, then ``reduce_labels``.

    evaluate applies ``label_map`` entry by entry to the already-mapped array, so there a swap
    ``{0: 1, 1: 0}`` chains (every 0 and 1 ends up 0); here it swaps (evaluate's PR #810 proposes
    the same). Every other case gives evaluate's numbers.
    """
    if label_map:
        original = values
        values = values.copy()
        for old, new in label_map.items():
            values[original == old] = new
    return reduce_reference_labels(values) if reduce_labels else values


def _bin(values, num_labels: int):
    """Class index, or `num_labels` for "outside [0, num_labels)" (numpy or torch)."""
    where = torch.where if isinstance(values, torch.Tensor) else np.where
    return where((values >= 0) & (values < num_labels), values, num_labels)


def confusion_matrices(predictions: torch.Tensor, references: torch.Tensor, num_labels: int,
                       ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    """Per-sample confusion matrices ``[B, C+1, C+1]`` (int64), counted where the inputs are.

    Pixels whose reference is `ignore_index` (None: no value) or Trainer's -100 padding are not counted. On a GPU
    the counting stays on the device (one `torch.bincount`); on the CPU, maps whose values fit in a
    byte (VOC's) take numpy's byte-pair count, about three times faster than torch's there.
    """
    if predictions.device.type == "cpu" and references.device.type == "cpu":
        predictions_array, references_array = predictions.numpy(), references.numpy()
        if _fits_in_a_byte(predictions_array) and _fits_in_a_byte(references_array):
            return torch.from_numpy(np.stack([
                _byte_pair_confusion(prediction, reference, num_labels, ignore_index)
                for prediction, reference in zip(predictions_array, references_array)
            ]))
    return torch_confusion_matrices(predictions, references, num_labels, ignore_index)


def torch_confusion_matrices(predictions: torch.Tensor, references: torch.Tensor, num_labels: int,
                             ignore_index: int | None = IGNORE_INDEX) -> torch.Tensor:
    """`confusion_matrices` by one `torch.bincount` on the inputs' device, for any integer values."""
    batch_size, size = predictions.shape[0], num_labels + 1
    if references.dtype not in (torch.int32, torch.int64):
        # In uint8 labels, -100 and an ignore index of -1 would wrap to 156 and 255 and silently
        # drop (or ignore) real values: compare in a type that holds them all.
        references = references.to(torch.int64)
    references = references.reshape(batch_size, -1)
    predictions = predictions.reshape(batch_size, -1)
    cells = batch_size * size * size
    # int32 codes (ample for B * (C+1)^2), and ignored pixels sent to one extra bin rather than
    # removed by boolean indexing: two fewer full-size copies per batch.
    offsets = torch.arange(batch_size, device=references.device, dtype=torch.int32)[:, None] * (size * size)
    codes = (
        offsets + _bin(references, num_labels).to(torch.int32) * size + _bin(predictions, num_labels).to(torch.int32)
    )
    ignored = references == TRAINER_PAD_INDEX
    if ignore_index is not None:
        ignored |= references == ignore_index
    codes = codes.masked_fill_(ignored, cells)
    counts = torch.bincount(codes.reshape(-1), minlength=cells + 1)[:cells]
    return counts.reshape(batch_size, size, size)


def _byte_pair_confusion(prediction: np.ndarray, reference: np.ndarray, num_labels: int,
                         ignore_index: int | None) -> np.ndarray:
    """One ``[C+1, C+1]`` matrix of two maps with values in [0, 255]: count the 256 x 256 value
    pairs, then fold the values into their class bins (the ignored reference value dropped)."""
    codes = (reference.astype(np.uint16) << 8) | prediction.astype(np.uint16)
    pairs = np.bincount(codes.ravel(), minlength=256 * 256).reshape(256, 256)
    if ignore_index is not None and 0 <= ignore_index <= 255:  # -100 (Trainer's padding) cannot occur in a byte
        pairs[ignore_index] = 0
    size = num_labels + 1
    bins = _bin(np.arange(256), num_labels)
    by_reference = np.zeros((size, 256), dtype=np.int64)
    np.add.at(by_reference, bins, pairs)
    confusion = np.zeros((size, size), dtype=np.int64)
    np.add.at(confusion.T, bins, by_reference.T)
    return confusion


def scores_from_confusion(confusion: np.ndarray, nan_to_num: float | None = None) -> dict[str, np.ndarray | float]:
    """evaluate's mean_iou dict from a summed ``[C+1, C+1]`` confusion matrix (rows = reference)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    num_labels = confusion.shape[0] - 1
    return scores_from_areas(np.diag(confusion)[:num_labels], confusion[:, :num_labels].sum(axis=0),
                             confusion[:num_labels, :].sum(axis=1), nan_to_num)


def scores_from_areas(intersection: np.ndarray, prediction_area: np.ndarray, label_area: np.ndarray,
                      nan_to_num: float | None = None) -> dict[str, np.ndarray | float]:
    """evaluate's mean_iou dict from per-class pixel counts summed over images: where prediction and
    annotation are both the class, where it is predicted, where it is annotated (ignored pixels in none)."""
    intersection, prediction_area, label_area = (np.asarray(counts, dtype=np.float64)
                                                 for counts in (intersection, prediction_area, label_area))
    union = label_area + prediction_area - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = intersection / union
        accuracy = intersection / label_area
        overall_accuracy = intersection.sum() / label_area.sum()
    scores = {
        "mean_iou": _nanmean(iou),
        "mean_accuracy": _nanmean(accuracy),
        "overall_accuracy": float(overall_accuracy),
        "per_category_iou": iou,
        "per_category_accuracy": accuracy,
    }
    if nan_to_num is not None:
        scores = {key: np.nan_to_num(value, nan=nan_to_num) for key, value in scores.items()}
        scores.update({key: float(scores[key]) for key in ("mean_iou", "mean_accuracy", "overall_accuracy")})
    return scores


def _nanmean(values: np.ndarray) -> float:
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


class JointHistogram:
    """Counts of raw (reference value, prediction value) pairs: enough to apply any ``label_map``,
    ``reduce_labels``, ``ignore_index`` and ``num_labels`` afterwards.

    Maps whose values fit in a byte (VOC's uint8 masks and predictions) take the fast path: one
    ``bincount`` of ``reference << 8 | prediction`` into a dense 256 x 256 table, with no masking
    or int64 copies; anything else goes to a sparse table of the pairs that occur.
    """

    def __init__(self):
        self.dense = np.zeros(256 * 256, dtype=np.int64)
        self.sparse: dict[tuple[int, int], int] = {}

    def update(self, predictions, references) -> None:
        """Add one map pair (any integer dtype, any shape, same shape)."""
        predictions, references = np.asarray(predictions), np.asarray(references)
        if predictions.shape != references.shape:
            raise ValueError(
                f"prediction of shape {predictions.shape} and reference of shape {references.shape} differ"
            )
        if predictions.size == 0:
            return
        if _fits_in_a_byte(predictions) and _fits_in_a_byte(references):
            codes = (references.astype(np.uint16) << 8) | predictions.astype(np.uint16)
            self.dense += np.bincount(codes.ravel(), minlength=256 * 256)
            return
        stacked, counts = np.unique(
            np.stack([references.ravel().astype(np.int64), predictions.ravel().astype(np.int64)]),
            axis=1, return_counts=True,
        )
        for reference, prediction, count in zip(stacked[0], stacked[1], counts):
            key = (int(reference), int(prediction))
            self.sparse[key] = self.sparse.get(key, 0) + int(count)

    def _pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        codes = np.flatnonzero(self.dense)
        references = [codes >> 8, np.array([k[0] for k in self.sparse], dtype=np.int64)]
        predictions = [codes & 255, np.array([k[1] for k in self.sparse], dtype=np.int64)]
        counts = [self.dense[codes], np.array(list(self.sparse.values()), dtype=np.int64)]
        return np.concatenate(references), np.concatenate(predictions), np.concatenate(counts)

    def confusion(self, num_labels: int, ignore_index: int | None, label_map: dict | None = None,
                  reduce_labels: bool = False) -> np.ndarray:
        """The ``[C+1, C+1]`` confusion matrix these pairs give under evaluate's arguments."""
        size = num_labels + 1
        confusion = np.zeros((size, size), dtype=np.int64)
        raw_references, predictions, counts = self._pairs()
        references = remap_references(raw_references, label_map, reduce_labels)
        keep = np.ones(len(references), dtype=bool) if ignore_index is None else references != ignore_index
        np.add.at(confusion, (_bin(references[keep], num_labels), _bin(predictions[keep], num_labels)), counts[keep])
        return confusion


def _fits_in_a_byte(values: np.ndarray) -> bool:
    if values.dtype == np.uint8:
        return True
    return values.dtype.kind in "iu" and values.min() >= 0 and values.max() <= 255


def mean_iou(
    predictions: Iterable,
    references: Iterable,
    num_labels: int,
    ignore_index: int | None,
    nan_to_num: float | None = None,
    label_map: dict[int, int] | None = None,
    reduce_labels: bool = False,
) -> dict[str, np.ndarray | float]:
    """evaluate's ``mean_iou`` (semantics in the module docstring), by confusion-matrix accumulation.

    Args:
        predictions, references: sequences of integer maps (numpy arrays, lists, or tensors),
            pairwise of equal shape; or two stacked arrays ``[N, H, W]``.
        num_labels: number of classes C.
        ignore_index: reference value left out of every count (255 for VOC; None: none).
        nan_to_num: replace NaN with this value in the result.
        label_map: {old reference value: new}, applied to the original values.
        reduce_labels: reference 0 -> 255, others minus one.

    Returns:
        ``mean_iou``, ``mean_accuracy``, ``overall_accuracy`` (floats) and
        ``per_category_iou``, ``per_category_accuracy`` (arrays of C).
    """
    histogram = JointHistogram()
    for prediction, reference in zip(predictions, references, strict=True):
        if isinstance(prediction, torch.Tensor):
            prediction = prediction.cpu().numpy()
        if isinstance(reference, torch.Tensor):
            reference = reference.cpu().numpy()
        histogram.update(prediction, reference)
    return scores_from_confusion(histogram.confusion(num_labels, ignore_index, label_map, reduce_labels), nan_to_num)


class ScoredCounts(tuple):
    """A batch's per-image counts (confusion matrices, boundary counts, calibration bins) that were
    scored image by image before Trainer sees them (`hf_segcompare.engine.trainer.SegTrainer`'s
    per-image protocols): `SegmentationMetrics.preprocess_logits` passes them on as they are. A tuple,
    so Trainer's gathering across processes keeps its type."""


class SegmentationMetrics:
    """The pair of callables `Trainer` needs for streaming mean IoU, boundary IoU and calibration.

    Use ``preprocess_logits_for_metrics=metrics.preprocess_logits`` and
    ``compute_metrics=metrics.compute`` with ``batch_eval_metrics=True``. `compute` keeps each
    image's counts (`hf_segcompare.evaluation.per_image`: mean IoU's three areas per class, boundary
    IoU's, the calibration bins) and returns the scores on the last batch; it also accepts the whole
    stacked set at once (``batch_eval_metrics=False``). The last complete evaluation's counts stay in
    `last_counts`, one row per image in the evaluation's order.

    Labels marked ``-100`` (Trainer's padding across processes, and the padding `SegTrainer` marks
    so) are outside the image: never scored, and where the image's edge lies for boundary IoU.
    """

    def __init__(self, class_names: Sequence[str], ignore_index: int | None = IGNORE_INDEX):
        self.class_names = list(class_names)
        self.num_labels = len(self.class_names)
        self.ignore_index = ignore_index
        self._total: torch.Tensor | None = None
        self._rows: list[dict[str, np.ndarray]] = []
        # The summed [C, C] matrix of the last complete evaluation (rows: annotation, columns: prediction).
        self.last_confusion: np.ndarray | None = None
        # The last complete evaluation's per-image arrays (`PerImageCounts` fields, ids aside).
        self.last_counts: dict[str, np.ndarray] | None = None

    def preprocess_logits(self, logits, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Trainer's ``preprocess_logits_for_metrics``: logits ``[B, C, h, w]`` of any size and labels
        ``[B, H, W]`` of any size -> per-sample confusion matrices ``[B, C+1, C+1]``, boundary counts
        ``[B, 3, C]`` and calibration bins ``[B, 3, bins]`` (see `boundary`, `calibration`), the logits
        resized bilinearly to the labels' size first; counts already scored (`ScoredCounts`) pass as
        they are.

        In a run of several processes Trainer pads each batch's labels at the bottom, to the tallest
        batch of any process, with -100 rows: those rows (trailing rows that are -100 in every label
        map of the batch) are dropped before the logits are resized, so the logits meet the labels
        they were predicted for. A batch whose own labels end in whole rows of -100 cannot be told
        from that padding: pad labels with the ignore index, never with -100. In one process
        nothing is dropped."""
        if isinstance(logits, ScoredCounts):
            return tuple(logits)
        if _several_processes():
            labels = without_trainer_padding(labels)
        return self.score_batch(logits, labels)

    def score_batch(self, logits, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`preprocess_logits` for `labels` that are exactly the batch's (no rows appended by Trainer):
        pixels marked -100 are outside the image (never scored, and the image's edge for boundary IoU)."""
        if isinstance(logits, (tuple, list)):  # models that also return hidden states
            logits = logits[0]
        if labels.dtype not in (torch.int32, torch.int64):
            labels = labels.to(torch.int64)  # in a byte, -100 (and an ignore index of -1) would wrap
        if labels.numel() == 0:  # nothing to score (a label map of no row): zero counts, no resize to 0 px
            return self._zero_counts(len(labels), logits.device)
        if logits.shape[-2:] != labels.shape[-2:]:
            # SegFormer and ViT predict at a fraction of the input size; score at label resolution.
            logits = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear", align_corners=False)
        top, predictions = logits.max(dim=1)  # the argmax (the first of equal maxima) and its logit
        confusion = confusion_matrices(predictions, labels, self.num_labels, self.ignore_index)
        boundary, calibration = [], []
        inside = labels != TRAINER_PAD_INDEX  # padding is marked at the bottom and right only
        for index in range(len(labels)):
            height = int(inside[index].any(dim=1).sum())
            width = int(inside[index].any(dim=0).sum())
            reference, predicted = labels[index, :height, :width], predictions[index, :height, :width]
            boundary.append(boundary_counts(predicted, reference, self.num_labels, self.ignore_index))
            # One image at a time: the exponentials of a whole batch of 150-class maps would not be small.
            confidence = top_class_probability(logits[index, :, :height, :width], top[index, :height, :width])
            calibration.append(calibration_counts(confidence, predicted, reference, self.ignore_index))
        return confusion, torch.stack(boundary), torch.stack(calibration)

    def _zero_counts(self, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        classes = self.num_labels
        return (torch.zeros((batch_size, classes + 1, classes + 1), dtype=torch.int64, device=device),
                torch.zeros((batch_size, 3, classes), dtype=torch.int64, device=device),
                torch.zeros((batch_size, 3, CALIBRATION_BINS), dtype=torch.float64, device=device))

    def compute(self, eval_prediction, compute_result: bool = True) -> dict[str, float]:
        """Keep one (gathered) batch's per-image counts; on the last batch return the scores and reset."""
        confusion, boundary, calibration = (torch.as_tensor(part).cpu().numpy() for part in eval_prediction.predictions)
        size, classes = self.num_labels + 1, self.num_labels
        confusion = confusion.reshape(-1, size, size)
        self._rows.append({
            "intersection": np.diagonal(confusion, axis1=1, axis2=2)[:, :classes].copy(),
            "predicted_area": confusion[:, :, :classes].sum(axis=1),
            "label_area": confusion[:, :classes, :].sum(axis=2),
            "boundary": boundary.reshape(-1, 3, classes),
            "calibration": calibration.reshape(len(confusion), 3, -1),
        })
        batch_total = torch.from_numpy(confusion.sum(axis=0))
        self._total = batch_total if self._total is None else self._total + batch_total
        if not compute_result:
            return {}
        total, self._total = self._total.numpy(), None
        rows, self._rows = self._rows, []
        self.last_counts = {name: np.concatenate([row[name] for row in rows]) for name in rows[0]}
        self.last_confusion = total[: self.num_labels, : self.num_labels]  # without the "outside" bin
        return scores_from_counts(self.last_counts, self.class_names)


def without_trainer_padding(labels: torch.Tensor) -> torch.Tensor:
    """`labels` ``[B, H, W]`` without the rows Trainer appends to align a batch's height across
    processes: the trailing rows that are -100 in every label map of the batch."""
    padded_rows = (labels == TRAINER_PAD_INDEX).movedim(1, 0).reshape(labels.shape[1], -1).all(dim=1)
    real_rows = torch.nonzero(~padded_rows)
    return labels[:, : int(real_rows[-1]) + 1] if len(real_rows) else labels[:, :0]


def _several_processes() -> bool:
    """Whether this is one process of several (the only case in which Trainer pads labels)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized() \
        and torch.distributed.get_world_size() > 1


def scores_from_counts(counts, class_names: Sequence[str]) -> dict[str, float]:
    """Every figure of an evaluation (mean IoU, the accuracies, IoU per class, boundary IoU overall
    and per class, ECE), unprefixed, from its per-image counts: a mapping (or
    `hf_segcompare.evaluation.per_image.PerImageCounts`) of ``intersection``, ``predicted_area``,
    ``label_area``, ``boundary`` and ``calibration``, one row per image. The run's figures and the
    comparison page's re-computation from per_image.npz are this one function."""
    def summed(name):
        return np.asarray(counts[name] if isinstance(counts, dict) else getattr(counts, name)).sum(axis=0)

    scores = scores_from_areas(summed("intersection"), summed("predicted_area"), summed("label_area"))
    metrics = {key: scores[key] for key in ("mean_iou", "mean_accuracy", "overall_accuracy")}
    for name, value in zip(class_names, scores["per_category_iou"]):
        metrics[f"iou_{name}"] = float(value)
    mean_boundary, per_class_boundary = boundary_iou(summed("boundary"))
    metrics["boundary_iou"] = mean_boundary
    for name, value in zip(class_names, per_class_boundary):
        metrics[f"boundary_iou_{name}"] = float(value)
    metrics["ece"] = expected_calibration_error(summed("calibration"))
    return metrics
