"""Memory benchmark: does one very large validation image set a run's peak memory?

    python bench/bench_large_image.py                      # writes bench/results/large_image.json
    python bench/bench_large_image.py --model segformer-tiny --output /tmp/large.json

Each measurement is one ``scripts/run_seg.py`` process (one training step, then the evaluation, the
sample predictions and the card, as a user's run), and its peak resident memory is the kernel's
figure for that process (``wait4``'s ``ru_maxrss``). Two VOC-format folders are generated once into
--workdir: 16 training and 8 validation images of VOC's sizes (300-500 px), and the same with one more
validation image of 6000 x 4000 px (a phone photo) and its annotation. Each protocol is run on both,
alternating; the target is the run with the large image within 1.5x of the run without.

Under ``--protocol mmseg`` (and any sliding-window or multi-scale protocol) the image is scored at its
annotation's size, which `--max_eval_side` (default 2048) bounds: the 6000 x 4000 annotation is scored
shrunk to 2048 x 1365. Under ``native`` the batched path shrinks every image to the eval size.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, device_name, measured_commit, write_report  # noqa: E402

LARGE = (4000, 6000)  # height, width


def _trees(workdir: Path) -> dict[str, Path]:
    """The two VOC-format folders: without and with the large validation image."""
    from PIL import Image

    from hf_segcompare.data import generate_synthetic_voc, voc_palette

    without, with_large = workdir / "voc", workdir / "voc-large"
    if not without.exists():
        generate_synthetic_voc(without, num_train=16, num_val=8, min_size=300, max_size=500, seed=0)
    if not with_large.exists():
        shutil.copytree(without, with_large)
        root = with_large / "VOCdevkit" / "VOC2012"
        height, width = LARGE
        blocks = np.random.default_rng(0).integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8)
        Image.fromarray(blocks.repeat(8, 0).repeat(8, 1)).save(root / "JPEGImages" / "large_000000.jpg", quality=90)
        mask = np.zeros(LARGE, np.uint8)
        mask[1000:3000, 2000:4000] = 15  # a person
        mask[100:200, :] = 255  # a void band
        annotation = Image.fromarray(mask, "P")
        annotation.putpalette(np.asarray(voc_palette(), dtype=np.uint8).reshape(-1).tolist())
        annotation.save(root / "SegmentationClass" / "large_000000.png")
        with open(root / "ImageSets" / "Segmentation" / "val.txt", "a") as ids:
            ids.write("large_000000\n")
    return {"without": without, "with": with_large}


def _peak_run(args: list[str], env: dict[str, str]) -> tuple[int, float, str]:
    """Run run_seg.py with `args`; its peak RSS in bytes, its wall time, and its last line."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(REPO / "scripts" / "run_seg.py"), *args], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"run_seg.py {' '.join(args)} failed:\n{output[-3000:]}")
    summary = next(line for line in reversed(output.splitlines()) if "parameters; validation" in line)
    return usage.ru_maxrss * 1024, seconds, summary  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="segformer-b0")
    parser.add_argument("--protocols", nargs="+", default=["native", "mmseg"])
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per protocol and folder")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "hf_segcompare_bench_large"))
    parser.add_argument("--output", default=str(REPO / "bench" / "results" / "large_image.json"))
    args = parser.parse_args()
    workdir = Path(args.workdir)
    trees = _trees(workdir)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    results = {}
    for protocol in args.protocols:
        runs = {"without": [], "with": []}
        for _ in range(args.repeats):
            for side, tree in trees.items():
                output_dir = workdir / "runs" / f"{protocol}-{side}"
                peak, seconds, summary = _peak_run(
                    ["--model", args.model, "--from_scratch", "--recipe", "demo", "--protocol", protocol,
                     "--dataset_name", "voc", "--data_dir", str(tree), "--cache_dir", str(workdir / "cache"),
                     "--output_dir", str(output_dir), "--overwrite_output_dir", "--max_steps", "1",
                     "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "8",
                     "--save_strategy", "no"], env)
                runs[side].append({"peak_rss_bytes": peak, "wall_s": round(seconds, 1), "summary": summary})
                print(f"{protocol:7s} {side:8s} peak {peak / 2**20:8.0f} MiB  {seconds:6.1f} s", flush=True)
        highest = {side: max(run["peak_rss_bytes"] for run in values) for side, values in runs.items()}
        results[protocol] = {"runs": runs, "with_over_without": round(highest["with"] / highest["without"], 3)}
    write_report({
        "benchmark": "bench/bench_large_image.py",
        "date": datetime.date.today().isoformat(),
        "commit": measured_commit(["hf_segcompare", "bench", "scripts"]),
        "device": device_name(),
        "cpu_threads": os.cpu_count(),
        "model": args.model,
        "data": "16 train / 8 validation images of 300-500 px, and the same with one 6000 x 4000 validation "
                "image added; one training step, evaluation batch 8",
        "large_image": list(LARGE),
        "target": 1.5,
        "protocols": results,
    }, args.output)


if __name__ == "__main__":
    main()
