"""Evaluation by shape against square padding, for trained models: mIoU and eval samples/s.

    python bench/bench_padding.py outputs/unet outputs/deeplabv3plus outputs/vit outputs/segformer-b0
    python bench/bench_padding.py outputs/* --synthetic_sizes 40 128 --output bench/results/padding-40-128px.json

Each folder is a finished training run; its model is evaluated on its own run's validation data
(or on synthetic validation images of `--synthetic_sizes MIN MAX` px a side, at an eval size
that fits them) twice, one after the
other, with ``--eval_padding batch`` (images of one shape together, each batch padded to its own
size) and ``--eval_padding square`` (every image padded to the eval size). For a
model whose output at a pixel depends on that pixel alone both give the same figures (a test
checks it); a deep network sees different zeros near the bottom and right edges, so its mIoU may
move a little. The results go to one JSON (``--output``) for ``bench/report.py``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import device_name, write_report  # bench/common.py (this folder is on sys.path)

from hf_segcompare.config.arguments import parse_args
from hf_segcompare.data import generate_synthetic_voc
from hf_segcompare.pipeline.run import run
from hf_segcompare.report.results import RunResults


def evaluate(folder: Path, padding: str, workdir: Path, data_dir: Path | None = None) -> dict:
    """One evaluation-only run of the model in `folder`, on the data its training run used (or on
    the VOC-format folder `data_dir`)."""
    trained = RunResults.read(folder / "results.json")
    data = trained.args["data"]
    if data_dir is not None:
        data = {"dataset_name": "voc", "data_dir": str(data_dir), "cache_dir": data.get("cache_dir")}
    options = ["--model", trained.model, "--model_name_or_path", str(folder), "--do_train", "false",
               "--dataset_name", data["dataset_name"], "--eval_padding", padding,
               "--per_device_eval_batch_size", str(trained.args["training"]["per_device_eval_batch_size"]),
               "--output_dir", str(workdir / f"{trained.model}-{padding}")]
    for name in ("data_dir", "cache_dir", "eval_size"):
        if data.get(name) is not None:
            options += [f"--{name}", str(data[name])]
    final = run(*parse_args(options)).final_eval
    return {"mean_iou": final["eval_mean_iou"], "samples_per_second": final["eval_samples_per_second"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+", help="finished training runs (output folders)")
    parser.add_argument("--synthetic_sizes", type=int, nargs=2, metavar=("MIN", "MAX"),
                        help="evaluate on 61 synthetic validation images with sides of MIN to MAX px instead")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "padding.json")
    options = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-padding-"))
    data_dir = None
    if options.synthetic_sizes:
        low, high = options.synthetic_sizes
        data_dir = workdir / "data"
        generate_synthetic_voc(data_dir, num_train=2, num_val=61, min_size=low, max_size=high, seed=7)
    first = RunResults.read(options.folders[0] / "results.json")
    rows = {}
    for folder in options.folders:
        rows[RunResults.read(folder / "results.json").model] = {
            padding: evaluate(folder, padding, workdir, data_dir) for padding in ("batch", "square")}
    evaluated = RunResults.read(next((workdir / f"{first.model}-batch").glob("eval_*.json")))
    report = {
        "benchmark": "bench_padding",
        "date": time.strftime("%Y-%m-%d"),
        "device": device_name(),
        "data": (f"synthetic validation images of {options.synthetic_sizes[0]}-{options.synthetic_sizes[1]} px a side "
                 "(seed 7)" if options.synthetic_sizes else f"the runs' own {evaluated.dataset['name']} validation set")
                + f", {evaluated.dataset['validation_samples']} images, eval size {evaluated.dataset['eval_size']}",
        "models": rows,
    }
    return write_report(report, options.output)


if __name__ == "__main__":
    main()
