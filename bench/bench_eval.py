"""Evaluation benchmark: hf_segcompare against the transformers example, same weights, same images.

    pip install albumentations          # the example's own dependency (not one of ours)
    curl -LO https://raw.githubusercontent.com/huggingface/transformers/01080c629600d4ff3121446bb4f4a2e240c2cf41/examples/pytorch/semantic-segmentation/run_semantic_segmentation.py
    python bench/bench_eval.py --example run_semantic_segmentation.py

The example script is the user's download and is never committed here. Each measurement runs in a
process of its own (so peak memory is that run's), sides alternating (example, toolkit under
``--protocol native``, toolkit under ``--protocol mmseg``, example ...) at 50 and 200 validation
images, then the toolkit alone at 50 and 500 under each protocol for its memory. Every side
evaluates SegFormer-b0 (random weights, seed 0, saved once) on the same synthetic images (500x375
and 375x500, VOC's usual sizes) with the same eval batch, through `Trainer.evaluate()`; samples/s
is Trainer's ``eval_samples_per_second``, which covers the metric too.

What each side runs, per 500x375 image:
- the example: its own protocol, every image *and mask* resized to 512 x 512 (its image
  processor's size) and scored there, nearest-neighbour masks included;
- ``--protocol native``: the image as it is, padded to multiples of 32 (512 x 384), scored at the
  annotation's own size;
- ``--protocol mmseg`` (mmsegmentation's VOC test resize, the published recipe's default on VOC):
  resized to a short side of 512 (683 x 512, padded to 704 x 512), the prediction resized back and
  scored at the annotation's own size.
The JSON records the pixels each side runs per image; the mIoUs differ by those definitions.

What the bench changes in the example, and why (each change must match the script exactly once):
- offline: ``hf_hub_download`` of ``id2label.json`` returns the bench's local file, and
  ``evaluate.load("mean_iou")`` loads hf_segcompare's offline module of the same metric (the Hub's
  copy cannot be fetched here);
- transformers 5: ``send_example_telemetry`` no longer exists, so its import and call are dropped
  (the one change the example needs to run);
- equal definitions: the example scores with ``ignore_index=0`` (its sidewalk data set's
  "unlabeled"); for VOC the ignored value is 255 and class 0 is background, so the bench passes 255.

Writes one JSON (``--output``) naming the commit measured; ``bench/report.py`` turns it into the
tables of docs/benchmarks.md and the README.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import device_name, measured_commit, write_report  # bench/common.py (this folder is on sys.path)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
EVAL_BATCH = 8
PROTOCOLS = ("native", "mmseg")
EXAMPLE_SIZE = (512, 512)  # the example's image processor resizes every image and mask to this
# (what the example says, what the bench runs instead): each must occur exactly once.
EXAMPLE_CHANGES = [
    ("from transformers.utils import check_min_version, send_example_telemetry",
     "from transformers.utils import check_min_version"),
    ('    send_example_telemetry("run_semantic_segmentation", model_args, data_args)\n', ""),
    ("            ignore_index=0,\n", "            ignore_index=255,\n"),
]


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def patched_example(example: Path, workdir: Path) -> Path:
    """The example with `EXAMPLE_CHANGES` applied, written into `workdir` (never into the repository)."""
    source = example.read_text()
    for old, new in EXAMPLE_CHANGES:
        if source.count(old) != 1:
            raise SystemExit(f"{example}: expected exactly one {old.strip()[:60]!r}; is it the script of transformers "
                             "commit 01080c62 (examples/pytorch/semantic-segmentation/run_semantic_segmentation.py)?")
        source = source.replace(old, new)
    path = workdir / "run_semantic_segmentation_patched.py"
    path.write_text(source)
    return path


def prepare(workdir: Path, images: int) -> dict:
    """The validation images, the weights (saved once) and the example's parquet copies of the data."""
    import torch
    from transformers import SegformerImageProcessor

    from hf_segcompare.data import generate_synthetic_voc, load_voc
    from hf_segcompare.evaluation.inference import SegImageProcessor
    from hf_segcompare.labels import VOC_LABELS
    from hf_segcompare.models import create_model, model_normalization

    voc = workdir / "voc"
    if not (voc / "VOCdevkit").exists():
        generate_synthetic_voc(voc, num_train=2, num_val=images, min_size=375, max_size=375, longer_side=500, seed=0)
    weights = workdir / "weights"
    if not (weights / "model.safetensors").exists():
        torch.manual_seed(0)
        model = create_model("segformer-b0", id2label=VOC_LABELS.id2label)
        model.save_pretrained(weights)
        SegImageProcessor.for_model(model).save_pretrained(weights)
        # The example's folder: the same weights, with the processor it expects (resize to 512 x 512).
        example_weights = workdir / "weights-example"
        example_weights.mkdir(exist_ok=True)
        for name in ("model.safetensors", "config.json"):
            (example_weights / name).write_bytes((weights / name).read_bytes())
        normalization = model_normalization(model)
        SegformerImageProcessor(size={"height": 512, "width": 512}, image_mean=list(normalization.mean),
                                image_std=list(normalization.std)).save_pretrained(example_weights)
    (workdir / "id2label.json").write_text(json.dumps({str(k): v for k, v in VOC_LABELS.id2label.items()}))
    return {"voc": voc, "weights": weights, "dataset": load_voc(voc, cache_dir=str(workdir / "cache"))}


def example_data(workdir: Path, dataset, images: int) -> Path:
    """A parquet data set (train + the first `images` validation images) the example loads by path."""
    folder = workdir / f"parquet-{images}"
    if not (folder / "data").exists():
        (folder / "data").mkdir(parents=True)
        for split, rows in (("train", dataset["train"]), ("validation", dataset["validation"].select(range(images)))):
            rows.select_columns(["image", "label"]).to_parquet(folder / "data" / f"{split}-00000-of-00001.parquet")
    return folder


def run_example(script: Path, workdir: Path, images: int) -> dict:
    """One evaluation by the example (in this process, so its peak memory is this process's)."""
    import evaluate
    import huggingface_hub

    from hf_segcompare.evaluation.metrics import (
        MEAN_IOU_MODULE,  # the module imports hf_segcompare.evaluation.metrics anyway
    )

    data = workdir / f"parquet-{images}"  # written by the parent process
    load = evaluate.load
    evaluate.load = lambda name, *args, **kwargs: load(MEAN_IOU_MODULE) if name == "mean_iou" else load(name, *args,
                                                                                                          **kwargs)
    huggingface_hub.hf_hub_download = lambda repo_id, filename, **kwargs: str(workdir / "id2label.json")
    output = workdir / f"example-out-{images}"
    sys.argv = [str(script), "--model_name_or_path", str(workdir / "weights-example"), "--dataset_name", str(data),
                "--output_dir", str(output), "--do_eval", "--per_device_eval_batch_size", str(EVAL_BATCH),
                "--report_to", "none", "--seed", "0", "--remove_unused_columns", "false"]  # as its README says
    runpy.run_path(str(script), run_name="__main__")
    metrics = json.loads((output / "eval_results.json").read_text())
    return {"samples_per_second": metrics["eval_samples_per_second"], "mean_iou": metrics["eval_mean_iou"],
            "images": images, "peak_rss_mib": _peak_rss_mib()}


def run_toolkit(workdir: Path, images: int, protocol: str) -> dict:
    """One evaluation-only run of hf_segcompare (``run_seg.py --do_train false``) under
    ``--protocol protocol``, in this process."""
    from hf_segcompare.config.arguments import parse_args
    from hf_segcompare.pipeline.run import run

    prepared = prepare(workdir, images)
    results = run(*parse_args([
        "--model", "segformer-b0", "--model_name_or_path", str(prepared["weights"]), "--do_train", "false",
        "--dataset_name", "voc", "--data_dir", str(prepared["voc"]), "--cache_dir", str(workdir / "cache"),
        "--max_eval_samples", str(images), "--per_device_eval_batch_size", str(EVAL_BATCH),
        "--protocol", protocol, "--output_dir", str(workdir / f"toolkit-{protocol}-out-{images}"), "--seed", "0",
    ]))
    final = results.final_eval
    return {"samples_per_second": final["eval_samples_per_second"], "mean_iou": final["eval_mean_iou"],
            "images": images, "peak_rss_mib": _peak_rss_mib(), "torch_threads": results.environment["torch_threads"],
            "protocol": results.dataset["evaluation"]}


def pixels_run_per_image(sizes: list[tuple[int, int]]) -> dict[str, int]:
    """The mean number of pixels each side runs the model on per image (padding included)."""
    from hf_segcompare.data.transforms import batch_shape, padded_shape
    from hf_segcompare.evaluation.protocol import short_side_size

    def mean(shapes):
        return round(statistics.mean(height * width for height, width in shapes))

    return {"example": EXAMPLE_SIZE[0] * EXAMPLE_SIZE[1],
            "native": mean(padded_shape(height, width, 512) for height, width in sizes),
            "mmseg": mean(batch_shape([short_side_size(height, width, 512)]) for height, width in sizes)}


def _measure(side: str, images: int, options) -> dict:
    """One run of `side` (``example`` or a protocol of the toolkit) in a fresh process."""
    command = [sys.executable, __file__, "--_run", side, "--_images", str(images), "--workdir", str(options.workdir),
               "--example", str(options.example)]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if completed.returncode:
        raise SystemExit(f"{side} at {images} images failed:\n{completed.stderr[-3000:]}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    print(f"{side} {images}: {result['samples_per_second']:.2f} samples/s, peak RSS {result['peak_rss_mib']:.0f} MiB, "
          f"mIoU {result['mean_iou']:.4f}", file=sys.stderr, flush=True)
    return result


def _summary(side_runs: list[dict]) -> dict:
    speeds = [run["samples_per_second"] for run in side_runs]
    return {"samples_per_second": {"runs": [round(speed, 3) for speed in speeds], "min": round(min(speeds), 3),
                                   "median": round(statistics.median(speeds), 3)},
            "peak_rss_mib": round(statistics.median(run["peak_rss_mib"] for run in side_runs), 1),
            "mean_iou": side_runs[0]["mean_iou"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", type=Path, required=True,
                        help="the transformers example's run_semantic_segmentation.py (commit 01080c62)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 200], help="validation images, every side")
    parser.add_argument("--memory_sizes", type=int, nargs="+", default=[50, 500], help="toolkit alone, for its RSS")
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds (every side once) per size")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results" / "eval.json")
    parser.add_argument("--_run", choices=["example", *PROTOCOLS], help=argparse.SUPPRESS)
    parser.add_argument("--_images", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    options.workdir = options.workdir or Path(tempfile.mkdtemp(prefix="bench-eval-"))
    options.workdir.mkdir(parents=True, exist_ok=True)

    if options._run:  # a child process: one measurement, one JSON line
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        if options._run == "example":
            result = run_example(patched_example(options.example, options.workdir), options.workdir, options._images)
        else:
            result = run_toolkit(options.workdir, options._images, options._run)
        print(json.dumps(result))
        return result

    if not options.example.is_file():
        raise SystemExit(f"--example {options.example}: no such file; download it as the docstring says.")
    largest = max(options.sizes + options.memory_sizes)

    prepared = prepare(options.workdir, largest)
    for images in options.sizes:
        example_data(options.workdir, prepared["dataset"], images)
    from hf_segcompare.data.transforms import image_sizes

    sides = ("example", *PROTOCOLS)
    report = {
        "benchmark": "bench_eval",
        "date": time.strftime("%Y-%m-%d"),
        "commit": measured_commit(["hf_segcompare", "bench/bench_eval.py"]),
        "device": device_name(),
        "model": "segformer-b0 (random weights, seed 0)",
        "eval_batch_size": EVAL_BATCH,
        "images": "synthetic, 500x375 and 375x500 (VOC's usual sizes)",
        "sides": {"example": "its own protocol: every image and mask resized to 512x512, scored there",
                  "native": "--protocol native: native resolution, padded to multiples of 32, scored at the "
                            "annotation's size",
                  "mmseg": "--protocol mmseg: short side resized to 512 (mmsegmentation's VOC test resize), "
                           "scored at the annotation's size"},
        "pixels_run_per_image": pixels_run_per_image(image_sizes(prepared["dataset"]["validation"])),
        "example_changes": ["send_example_telemetry dropped (gone from transformers 5)",
                            "ignore_index=0 -> 255 (VOC's)",
                            "id2label.json and evaluate's mean_iou module from local files (offline)"],
        "load_average_before": os.getloadavg(),
        "sizes": {},
    }
    for images in options.sizes:
        runs = {side: [] for side in sides}
        for _ in range(options.repeats):
            for side in sides:
                runs[side].append(_measure(side, images, options))
        row = {side: _summary(side_runs) for side, side_runs in runs.items()}
        for protocol in PROTOCOLS:
            row[f"{protocol}_over_example"] = round(row[protocol]["samples_per_second"]["median"]
                                                    / row["example"]["samples_per_second"]["median"], 3)
        report["sizes"][str(images)] = row
    report["toolkit_peak_rss_mib"] = {}
    for protocol in PROTOCOLS:
        memory = {str(images): _measure(protocol, images, options)["peak_rss_mib"] for images in options.memory_sizes}
        low, high = memory[str(min(options.memory_sizes))], memory[str(max(options.memory_sizes))]
        report["toolkit_peak_rss_mib"][protocol] = {**{key: round(value, 1) for key, value in memory.items()},
                                                    "largest_over_smallest": round(high / low, 3)}
    report["load_average_after"] = os.getloadavg()
    return write_report(report, options.output)


if __name__ == "__main__":
    main()
