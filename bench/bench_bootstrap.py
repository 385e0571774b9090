"""What the confidence interval and the per-image measurements cost an evaluation.

    python bench/bench_bootstrap.py                     # 1,449 images (VOC's validation set size)
    python bench/bench_bootstrap.py --images 200 --extras_images 50   # a quick look

Part 1: one evaluation of SegFormer-b0 (random weights, seed 0) over `--images` synthetic images of
VOC's usual sizes (500x375 and 375x500) through `SegTrainer.evaluate()`, then the 95 % bootstrap
interval of its mean IoU from the per-image counts (1,000 resamples; the median of 5 timings),
measured in the same process one after the other. Target: the bootstrap adds under 5 % to the
evaluation.

Part 2: what the per-image boundary IoU and calibration counts add to the evaluation itself: the
first `--extras_images` images evaluated alternately with the toolkit's metric and with one that
counts the confusion matrices only (mean IoU alone, as before them), twice each; the median of
each side's wall time.

Writes one JSON (``--output``); ``bench/report.py`` turns it into the table of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from common import device_name, write_report  # bench/common.py (this folder is on sys.path)

EVAL_BATCH = 8
RESAMPLES = 1000


def _trainer(dataset, model, output_dir: Path, metrics=None):
    from transformers import TrainingArguments

    from hf_segcompare.engine.trainer import SegTrainer

    args = TrainingArguments(output_dir=str(output_dir), per_device_eval_batch_size=EVAL_BATCH, report_to="none",
                             disable_tqdm=True, seed=0, batch_eval_metrics=True)
    extra = {} if metrics is None else {"compute_metrics": metrics.compute,
                                        "preprocess_logits_for_metrics": metrics.preprocess_logits}
    return SegTrainer(model, args, eval_dataset=dataset, **extra)


class ConfusionOnly:
    """The metric as it was before the per-image measurements: confusion matrices, mean IoU only."""

    def __init__(self, metrics):
        self.metrics = metrics

    def preprocess_logits(self, logits, labels):
        import torch.nn.functional as F

        from hf_segcompare.evaluation.metrics import confusion_matrices

        if logits.shape[-2:] != labels.shape[-2:]:
            logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
        return confusion_matrices(logits.argmax(dim=1), labels, self.metrics.num_labels, self.metrics.ignore_index)

    def compute(self, eval_prediction, compute_result: bool = True):
        import torch

        from hf_segcompare.evaluation.metrics import scores_from_confusion

        size = self.metrics.num_labels + 1
        total = torch.as_tensor(eval_prediction.predictions).reshape(-1, size, size).sum(dim=0)
        self.metrics._total = total if self.metrics._total is None else self.metrics._total + total
        if not compute_result:
            return {}
        total, self.metrics._total = self.metrics._total.numpy(), None
        return {"mean_iou": scores_from_confusion(total)["mean_iou"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1449)
    parser.add_argument("--extras_images", type=int, default=200)
    parser.add_argument("--workdir", default=None, help="where the synthetic images go (default: a temporary folder)")
    parser.add_argument("--output", default="bench/results/bootstrap.json")
    options = parser.parse_args(argv)

    import torch

    from hf_segcompare.data import generate_synthetic_voc, load_voc
    from hf_segcompare.evaluation.intervals import mean_iou_interval
    from hf_segcompare.evaluation.metrics import SegmentationMetrics
    from hf_segcompare.labels import VOC_CLASSES, VOC_LABELS
    from hf_segcompare.models import create_model

    with tempfile.TemporaryDirectory() as temporary:
        workdir = Path(options.workdir or temporary)
        voc = workdir / "voc"
        if not (voc / "VOCdevkit").exists():
            generate_synthetic_voc(voc, num_train=2, num_val=options.images, min_size=375, max_size=375,
                                   longer_side=500, seed=0)
        dataset = load_voc(voc, cache_dir=str(workdir / "cache"))["validation"]
        torch.manual_seed(0)
        model = create_model("segformer-b0", id2label=VOC_LABELS.id2label).eval()

        trainer = _trainer(dataset, model, workdir / "out")
        start = time.perf_counter()
        scores = trainer.evaluate()
        evaluation_seconds = time.perf_counter() - start
        counts = trainer.final_counts()
        timings = []
        for _ in range(5):
            start = time.perf_counter()
            interval = mean_iou_interval(counts, RESAMPLES)
            timings.append(time.perf_counter() - start)
        bootstrap_seconds = statistics.median(timings)

        subset = dataset.select(range(min(options.extras_images, len(dataset))))
        sides = {"with_boundary_and_calibration": [], "confusion_only": []}
        for _ in range(2):
            for side in sides:
                metrics = SegmentationMetrics(VOC_CLASSES)
                chosen = metrics if side == "with_boundary_and_calibration" else ConfusionOnly(metrics)
                extras_trainer = _trainer(subset, model, workdir / "out-extras", chosen)
                start = time.perf_counter()
                extras_trainer.evaluate()
                sides[side].append(time.perf_counter() - start)
        with_extras, without = (statistics.median(sides[side]) for side in sides)

    report = {
        "benchmark": "bench_bootstrap",
        "date": date.today().isoformat(),
        "device": device_name(),
        "torch_threads": torch.get_num_threads(),
        "model": "segformer-b0 (random weights, seed 0)",
        "eval_batch_size": EVAL_BATCH,
        "images": "synthetic, 500x375 and 375x500 (VOC's usual sizes)",
        "bootstrap": {
            "images": len(counts),
            "resamples": RESAMPLES,
            "evaluation_seconds": round(evaluation_seconds, 2),
            "bootstrap_seconds_median_of_5": round(bootstrap_seconds, 4),
            "bootstrap_over_evaluation": round(bootstrap_seconds / evaluation_seconds, 5),
            "mean_iou": scores["eval_mean_iou"],
            "interval": interval["interval"],
        },
        "per_image_measurements": {
            "images": len(subset),
            "seconds": {side: [round(value, 2) for value in values] for side, values in sides.items()},
            "with_over_without": round(with_extras / without, 3),
        },
    }
    return write_report(report, options.output)


if __name__ == "__main__":
    main()
