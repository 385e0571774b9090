"""Evaluation by shape against square padding, for trained models: mIoU and eval samples/s.

    python bench/bench_padding.py outputs/unet outputs/deeplabv3plus outputs/vit outputs/segformer-b0

Each folder is a finished training run; its model is evaluated on its own run's validation data
twice, one after the other, with ``--eval_padding batch`` (images of one shape together, each batch
padded to its own size) and ``--eval_padding square`` (every image padded to the eval size). For a
model whose output at a pixel depends on that pixel alone both give the same figures (a test
checks it); a deep network sees different zeros near the bottom and right edges, so its mIoU may
move a little. The results go to one JSON (``--output``) for ``bench/report.py``.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from hf_segcompare.arguments import parse_args
from hf_segcompare.results import RunResults
from hf_segcompare.training import run


def evaluate(folder: Path, padding: str, workdir: Path) -> dict:
    """One evaluation-only run of the model in `folder`, on the data its training run used."""
    trained = RunResults.read(folder / "results.json")
    data = trained.args["data"]
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
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "padding.json")
    options = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-padding-"))
    first = RunResults.read(options.folders[0] / "results.json")
    report = {
        "benchmark": "bench_padding",
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({platform.machine()})",
        "data": f"{first.dataset['name']} validation set, {first.dataset['validation_samples']} images, eval size "
                f"{first.dataset['eval_size']}",
        "models": {},
    }
    for folder in options.folders:
        row = {padding: evaluate(folder, padding, workdir) for padding in ("batch", "square")}
        report["models"][RunResults.read(folder / "results.json").model] = row
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
