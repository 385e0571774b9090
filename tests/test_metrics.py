"""Streaming mean IoU against a direct per-pixel computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import EvalPrediction

from hf_segcompare.data import IGNORE_INDEX, VOC_CLASSES
from hf_segcompare.metrics import SegmentationMetrics, confusion_matrices, scores_from_confusion


def direct_mean_iou(predictions: list[np.ndarray], references: list[np.ndarray], num_labels: int):
    """evaluate's mean_iou semantics, written the slow, obvious way: pixel sets per class."""
    pred = np.concatenate([p.ravel() for p in predictions])
    ref = np.concatenate([r.ravel() for r in references])
    keep = ref != IGNORE_INDEX
    pred, ref = pred[keep], ref[keep]
    iou, accuracy = [], []
    for c in range(num_labels):
        intersection = np.sum((pred == c) & (ref == c))
        union = np.sum((pred == c) | (ref == c))
        label_area = np.sum(ref == c)
        iou.append(intersection / union if union else math.nan)
        accuracy.append(intersection / label_area if label_area else math.nan)
    return {
        "mean_iou": np.nanmean(iou),
        "mean_accuracy": np.nanmean(accuracy),
        "overall_accuracy": np.sum(pred == ref) / len(ref),
        "per_category_iou": np.array(iou),
    }


def _random_batches(seed, num_batches=4, batch=3, num_labels=21, size=(24, 20), absent=(5, 6)):
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(num_batches):
        logits = rng.normal(size=(batch, num_labels, *size)).astype(np.float32)
        logits[:, list(absent)] -= 100  # never predicted
        labels = rng.integers(0, num_labels, size=(batch, *size))
        labels[np.isin(labels, absent)] = 0  # never in the reference either -> NaN, left out
        labels[rng.random(labels.shape) < 0.2] = IGNORE_INDEX
        batches.append((torch.from_numpy(logits), torch.from_numpy(labels)))
    return batches


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_metric_equals_direct_computation(seed):
    metrics = SegmentationMetrics(VOC_CLASSES)
    batches = _random_batches(seed)
    for index, (logits, labels) in enumerate(batches):
        matrices = metrics.preprocess_logits(logits, labels)
        assert matrices.shape == (3, 21, 21)
        result = metrics.compute(EvalPrediction(predictions=matrices, label_ids=labels),
                                 compute_result=index == len(batches) - 1)
    expected = direct_mean_iou([l.argmax(1).numpy() for l, _ in batches], [r.numpy() for _, r in batches], 21)
    assert result["mean_iou"] == pytest.approx(expected["mean_iou"], abs=1e-12)
    assert result["mean_accuracy"] == pytest.approx(expected["mean_accuracy"], abs=1e-12)
    assert result["overall_accuracy"] == pytest.approx(expected["overall_accuracy"], abs=1e-12)
    for name, value in zip(VOC_CLASSES, expected["per_category_iou"]):
        if math.isnan(value):
            assert math.isnan(result[f"iou_{name}"]), name
        else:
            assert result[f"iou_{name}"] == pytest.approx(value, abs=1e-12), name
    assert math.isnan(result["iou_bottle"]) and math.isnan(result["iou_bus"])  # classes 5, 6: absent


def test_low_resolution_logits_are_upsampled_to_the_labels():
    """SegFormer predicts at 1/4: the score is taken at label resolution, like evaluate on upsampled maps."""
    metrics = SegmentationMetrics(VOC_CLASSES)
    (logits, labels), = _random_batches(3, num_batches=1, size=(32, 32))
    small = torch.nn.functional.interpolate(logits, size=(8, 8), mode="bilinear", align_corners=False)
    matrices = metrics.preprocess_logits(small, labels)
    upsampled = torch.nn.functional.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False)
    direct = direct_mean_iou([upsampled.argmax(1).numpy()], [labels.numpy()], 21)
    scores = scores_from_confusion(matrices.sum(0).numpy())
    assert scores["mean_iou"] == pytest.approx(direct["mean_iou"], abs=1e-12)


def test_confusion_matrices_drop_255_and_trainer_padding():
    predictions = torch.tensor([[[0, 1], [2, 2]]])
    references = torch.tensor([[[0, IGNORE_INDEX], [-100, 2]]])
    matrix = confusion_matrices(predictions, references, num_labels=3)
    assert matrix.shape == (1, 3, 3)
    assert matrix.sum() == 2 and matrix[0, 0, 0] == 1 and matrix[0, 2, 2] == 1


def test_the_whole_set_at_once_gives_the_same_scores():
    """batch_eval_metrics=False hands compute() every matrix stacked: same answer."""
    batches = _random_batches(4)
    streaming, stacked = SegmentationMetrics(VOC_CLASSES), SegmentationMetrics(VOC_CLASSES)
    matrices = [streaming.preprocess_logits(l, r) for l, r in batches]
    for index, m in enumerate(matrices):
        result = streaming.compute(EvalPrediction(predictions=m, label_ids=None), compute_result=index == 3)
    at_once = stacked.compute(EvalPrediction(predictions=torch.cat(matrices).numpy(), label_ids=None))
    assert at_once == pytest.approx(result, nan_ok=True)


def test_state_resets_between_evaluations():
    metrics = SegmentationMetrics(VOC_CLASSES)
    (logits, labels), = _random_batches(5, num_batches=1)
    m = metrics.preprocess_logits(logits, labels)
    first = metrics.compute(EvalPrediction(predictions=m, label_ids=labels))
    second = metrics.compute(EvalPrediction(predictions=m, label_ids=labels))
    assert first == pytest.approx(second, nan_ok=True)
