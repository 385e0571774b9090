"""Evaluation by shape: batches of one padded shape, padded only to that shape.

Padding changes what a deep network sees near the border, so the exact claim is made for a model
whose output at a pixel depends on that pixel only: bucketed and square evaluation must then give
identical metrics, with fewer pixels computed.
"""

from __future__ import annotations

import sys

import pytest
import torch
from transformers import PretrainedConfig, PreTrainedModel, TrainingArguments
from transformers.modeling_outputs import SemanticSegmenterOutput

from hf_segcompare.data import generate_synthetic_voc, load_voc
from hf_segcompare.engine.trainer import SegTrainer
from hf_segcompare.labels import IGNORE_INDEX, VOC_LABELS

# in the fast subset, which CI also runs on constraints/minimum.txt (the declared lower bounds)
pytestmark = pytest.mark.fast


class PixelConfig(PretrainedConfig):
    model_type = "per-pixel-test"


class PerPixelModel(PreTrainedModel):
    """A 1x1 convolution: each pixel's logits depend on that pixel's colour only."""

    config_class = PixelConfig

    def __init__(self, config):
        super().__init__(config)
        self.classifier = torch.nn.Conv2d(3, config.num_labels, kernel_size=1)
        self.pixels_seen = 0
        self.post_init()

    def forward(self, pixel_values, labels=None):
        self.pixels_seen += pixel_values.shape[0] * pixel_values.shape[-2] * pixel_values.shape[-1]
        logits = self.classifier(pixel_values)
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
        return SemanticSegmenterOutput(loss=loss, logits=logits)


def _evaluate(validation, tmp_path, padding: str, batch_size: int) -> tuple[dict, int]:
    torch.manual_seed(0)
    model = PerPixelModel(PixelConfig(id2label=VOC_LABELS.id2label,
                                      semantic_loss_ignore_index=IGNORE_INDEX))
    with torch.no_grad():  # spread the predictions over many classes, so every count matters
        model.classifier.weight.normal_(0, 3.0)
    args = TrainingArguments(output_dir=str(tmp_path / padding), per_device_eval_batch_size=batch_size,
                             report_to=[], use_cpu=True)
    trainer = SegTrainer(model, args, eval_dataset=validation, eval_padding=padding)
    return trainer.evaluate(), model.pixels_seen


@pytest.fixture(scope="module")
def varied_validation(tmp_path_factory):
    """Validation images of 20 to 100 px a side: padded shapes from 32 x 32 to 128 x 128."""
    root = tmp_path_factory.mktemp("varied")
    generate_synthetic_voc(root, num_train=2, num_val=9, min_size=20, max_size=100, seed=5)
    return load_voc(root)["validation"]


@pytest.mark.parametrize("batch_size", [1, 4])
def test_bucketed_and_square_evaluation_agree_for_a_per_pixel_model(varied_validation, tmp_path, batch_size):
    validation = varied_validation
    square, square_pixels = _evaluate(validation, tmp_path, "square", batch_size)
    bucketed, bucketed_pixels = _evaluate(validation, tmp_path, "batch", batch_size)
    # The scores; not eval_loss, a mean of per-batch means, which the regrouping changes.
    scores = {key: value for key, value in square.items()
              if key in ("eval_mean_iou", "eval_mean_accuracy", "eval_overall_accuracy") or "_iou_" in key}
    assert 0 < scores["eval_mean_iou"] < 1 and len([k for k in scores if k.startswith("eval_iou_")]) == 21
    for key, value in scores.items():
        assert bucketed[key] == pytest.approx(value, abs=0, nan_ok=True), key
    assert bucketed_pixels < 0.8 * square_pixels  # the point of it


def test_an_eval_size_that_no_model_can_take_is_refused(voc_tree, tmp_path):
    from hf_segcompare.errors import UsageError

    validation = load_voc(voc_tree)["validation"]
    model = PerPixelModel(PixelConfig(id2label=VOC_LABELS.id2label))
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    with pytest.raises(UsageError, match="--eval_size 100 is not a multiple of 32.*pass 128"):
        SegTrainer(model, args, eval_dataset=validation, eval_size=100)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_evaluation_hands_freed_memory_back_on_linux(tmp_path):
    """The trainer trims the heap after each evaluation batch (peak RSS: bench/bench_eval.py)."""
    from hf_segcompare.engine.callbacks import ReturnFreedMemory

    model = PerPixelModel(PixelConfig(id2label=VOC_LABELS.id2label))
    trainer = SegTrainer(model, TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True))
    returners = [c for c in trainer.callback_handler.callbacks if isinstance(c, ReturnFreedMemory)]
    assert len(returners) == 1 and returners[0]._trim is not None
    returners[0].on_prediction_step(trainer.args, trainer.state, trainer.control)
