"""Confidence intervals, paired differences, boundary IoU and calibration against what they claim:
coverage of a known population, exact zeros, and direct numpy computations of the definitions."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from hf_segcompare.evaluation import metrics as metrics_module
from hf_segcompare.evaluation.boundary import boundary_counts, boundary_iou, boundary_radius
from hf_segcompare.evaluation.calibration import (
    CALIBRATION_BINS,
    calibration_counts,
    expected_calibration_error,
    top_class_probability,
)
from hf_segcompare.evaluation.intervals import mean_iou_interval, paired_difference
from hf_segcompare.evaluation.metrics import SegmentationMetrics, mean_iou
from hf_segcompare.evaluation.per_image import PerImageCounts, mean_iou_of

# in the fast subset, which CI also runs on constraints/minimum.txt (the declared lower bounds)
pytestmark = pytest.mark.fast


def _counts(intersection, predicted, label, ids=None) -> PerImageCounts:
    images, classes = intersection.shape
    return PerImageCounts([str(i) for i in range(images)] if ids is None else ids, [f"c{i}" for i in range(classes)],
                          intersection, predicted, label, np.zeros((images, 3, classes), dtype=np.int64),
                          np.zeros((images, 3, CALIBRATION_BINS)))


def _population(images: int = 5000, classes: int = 4, seed: int = 1):
    """Per-image counts of a made-up population: classes present in 60 % of images, 40-100 % of each
    annotated area hit, some false positives."""
    rng = np.random.default_rng(seed)
    label = np.where(rng.random((images, classes)) < 0.6, rng.integers(100, 5000, (images, classes)), 0)
    intersection = np.floor(label * rng.beta(4, 2, (images, classes))).astype(np.int64)
    false_positives = np.where(rng.random((images, classes)) < 0.7, rng.integers(0, 1500, (images, classes)), 0)
    return intersection, intersection + false_positives, label


def test_the_95_percent_interval_covers_the_population_mean_iou_in_90_to_99_percent_of_validation_sets():
    intersection, predicted, label = _population()
    truth = mean_iou_of(intersection.sum(axis=0), (predicted + label - intersection).sum(axis=0))
    rng = np.random.default_rng(7)
    covered = 0
    for draw in range(200):
        rows = rng.integers(0, len(label), 200)
        interval = mean_iou_interval(_counts(intersection[rows], predicted[rows], label[rows]), seed=draw)
        low, high = interval["interval"]
        assert low < interval["mean_iou"] < high
        covered += low <= truth <= high
    assert 0.90 <= covered / 200 <= 0.99, covered / 200


def test_the_interval_is_seeded_and_narrows_with_more_images():
    intersection, predicted, label = _population()
    small = _counts(intersection[:100], predicted[:100], label[:100])
    large = _counts(intersection[:2000], predicted[:2000], label[:2000])
    assert mean_iou_interval(small) == mean_iou_interval(small)
    width = {name: np.diff(mean_iou_interval(counts)["interval"])[0] for name, counts in (("small", small),
                                                                                          ("large", large))}
    assert width["large"] < width["small"] / 2


def test_identical_predictions_differ_by_exactly_zero_with_a_zero_width_interval():
    intersection, predicted, label = _population(300)
    run = _counts(intersection, predicted, label)
    shuffled = run.aligned_to(list(reversed(run.ids)))  # the same images in another order still pair
    difference = paired_difference([run], [shuffled])
    assert difference.difference == 0.0 and difference.interval == (0.0, 0.0)
    assert not difference.distinguishable and difference.paired_images == 300


def test_a_run_better_on_every_image_has_an_interval_above_zero():
    intersection, predicted, label = _population(300)
    worse = _counts(intersection, predicted, label)
    better = _counts(intersection + (label - intersection) // 2, predicted + (label - intersection) // 2 - 1, label)
    better.predicted_area = np.maximum(better.predicted_area, better.intersection)
    assert (better.intersection / np.maximum(better.union, 1) >= worse.intersection / np.maximum(worse.union, 1)).all()
    difference = paired_difference([better], [worse])
    assert difference.difference > 0 and difference.interval[0] > 0 and difference.distinguishable
    reverse = paired_difference([worse], [better])
    assert reverse.interval[1] < 0 and reverse.distinguishable


def test_runs_on_different_images_are_not_paired():
    intersection, predicted, label = _population(50)
    first = _counts(intersection, predicted, label)
    other = _counts(intersection, predicted, label, ids=[f"x{i}" for i in range(50)])
    with pytest.raises(ValueError, match="different validation images"):
        paired_difference([first], [other])


def test_the_spread_across_seeds_widens_the_interval():
    intersection, predicted, label = _population(300)
    base = _counts(intersection, predicted, label)

    def shifted(extra):  # a seed predicting `extra` more false positives per class and image
        return _counts(intersection, predicted + extra, label)

    steady = paired_difference([base, base], [shifted(50), shifted(50)])
    noisy = paired_difference([shifted(-40), shifted(40)], [shifted(10), shifted(90)])
    assert steady.method.startswith("normal") and steady.seeds == (2, 2)
    assert np.diff(noisy.interval)[0] > np.diff(steady.interval)[0]


# ---- boundary IoU: the official definition, written out with OpenCV as the boundary-iou-api writes it


def _mask_to_boundary(mask: np.ndarray, dilation_ratio: float = 0.02, dilation: int | None = None) -> np.ndarray:
    """The boundary-iou-api's ``mask_to_boundary`` (Cheng et al.): d = round(ratio x diagonal), at least 1;
    pad the binary mask with one px of background, erode it d times with a 3 x 3 kernel (cv2), and keep
    what the erosion removed."""
    import cv2

    mask = mask.astype(np.uint8)
    height, width = mask.shape
    if dilation is None:
        dilation = max(1, int(round(dilation_ratio * np.sqrt(height ** 2 + width ** 2))))
    padded = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    eroded = cv2.erode(padded, np.ones((3, 3), dtype=np.uint8), iterations=dilation)[1: height + 1, 1: width + 1]
    return (mask - eroded).astype(bool)


def _official_boundary_counts(prediction, reference, num_labels, ignore_index, dilation=None):
    """Per class c, the boundaries of the binary masks (annotation == c) and (prediction == c), void being
    a value of its own (not c); pixels annotated void counted in no area, as detectron2's evaluation
    drops them."""
    scored = reference != ignore_index
    counts = np.zeros((3, num_labels), dtype=np.int64)
    for label in range(num_labels):
        annotated = _mask_to_boundary(reference == label, dilation=dilation) & scored
        predicted = _mask_to_boundary(prediction == label, dilation=dilation) & scored
        counts[:, label] = [(annotated & predicted).sum(), predicted.sum(), annotated.sum()]
    return counts


def _blobs(rng, height, width, num_labels, void=None, band=0):
    """A label map of a few rectangles on background; with `void`, a void row and (`band` > 0) a void band
    `band` px wide along every edge between two classes, as VOC draws round its objects."""
    label_map = np.zeros((height, width), dtype=np.int64)
    for _ in range(4):
        top, left = rng.integers(0, height - 4), rng.integers(0, width - 4)
        label_map[top: top + rng.integers(3, height // 2), left: left + rng.integers(3, width // 2)] = \
            rng.integers(1, num_labels)
    if void is None:
        return label_map
    if band:
        padded = np.pad(label_map, band, mode="edge")
        differs = np.zeros_like(label_map, dtype=bool)
        for dy in range(-band, band + 1):
            for dx in range(-band, band + 1):
                differs |= padded[band + dy: band + dy + height, band + dx: band + dx + width] != label_map
        label_map[differs] = void
    label_map[rng.integers(0, height), :] = void
    return label_map


@pytest.mark.parametrize("band", [0, 1, 2, 3])
def test_boundary_counts_equal_the_official_definition_on_300_maps(band):
    """400 random maps (100 per band width) against the boundary-iou-api's mask_to_boundary per class at its
    dilation ratio 0.02: 100 with no void band (a void row only) and 300 with a band 1, 2 or 3 px wide round
    every object; the prediction is the annotation moved and blotted, with classes of its own under the void."""
    rng = np.random.default_rng(band)
    equal = 0
    for _ in range(100):
        height, width = (int(side) for side in rng.integers(12, 120, 2))
        reference = _blobs(rng, height, width, 5, void=255, band=band)
        prediction = np.roll(np.where(reference == 255, rng.integers(0, 5, reference.shape), reference),
                             int(rng.integers(-2, 3)), axis=int(rng.integers(0, 2)))
        prediction[_blobs(rng, height, width, 2) == 1] = int(rng.integers(0, 5))
        ours = boundary_counts(torch.from_numpy(prediction), torch.from_numpy(reference), 5, 255)
        equal += ours.tolist() == _official_boundary_counts(prediction, reference, 5, 255).tolist()
    assert equal == 100


@pytest.mark.parametrize("seed", range(3))
def test_boundary_counts_equal_the_official_definition_at_any_dilation(seed):
    rng = np.random.default_rng(seed)
    height, width = rng.integers(12, 40, 2)
    reference = _blobs(rng, height, width, 5, void=255, band=1)
    prediction = _blobs(rng, height, width, 5)
    dilation = int(rng.integers(1, 9))
    ours = boundary_counts(torch.from_numpy(prediction), torch.from_numpy(reference), 5, 255, radius=dilation)
    assert ours.tolist() == _official_boundary_counts(prediction, reference, 5, 255, dilation).tolist()


def test_a_perfect_prediction_scores_one_without_void_and_below_one_beside_a_void_band():
    """The official definition: right on every pixel scores 1; where a void band separates the objects, a
    prediction right on every scored pixel still draws its edges elsewhere than the band's inner edge (which
    is where the annotation's are), so it scores below 1, as the official evaluation scores it."""
    rng = np.random.default_rng(3)
    reference = _blobs(rng, 30, 40, 4)
    mean, per_class = boundary_iou(boundary_counts(torch.from_numpy(reference), torch.from_numpy(reference), 4, 255))
    present = ~np.isnan(per_class)
    assert mean == 1.0 and present.sum() >= 2 and (per_class[present] == 1.0).all()
    banded = _blobs(np.random.default_rng(3), 30, 40, 4, void=255, band=1)
    filled = np.where(banded == 255, reference, banded)  # right on every scored pixel, the objects' own edges
    mean, _ = boundary_iou(boundary_counts(torch.from_numpy(filled), torch.from_numpy(banded), 4, 255))
    official, _ = boundary_iou(_official_boundary_counts(filled, banded, 4, 255))
    assert mean == official < 1.0
    assert boundary_radius(375, 500) == 12 and boundary_radius(10, 10) == 1


# ---- calibration


def test_a_constant_confidence_right_that_fraction_of_the_time_has_ece_near_zero():
    rng = np.random.default_rng(0)
    reference = torch.from_numpy(rng.integers(0, 3, (200, 200)))
    probabilities = torch.full((3, 200, 200), 0.15)
    correct = torch.from_numpy(rng.random((200, 200)) < 0.7)
    top = torch.where(correct, reference, (reference + 1) % 3)
    probabilities.scatter_(0, top[None], 0.7)
    counts = calibration_counts(*probabilities.max(dim=0), reference, ignore_index=None).numpy()
    assert counts[0].sum() == 200 * 200 and np.count_nonzero(counts[0]) == 1
    assert expected_calibration_error(counts) < 0.01


def test_ece_equals_a_direct_computation_and_ignored_pixels_are_left_out():
    rng = np.random.default_rng(1)
    logits = torch.from_numpy(rng.normal(0, 2, (4, 30, 20))).float()
    reference = torch.from_numpy(rng.integers(0, 4, (30, 20)))
    reference[:5] = 255
    probabilities = logits.softmax(dim=0)
    top, predicted = logits.max(dim=0)
    counts = calibration_counts(top_class_probability(logits, top), predicted, reference, ignore_index=255).numpy()
    confidence, predicted = (value.numpy()[5:].ravel() for value in probabilities.max(dim=0))
    correct = predicted == reference.numpy()[5:].ravel()
    bins = np.clip(np.ceil(confidence * 15).astype(int) - 1, 0, 14)
    direct = sum(abs(correct[bins == b].mean() - confidence[bins == b].mean()) * (bins == b).sum()
                 for b in range(15) if (bins == b).any()) / len(bins)
    assert expected_calibration_error(counts) == pytest.approx(direct, abs=1e-7)
    assert counts[0].sum() == 25 * 20


# ---- the streaming metric: per-image rows that sum to the run's totals, padding never scored


def _evaluate(metrics, batches):
    outputs = [metrics.preprocess_logits(logits, labels) for logits, labels in batches]
    for index, output in enumerate(outputs):
        scores = metrics.compute(types.SimpleNamespace(predictions=output), compute_result=index == len(outputs) - 1)
    return scores


def test_per_image_counts_sum_to_the_scores_and_padding_marked_minus_100_is_outside_the_image(monkeypatch):
    rng = np.random.default_rng(2)
    names = ["background", "a", "b"]
    labels = torch.from_numpy(rng.integers(0, 3, (2, 32, 32)))
    labels[:, 10] = 255
    logits = torch.from_numpy(rng.normal(0, 1, (2, 3, 8, 8))).float()
    metrics = SegmentationMetrics(names)
    scores = _evaluate(metrics, [(logits, labels)])
    counts = PerImageCounts(["x", "y"], names, **metrics.last_counts)
    assert counts.mean_iou() == pytest.approx(scores["mean_iou"], abs=1e-12)
    upsampled = torch.nn.functional.interpolate(logits, size=(32, 32), mode="bilinear").argmax(dim=1)
    assert scores["mean_iou"] == pytest.approx(mean_iou(list(upsampled), list(labels), 3, 255)["mean_iou"])
    # The same images padded (by the collator, marked -100 by SegTrainer; by Trainer across processes,
    # height only): identical counts, boundary and calibration included.
    padded_labels = torch.full((2, 64, 48), -100, dtype=torch.int64)
    padded_labels[:, :32, :32] = labels
    padded_logits = torch.nn.functional.interpolate(logits, size=(32, 32), mode="bilinear")
    padded_logits = torch.nn.functional.pad(padded_logits, (0, 16, 0, 0))  # the batch was 32 x 48
    metrics_padded = SegmentationMetrics(names)
    monkeypatch.setattr(metrics_module, "_several_processes", lambda: True)  # Trainer pads only then
    padded_scores = _evaluate(metrics_padded, [(padded_logits, padded_labels)])
    assert padded_scores == scores
    for name, values in metrics.last_counts.items():
        assert np.array_equal(values, metrics_padded.last_counts[name]), name
