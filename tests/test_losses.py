"""--loss and --class_weights: each loss is smp's (or torch's) on full-resolution logits, ignores the
void label and takes the class weights; median-frequency weights; what a run records."""

from __future__ import annotations

import json

import numpy as np
import pytest
import segmentation_models_pytorch.losses as smp_losses
import torch
from torch import nn

from hf_segcompare.engine.losses import (
    LOSSES,
    SegmentationLoss,
    count_class_pixels,
    median_frequency_weights,
    read_class_weights,
)
from hf_segcompare.errors import UsageError

from .conftest import run_seg_in_process

# in the fast subset, which CI also runs on constraints/minimum.txt (the declared lower bounds)
pytestmark = pytest.mark.fast

CLASSES, VOID = 4, 255
WEIGHTS = [0.5, 2.0, 1.0, 3.0]


def _batch(seed=0, size=16):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (2, size, size), generator=generator)
    labels[:, :3] = VOID  # a void band
    labels[1, 5:9, 5:9] = VOID
    # SegFormer-like logits at a quarter of the labels' size
    logits = torch.randn(2, CLASSES, size // 4, size // 4, generator=generator)
    return logits, labels


def _reference(name: str, logits: torch.Tensor, labels: torch.Tensor, weights) -> torch.Tensor:
    """smp's losses (torch's cross-entropy) on the logits upsampled as SegFormer's own loss does."""
    full = nn.functional.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    terms = []
    for part in name.split("+"):
        if part == "ce":
            terms.append(nn.functional.cross_entropy(
                full, labels, ignore_index=VOID, weight=None if weights is None else torch.tensor(weights)))
        elif part == "dice":
            terms.append(smp_losses.DiceLoss("multiclass", ignore_index=VOID, class_weights=weights)(full, labels))
        elif part == "focal":
            terms.append(smp_losses.FocalLoss("multiclass", ignore_index=VOID, class_weights=weights)(full, labels))
        else:
            terms.append(smp_losses.LovaszLoss("multiclass", ignore_index=VOID)(full, labels))
    return sum(terms)


@pytest.mark.parametrize("name", LOSSES)
def test_each_loss_is_the_libraries_on_full_resolution_logits_ignoring_void_with_class_weights(name):
    logits, labels = _batch()
    weights = None if name == "lovasz" else WEIGHTS
    loss = SegmentationLoss(name, VOID, weights)(logits, labels)
    torch.testing.assert_close(loss, _reference(name, logits, labels, weights))
    assert torch.isfinite(loss) and loss > 0

    # void pixels carry no loss: whatever the prediction there, the loss is the same
    full = nn.functional.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    changed = full.clone()
    changed[:, :, :3] = torch.randn_like(changed[:, :, :3]) * 10
    changed[1, :, 5:9, 5:9] = 50.0
    torch.testing.assert_close(SegmentationLoss(name, VOID, weights)(changed, labels),
                               SegmentationLoss(name, VOID, weights)(full, labels))
    if weights is not None:  # and the weights count
        assert not torch.isclose(SegmentationLoss(name, VOID, None)(logits, labels), loss)


def test_weighted_cross_entropy_is_the_weighted_mean_over_annotated_pixels():
    logits, labels = _batch(seed=1)
    full = nn.functional.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    log_probabilities = full.log_softmax(1).permute(0, 2, 3, 1)[labels != VOID]
    targets = labels[labels != VOID]
    weight = torch.tensor(WEIGHTS)[targets]
    by_hand = -(weight * log_probabilities[torch.arange(len(targets)), targets]).sum() / weight.sum()
    torch.testing.assert_close(SegmentationLoss("ce", VOID, WEIGHTS)(logits, labels), by_hand)


def test_lovasz_with_class_weights_and_an_unknown_loss_are_refused_with_what_to_pass():
    with pytest.raises(UsageError, match="--loss lovasz takes no class weights.*--class_weights none"):
        SegmentationLoss("lovasz", VOID, WEIGHTS)
    with pytest.raises(UsageError, match="--loss jaccard: choose one of ce, dice, focal, lovasz, ce\\+dice"):
        SegmentationLoss("jaccard", VOID)


def test_median_frequency_weights_by_hand():
    masks = [np.array([[0, 0, 0, 1]]), np.array([[0, 2, 2, VOID]]), np.array([[0, 0, 0, 0]])]
    pixel_counts, image_pixels = count_class_pixels(masks, CLASSES)
    assert pixel_counts.tolist() == [8, 1, 2, 0]
    assert image_pixels.tolist() == [4 + 3 + 4, 4, 3, 0]  # void is in no image's pixels
    frequencies = np.array([8 / 11, 1 / 4, 2 / 3])
    median = np.median(frequencies)
    assert median_frequency_weights(pixel_counts, image_pixels) == pytest.approx(
        [median / frequencies[0], median / frequencies[1], median / frequencies[2], 1.0])


def test_a_weights_file_by_list_or_by_name_and_its_mistakes(tmp_path):
    names = ["background", "cat", "dog"]
    listed, named = tmp_path / "listed.json", tmp_path / "named.json"
    listed.write_text("[1, 2.5, 0]")
    named.write_text('{"dog": 3, "background": 0.5, "cat": 1}')
    assert read_class_weights(listed, names) == [1.0, 2.5, 0.0]
    assert read_class_weights(named, names) == [0.5, 1.0, 3.0]
    for content, message in (("[1, 2]", "expected 3 weights"), ('{"cat": 1, "cow": 2}', "unknown classes \\['cow'\\]"),
                             ("[1, -1, 2]", "every weight must be a finite number >= 0"),
                             ("[0, 0, 0]", "the weights are all 0"), ("{", "not valid JSON")):
        bad = tmp_path / "bad.json"
        bad.write_text(content)
        with pytest.raises(UsageError, match=f"--class_weights {bad}: {message}"):
            read_class_weights(bad, names)


def test_a_run_trains_with_the_loss_and_balanced_weights_and_records_them(voc_tree, tmp_path, capsys):
    output_dir = tmp_path / "out"
    status, stderr, _ = run_seg_in_process(
        ["--model", "unet-tiny", "--from_scratch", "--recipe", "demo", "--dataset_name", "voc", "--data_dir",
         str(voc_tree), "--output_dir", str(output_dir), "--max_steps", "2", "--per_device_train_batch_size", "4",
         "--save_strategy", "no", "--loss", "focal", "--class_weights", "balanced"], capsys)
    assert status == 0, stderr[-3000:]
    record = json.loads((output_dir / "results.json").read_text())
    loss = record["training_setup"]["loss"]
    assert loss["name"] == "focal" and loss["class_weights_from"].startswith("median frequency balancing over the 16")
    assert len(loss["class_weights"]) == 21 and min(loss["class_weights"]) > 0
    card = (output_dir / "README.md").read_text()
    assert "- Loss: Focal, gamma 2 (segmentation-models-pytorch's), ignoring label 255; class weights from median " \
           "frequency balancing" in card
    assert record["args"]["training"]["loss"] == "focal"

    status, stderr, _ = run_seg_in_process(["--model", "unet-tiny", "--loss", "lovasz", "--class_weights", "balanced",
                                            "--output_dir", str(tmp_path / "refused")], capsys)
    assert status == 2 and "--loss lovasz takes no class weights" in stderr
    assert not (tmp_path / "refused").exists()
