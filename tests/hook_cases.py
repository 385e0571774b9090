"""Random label and logit shapes scored through a real `Trainer.evaluate` with `SegmentationMetrics`'
hooks, as a user wires them into their own Trainer: ``python tests/hook_cases.py OUT.npz`` (one process)
or under ``accelerate launch --multi_gpu --num_processes 2``. The main process writes each image's
counts; tests/test_trainer_hooks.py compares them with evaluate's mean_iou semantics.

The model hands the sample's logits through untouched, so the logits' size is the case's own. Trainer
gathers the labels across processes as well, which needs one width per step: the two images of a step
(one per process) share their label width and differ in everything else.
"""

from __future__ import annotations

import sys
import tempfile

import numpy as np
import torch

CLASS_COUNTS = (2, 5, 21)
CASES_PER_COUNT = 100
IGNORE = 255
# (label height, label width, logit height, logit width), in pairs of one width: first the cases that a crop
# inferred from the logits' aspect got wrong (a lost last row, a 2 x 1 map scored from one row, no row left)
FIXED_SHAPES = [(2, 1, 1, 1), (3, 1, 2, 2), (64, 63, 16, 16), (5, 63, 1, 1), (1, 1, 5, 7), (40, 1, 3, 3),
                (63, 64, 16, 16), (1, 64, 4, 4)]


def cases(num_labels: int, count: int = CASES_PER_COUNT, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """`count` samples {pixel_values: logits [C, h, w], labels [H, W]} of random shapes (the fixed ones
    first); labels hold classes, values past the last class and the ignore index, as evaluate allows."""
    rng = np.random.default_rng(seed + num_labels)
    shapes = list(FIXED_SHAPES)
    while len(shapes) < count:
        width = int(rng.integers(1, 49))  # one width for the two images of a step
        shapes += [(int(rng.integers(1, 49)), width, *map(int, rng.integers(1, 25, 2))) for _ in range(2)]
    samples = []
    for height, width, logit_height, logit_width in shapes[:count]:
        labels = rng.integers(0, num_labels + 2, (height, width))
        labels[rng.random((height, width)) < 0.15] = IGNORE
        logits = rng.normal(size=(num_labels, logit_height, logit_width)).astype(np.float32)
        samples.append({"pixel_values": torch.from_numpy(logits), "labels": torch.from_numpy(labels)})
    return samples


class PassLogits(torch.nn.Module):
    """A model whose logits are its input (and whose loss is 0)."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))

    def forward(self, pixel_values, labels=None):
        return {"loss": self.weight * 0, "logits": pixel_values + self.weight}


def evaluate_cases(output: str) -> None:
    from transformers import Trainer, TrainingArguments

    from hf_segcompare.evaluation.metrics import SegmentationMetrics

    counts = {}
    for num_labels in CLASS_COUNTS:
        metrics = SegmentationMetrics([f"c{index}" for index in range(num_labels)], ignore_index=IGNORE)
        args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_eval_batch_size=1, batch_eval_metrics=True,
                                 report_to=[], use_cpu=True, disable_tqdm=True, dataloader_num_workers=0)
        trainer = Trainer(model=PassLogits(), args=args, eval_dataset=cases(num_labels),
                          compute_metrics=metrics.compute, preprocess_logits_for_metrics=metrics.preprocess_logits)
        scores = trainer.evaluate()
        counts.update({f"{name}_{num_labels}": value for name, value in metrics.last_counts.items()})
        counts[f"mean_iou_{num_labels}"] = np.float64(scores["eval_mean_iou"])
    if trainer.is_world_process_zero():
        np.savez(output, **counts)


if __name__ == "__main__":
    evaluate_cases(sys.argv[1])
