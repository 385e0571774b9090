"""Metric benchmark: streaming confusion matrices vs per-image numpy, and Trainer.evaluate() memory.

    python bench/bench_metrics.py            # everything, each measurement in its own process
    python bench/bench_metrics.py --quick    # fewer images

Part 1, 300 predictions of 500x375 (21 classes, 255 ignore pixels): seconds and peak memory of
  - per_image_numpy: evaluate's algorithm (np.histogram per image, areas summed), same semantics;
  - streaming_numpy / streaming_torch: hf_segcompare's confusion-matrix accumulation with
    numpy.bincount / torch.bincount.
  Target: streaming >= 10x faster than per-image numpy, same values.
Part 2, peak RSS of Trainer.evaluate() over 50 and over 500 validation images (segformer-tiny,
  128 px), with the streaming metric and with the transformers example's way (keep every logit,
  score at the end). Target: streaming at 500 within 10% of streaming at 50.
Prints one JSON object; each figure comes from a separate process so peaks do not mix.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NUM_LABELS = 21


def _peak_rss_mib() -> float:
    """Peak resident memory of this process since the last `_reset_peak` (Linux VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak() -> None:
    """Make the peak start again from the current resident size (Linux: clear_refs 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def _maps(count: int):
    rng = np.random.default_rng(0)
    references = rng.integers(0, NUM_LABELS, size=(count, 375, 500), dtype=np.uint8)
    references[rng.random(references.shape) < 0.05] = 255
    predictions = np.where(
        rng.random(references.shape) < 0.7, references, rng.integers(0, NUM_LABELS, references.shape)
    )
    predictions = np.where(predictions == 255, 0, predictions).astype(np.uint8)
    return predictions, references


def per_image_numpy(predictions, references):
    """evaluate's mean_iou algorithm: per image, np.histogram of intersection, prediction, label."""
    totals = np.zeros((3, NUM_LABELS))
    for prediction, reference in zip(predictions, references):
        keep = reference != 255
        prediction, reference = prediction[keep], reference[keep]
        intersect = prediction[prediction == reference]
        for row, values in enumerate((intersect, prediction, reference)):
            totals[row] += np.histogram(values, bins=NUM_LABELS, range=(0, NUM_LABELS - 1))[0]
    intersection, prediction_area, label_area = totals
    iou = intersection / (prediction_area + label_area - intersection)
    return float(np.nanmean(iou))


def streaming(predictions, references, backend: str):
    """numpy: hf_segcompare.evaluation.metrics.mean_iou (byte-pair bincount per image); torch: the Trainer
    path, per-sample confusion matrices from torch.bincount, batches of 8."""
    import torch

    from hf_segcompare.evaluation.metrics import confusion_matrices, mean_iou, scores_from_confusion

    if backend == "numpy":
        return mean_iou(predictions, references, NUM_LABELS, 255)["mean_iou"]
    total = np.zeros((NUM_LABELS + 1, NUM_LABELS + 1), dtype=np.int64)
    for start in range(0, len(predictions), 8):
        p, r = torch.from_numpy(predictions[start:start + 8]), torch.from_numpy(references[start:start + 8])
        total += confusion_matrices(p, r, NUM_LABELS).sum(0).numpy()
    return scores_from_confusion(total)["mean_iou"]


def measure_metric(method: str, count: int) -> dict:
    import torch  # noqa: F401 - imports are not part of what is timed

    import hf_segcompare.evaluation.metrics  # noqa: F401

    predictions, references = _maps(count)
    _reset_peak()
    baseline = _current_rss_mib()
    started = time.perf_counter()
    value = per_image_numpy(predictions, references) if method == "per_image_numpy" else \
        streaming(predictions, references, method.split("_")[1])
    return {"seconds": round(time.perf_counter() - started, 3), "mean_iou": value,
            "peak_mib_above_inputs": round(_peak_rss_mib() - baseline, 1)}


def measure_evaluate(num_images: int, mode: str, workdir: str) -> dict:
    import torch
    from transformers import Trainer, TrainingArguments

    from hf_segcompare.data import eval_transforms, generate_synthetic_voc, load_voc, make_batch_transform
    from hf_segcompare.engine.trainer import SegTrainer
    from hf_segcompare.models import IMAGENET, create_model

    tree = Path(workdir) / f"eval-{num_images}"
    if not tree.exists():
        generate_synthetic_voc(tree, num_train=1, num_val=num_images, min_size=100, max_size=128, seed=5)
    validation = load_voc(tree, cache_dir=Path(workdir) / "cache")["validation"]
    validation = validation.with_transform(make_batch_transform(eval_transforms(128, IMAGENET.mean, IMAGENET.std)))
    torch.manual_seed(0)
    model = create_model("segformer-tiny")
    args = TrainingArguments(output_dir=str(Path(workdir) / "out"), per_device_eval_batch_size=8, report_to="none",
                             remove_unused_columns=False, use_cpu=True)
    if mode == "streaming":
        trainer = SegTrainer(model, args, eval_dataset=validation)
    else:  # the transformers example's way: every logit kept, scored at the end
        from hf_segcompare.evaluation.metrics import mean_iou

        def compute_metrics(eval_prediction):
            logits = torch.from_numpy(eval_prediction.predictions)
            labels = eval_prediction.label_ids
            upsampled = torch.nn.functional.interpolate(logits, size=labels.shape[-2:], mode="bilinear")
            return {"mean_iou": mean_iou(upsampled.argmax(1).numpy(), labels, NUM_LABELS, 255)["mean_iou"]}

        trainer = Trainer(model=model, args=args, eval_dataset=validation, compute_metrics=compute_metrics)
    _reset_peak()
    baseline = _current_rss_mib()
    started = time.perf_counter()
    metrics = trainer.evaluate()
    return {"peak_rss_mib": round(_peak_rss_mib(), 1), "peak_mib_above_start": round(_peak_rss_mib() - baseline, 1),
            "seconds": round(time.perf_counter() - started, 2), "mean_iou": metrics["eval_mean_iou"]}


def _in_subprocess(*args: str) -> dict:
    output = subprocess.run([sys.executable, __file__, "--one", *args], capture_output=True, text=True, check=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "hf_segcompare_bench"))
    args = parser.parse_args()
    if args.one:
        kind, *rest = args.one
        result = measure_metric(rest[0], int(rest[1])) if kind == "metric" else \
            measure_evaluate(int(rest[0]), rest[1], args.workdir)
        print(json.dumps(result))
        return

    count = 60 if args.quick else 300
    metric = {method: _in_subprocess("metric", method, str(count))
              for method in ("per_image_numpy", "streaming_numpy", "streaming_torch")}
    sizes = (20, 200) if args.quick else (50, 500)
    evaluate_runs = {f"{mode}_{n}": _in_subprocess("evaluate", str(n), mode, "--workdir", args.workdir)
                     for mode in ("streaming", "keep_logits") for n in sizes}
    slow = metric["per_image_numpy"]["seconds"]
    small, large = (evaluate_runs[f"streaming_{n}"]["peak_rss_mib"] for n in sizes)
    print(json.dumps({
        "metric_on": f"{count} predictions of 500x375",
        "metric": metric,
        "speedup_streaming_numpy": round(slow / metric["streaming_numpy"]["seconds"], 1),
        "speedup_streaming_torch": round(slow / metric["streaming_torch"]["seconds"], 1),
        "same_values": len({round(m["mean_iou"], 12) for m in metric.values()}) == 1,
        "trainer_evaluate": evaluate_runs,
        f"streaming_peak_rss_{sizes[1]}_over_{sizes[0]}": round(large / small, 3),
    }, indent=2))


if __name__ == "__main__":
    main()
