"""`SegmentationMetrics`' Trainer hooks against evaluate's mean_iou semantics for any label and logit shapes,
through a real `Trainer.evaluate` in one process and in two (where Trainer pads each step's labels to the
taller process's with -100 rows)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from .conftest import REPO_ROOT, free_port, script_env
from .hook_cases import CASES_PER_COUNT, CLASS_COUNTS, IGNORE, cases
from .test_metrics import direct_mean_iou


def expected_areas(num_labels: int) -> tuple[dict[str, np.ndarray], list, list]:
    """Each case's intersection, predicted and label area per class as evaluate counts them, the
    prediction being the argmax of the logits resized bilinearly to the labels (the recipe every
    Hugging Face segmentation example scores with)."""
    predictions, references = [], []
    for sample in cases(num_labels):
        logits, labels = sample["pixel_values"][None], sample["labels"]
        resized = torch.nn.functional.interpolate(logits, size=labels.shape, mode="bilinear", align_corners=False)
        predictions.append(resized.argmax(dim=1)[0].numpy())
        references.append(labels.numpy())
    areas = {"intersection": [], "predicted_area": [], "label_area": []}
    for prediction, reference in zip(predictions, references):
        scored = reference != IGNORE
        classes = np.arange(num_labels)[:, None]
        predicted, annotated = prediction[scored][None] == classes, reference[scored][None] == classes
        areas["intersection"].append((predicted & annotated).sum(axis=1))
        areas["predicted_area"].append(predicted.sum(axis=1))
        areas["label_area"].append(annotated.sum(axis=1))
    return {name: np.stack(rows) for name, rows in areas.items()}, predictions, references


@pytest.mark.parametrize("processes", [1, 2])
def test_the_hooks_equal_evaluate_on_random_shapes_through_trainer_evaluate(tmp_path, processes):
    """300 random shape cases (labels 1-64 px a side, logits 1-24, larger or smaller than the labels, 2, 5
    and 21 classes): every image's three areas per class equal evaluate's, and so does the mean IoU."""
    output = tmp_path / "counts.npz"
    launcher = [sys.executable, str(REPO_ROOT / "tests" / "hook_cases.py")] if processes == 1 else [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), str(REPO_ROOT / "tests" / "hook_cases.py")]
    completed = subprocess.run([*launcher, str(output)], cwd=REPO_ROOT, env=script_env(tmp_path),
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    counts = np.load(output)
    equal = 0
    for num_labels in CLASS_COUNTS:
        expected, predictions, references = expected_areas(num_labels)
        for index in range(CASES_PER_COUNT):
            equal += all(np.array_equal(counts[f"{name}_{num_labels}"][index], expected[name][index])
                         for name in expected)
        direct = direct_mean_iou(predictions, references, num_labels, ignore_index=IGNORE)
        assert counts[f"mean_iou_{num_labels}"] == pytest.approx(direct["mean_iou"], abs=1e-12)
    assert equal == len(CLASS_COUNTS) * CASES_PER_COUNT == 300


def test_trainer_padding_rows_are_dropped_and_nothing_else():
    """In several processes the trailing rows that are -100 in every map of the batch are Trainer's padding:
    they go, a row holding any other value stays, and a batch of padding alone leaves no row."""
    from hf_segcompare.evaluation.metrics import without_trainer_padding

    labels = torch.full((2, 6, 3), -100)
    labels[0, :2] = 1
    labels[1, 3, 2] = 255  # one real pixel in row 3 of the second map keeps rows 0-3
    assert without_trainer_padding(labels).shape == (2, 4, 3)
    assert without_trainer_padding(torch.full((1, 4, 2), -100)).shape == (1, 0, 2)
