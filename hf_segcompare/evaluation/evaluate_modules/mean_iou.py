"""`evaluate` module: mean IoU with the semantics of evaluate's ``mean_iou``, loadable offline.

    import evaluate
    from hf_segcompare.evaluation.metrics import MEAN_IOU_MODULE

    metric = evaluate.load(MEAN_IOU_MODULE)
    metric.add_batch(predictions=[pred_map, ...], references=[ref_map, ...])
    metric.compute(num_labels=21, ignore_index=255)

`add_batch` folds each map pair into a joint histogram of raw (reference, prediction) values at
once instead of storing the maps in Arrow (what makes the Hub version slow and its memory grow
with the set), so `compute` can still apply any ``num_labels``, ``ignore_index``, ``label_map``
and ``reduce_labels``. Semantics: see `hf_segcompare.evaluation.metrics`.
"""

from typing import Dict, Optional

import datasets
import evaluate

from hf_segcompare.evaluation.metrics import JointHistogram, scores_from_confusion

_DESCRIPTION = "Mean Intersection over Union of segmentation maps (semantics of evaluate's mean_iou)."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of 2-D integer maps (numpy arrays or nested lists).
    references: list of 2-D integer maps of the same shapes.
    num_labels (int): number of classes.
    ignore_index (int or None): reference value to leave out (None: none).
    nan_to_num (float, optional): replace NaN with this value.
    label_map (dict, optional): {old reference value: new}, applied to the original values.
    reduce_labels (bool): reference 0 -> 255 and every other value minus one.
Returns:
    mean_iou, mean_accuracy, overall_accuracy, per_category_iou, per_category_accuracy.
"""


class MeanIoU(evaluate.Metric):
    """Mean IoU by joint-histogram accumulation; nothing but the histogram is kept."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("int64"))),
                "references": datasets.Sequence(datasets.Sequence(datasets.Value("int64"))),
            }),
        )

    def _histogram(self) -> JointHistogram:
        if not hasattr(self, "_joint_histogram"):
            self._joint_histogram = JointHistogram()
        return self._joint_histogram

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Fold map pairs into the histogram."""
        for prediction, reference in zip(predictions, references, strict=True):
            self._histogram().update(prediction, reference)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Fold one map pair into the histogram."""
        self._histogram().update(prediction, reference)

    def compute(self, *, predictions=None, references=None, **kwargs):
        """Scores of everything added (plus `predictions`/`references`), then start afresh."""
        if predictions is not None:
            self.add_batch(predictions=predictions, references=references)
        histogram, self._joint_histogram = self._histogram(), JointHistogram()
        return self._compute(histogram=histogram, **kwargs)

    def _compute(
        self,
        histogram: JointHistogram,
        num_labels: int,
        ignore_index: int | None,
        nan_to_num: Optional[float] = None,
        label_map: Optional[Dict[int, int]] = None,
        reduce_labels: bool = False,
    ):
        confusion = histogram.confusion(num_labels, ignore_index, label_map, reduce_labels)
        return scores_from_confusion(confusion, nan_to_num)
