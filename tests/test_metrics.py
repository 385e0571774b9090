"""Streaming mean IoU against a direct per-pixel computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import EvalPrediction

from hf_segcompare.data import IGNORE_INDEX, VOC_CLASSES
from hf_segcompare.evaluation.metrics import (
    MEAN_IOU_MODULE,
    SegmentationMetrics,
    confusion_matrices,
    mean_iou,
    scores_from_confusion,
    torch_confusion_matrices,
)

# in the fast subset, which CI also runs on constraints/minimum.txt (the declared lower bounds)
pytestmark = pytest.mark.fast


def direct_mean_iou(predictions, references, num_labels, ignore_index=IGNORE_INDEX, label_map=None,
                    reduce_labels=False, nan_to_num=None):
    """evaluate's mean_iou semantics, written the slow, obvious way: per image, per pixel, per class."""
    intersection = np.zeros(num_labels)
    prediction_area = np.zeros(num_labels)
    label_area = np.zeros(num_labels)
    for prediction, reference in zip(predictions, references):
        prediction = np.asarray(prediction).astype(np.int64).ravel()
        reference = np.asarray(reference).astype(np.int64).ravel()
        mapped = reference.copy()
        for old, new in (label_map or {}).items():
            mapped[reference == old] = new
        if reduce_labels:
            mapped = np.array([255 if v == 0 else (255 if v - 1 == 254 else v - 1) for v in mapped])
        for p, r in zip(prediction, mapped):
            if r == ignore_index:
                continue
            if 0 <= p < num_labels:
                prediction_area[p] += 1
            if 0 <= r < num_labels:
                label_area[r] += 1
                if p == r:
                    intersection[r] += 1
    union = prediction_area + label_area - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        iou, accuracy = intersection / union, intersection / label_area
        result = {
            "mean_iou": np.nanmean(iou) if np.isfinite(iou).any() else math.nan,
            "mean_accuracy": np.nanmean(accuracy) if np.isfinite(accuracy).any() else math.nan,
            "overall_accuracy": intersection.sum() / label_area.sum(),
            "per_category_iou": iou,
            "per_category_accuracy": accuracy,
        }
    if nan_to_num is not None:
        result = {k: np.nan_to_num(v, nan=nan_to_num) for k, v in result.items()}
    return result


def assert_same_scores(actual, expected):
    for key in ("mean_iou", "mean_accuracy", "overall_accuracy"):
        assert actual[key] == pytest.approx(expected[key], abs=1e-6, nan_ok=True), key
    for key in ("per_category_iou", "per_category_accuracy"):
        np.testing.assert_allclose(actual[key], expected[key], atol=1e-6, equal_nan=True, err_msg=key)


def _random_maps(seed, count, num_labels, shapes, ignore_fraction=0.2, out_of_range=True):
    rng = np.random.default_rng(seed)
    predictions, references = [], []
    for index in range(count):
        shape = shapes[index % len(shapes)]
        prediction = rng.integers(0, num_labels + (3 if out_of_range else 0), size=shape)
        reference = rng.integers(0, num_labels + (3 if out_of_range else 0), size=shape)
        reference[rng.random(shape) < ignore_fraction] = IGNORE_INDEX
        # classes 2 and 3 never appear on either side: NaN, left out of the means
        prediction[np.isin(prediction, (2, 3))] = 0
        reference[np.isin(reference, (2, 3))] = 1
        predictions.append(prediction.astype(np.uint8))
        references.append(reference.astype(np.uint8))
    return predictions, references


CASES = {
    "plain": {},
    "reduce_labels": {"reduce_labels": True},
    "label_map": {"label_map": {1: 4, 4: 1, 6: IGNORE_INDEX}},
    "label_map+reduce": {"label_map": {5: 0}, "reduce_labels": True},
    "nan_to_num": {"nan_to_num": -1},
    "ignore_0": {"ignore_index": 0},
}


def _widen(maps, seed):
    """int32 copies with values a byte cannot hold (-5, 300), for the sparse path."""
    rng = np.random.default_rng(seed)
    wide = [m.astype(np.int32) for m in maps]
    for m in wide:
        m[rng.random(m.shape) < 0.05] = -5
        m[rng.random(m.shape) < 0.05] = 300
    return wide


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("shapes", [[(5, 7)], [(16, 16), (9, 13), (1, 31)]], ids=["one-size", "mixed-sizes"])
@pytest.mark.parametrize("dtype", ["uint8", "int32-wide"])
def test_mean_iou_matches_a_direct_per_pixel_implementation(case, shapes, dtype):
    kwargs = {"ignore_index": IGNORE_INDEX, **CASES[case]}
    predictions, references = _random_maps(sorted(CASES).index(case), 6, 8, shapes)
    if dtype == "int32-wide":
        predictions, references = _widen(predictions, 1), _widen(references, 2)
        references[0] = references[0].astype(np.uint8)  # a byte-sized map mixed in: both paths in one total
    expected = direct_mean_iou(predictions, references, 8, **kwargs)
    assert_same_scores(mean_iou(predictions, references, 8, **kwargs), expected)
    if case == "plain":  # the absent classes are NaN and do not pull the mean down
        assert np.isnan(expected["per_category_iou"][[2, 3]]).all()
        assert expected["mean_iou"] == pytest.approx(np.nanmean(expected["per_category_iou"]))


@pytest.mark.parametrize("case", sorted(CASES))
def test_evaluate_module_loads_offline_and_agrees(case):
    import evaluate

    kwargs = {"ignore_index": IGNORE_INDEX, **CASES[case]}
    predictions, references = _random_maps(7, 5, 8, [(12, 10), (6, 6)])
    metric = evaluate.load(MEAN_IOU_MODULE)
    metric.add_batch(predictions=predictions[:3], references=references[:3])
    metric.add(prediction=predictions[3], reference=references[3])
    result = metric.compute(predictions=[predictions[4]], references=[references[4]], num_labels=8, **kwargs)
    assert_same_scores(result, direct_mean_iou(predictions, references, 8, **kwargs))
    # compute() starts afresh, and lists of lists work as well as arrays.
    again = metric.compute(predictions=[p.tolist() for p in predictions], references=[r.tolist() for r in references],
                           num_labels=8, **kwargs)
    assert_same_scores(again, result)


def test_against_evaluate_on_the_hub_when_reachable():
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
    except OSError as error:
        pytest.skip(f"the Hub is not reachable here ({error}); evaluate.load('mean_iou') needs it")
    import evaluate

    predictions, references = _random_maps(3, 4, 8, [(12, 10)], out_of_range=False)
    hub = evaluate.load("mean_iou").compute(predictions=predictions, references=references, num_labels=8,
                                            ignore_index=IGNORE_INDEX, reduce_labels=False)
    assert_same_scores(mean_iou(predictions, references, 8, IGNORE_INDEX), hub)


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
        assert matrices[0].shape == (3, 22, 22)
        result = metrics.compute(EvalPrediction(predictions=matrices, label_ids=labels),
                                 compute_result=index == len(batches) - 1)
    expected = direct_mean_iou([p for logits, _ in batches for p in logits.argmax(1).numpy()],
                               [r for _, b in batches for r in b.numpy()], 21)
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
    matrices, _, _ = metrics.preprocess_logits(small, labels)
    upsampled = torch.nn.functional.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False)
    direct = direct_mean_iou(upsampled.argmax(1).numpy(), labels.numpy(), 21)
    scores = scores_from_confusion(matrices.sum(0).numpy())
    assert scores["mean_iou"] == pytest.approx(direct["mean_iou"], abs=1e-12)


def test_confusion_matrices_drop_255_and_trainer_padding():
    predictions = torch.tensor([[[0, 1], [2, 2]]])
    references = torch.tensor([[[0, IGNORE_INDEX], [-100, 2]]])
    matrix = confusion_matrices(predictions, references, num_labels=3)
    assert matrix.shape == (1, 4, 4)  # one extra row/column for values outside [0, 3)
    assert matrix.sum() == 2 and matrix[0, 0, 0] == 1 and matrix[0, 2, 2] == 1


def test_the_whole_set_at_once_gives_the_same_scores():
    """batch_eval_metrics=False hands compute() every matrix stacked: same answer."""
    batches = _random_batches(4)
    streaming, stacked = SegmentationMetrics(VOC_CLASSES), SegmentationMetrics(VOC_CLASSES)
    matrices = [streaming.preprocess_logits(logits, r) for logits, r in batches]
    for index, m in enumerate(matrices):
        result = streaming.compute(EvalPrediction(predictions=m, label_ids=None), compute_result=index == 3)
    at_once = stacked.compute(EvalPrediction(predictions=tuple(torch.cat(parts).numpy() for parts in zip(*matrices)),
                                             label_ids=None))
    assert at_once == pytest.approx(result, nan_ok=True)


def test_state_resets_between_evaluations():
    metrics = SegmentationMetrics(VOC_CLASSES)
    (logits, labels), = _random_batches(5, num_batches=1)
    m = metrics.preprocess_logits(logits, labels)
    first = metrics.compute(EvalPrediction(predictions=m, label_ids=labels))
    second = metrics.compute(EvalPrediction(predictions=m, label_ids=labels))
    assert first == pytest.approx(second, nan_ok=True)


def test_the_trainer_path_compares_uint8_labels_without_wrapping():
    """-100 (Trainer's pad) and an ignore index of -1 must not wrap to 156 and 255 in uint8 labels:
    class 156 counts, and 255 is an out-of-range value that evaluate still counts on the
    prediction side."""
    num_labels = 200
    rng = np.random.default_rng(7)
    references = torch.from_numpy(rng.integers(0, 256, (2, 24, 24)).astype(np.uint8))
    references[0, :6] = 156
    references[1, :3] = 255
    logits = torch.from_numpy(rng.normal(size=(2, num_labels, 24, 24)).astype(np.float32))
    logits[:, 156, :8] += 10  # predict class 156 where it is the reference, so its IoU is not 0
    metrics = SegmentationMetrics([f"c{i}" for i in range(num_labels)], ignore_index=-1)
    matrices, _, _ = metrics.preprocess_logits(logits, references)
    expected = direct_mean_iou(logits.argmax(1).numpy(), references.numpy(), num_labels, ignore_index=-1)
    assert expected["per_category_iou"][156] > 0
    assert_same_scores(scores_from_confusion(matrices.sum(0).numpy()), expected)


@pytest.mark.parametrize("label_dtype, ignore_index", [(torch.uint8, IGNORE_INDEX), (torch.uint8, -1),
                                                      (torch.int64, IGNORE_INDEX), (torch.int16, 7)])
def test_the_cpu_count_and_the_device_count_agree(label_dtype, ignore_index):
    """On the CPU byte-valued maps are counted with numpy; any other device (or value) with one
    torch.bincount. Both must give the same matrices, out-of-range values and ignored pixels included."""
    rng = np.random.default_rng(11)
    predictions = torch.from_numpy(rng.integers(0, 24, (3, 20, 30)))  # 21..23: outside [0, 21)
    references = torch.from_numpy(rng.integers(0, 25, (3, 20, 30))).to(label_dtype)
    references[:, :4] = 255
    references[1, 5:7] = 7
    numpy_counted = confusion_matrices(predictions, references, 21, ignore_index)
    torch_counted = torch_confusion_matrices(predictions, references, 21, ignore_index)
    assert numpy_counted.dtype == torch_counted.dtype == torch.int64
    assert torch.equal(numpy_counted, torch_counted)
    kept = ~np.isin(references.numpy().astype(np.int64), [ignore_index])
    assert int(numpy_counted.sum()) == int(kept.sum())
    expected = direct_mean_iou(predictions.numpy(), references.numpy(), 21, ignore_index=ignore_index)
    assert_same_scores(scores_from_confusion(numpy_counted.sum(0).numpy()), expected)
