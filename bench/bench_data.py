"""Data benchmark: first vs cached load_voc, and the transform pipeline's images/s per worker.

    python bench/bench_data.py                 # ~1,500 VOC-sized images (generated once into --workdir)
    python bench/bench_data.py --images 300    # quicker

Prints one JSON object. Targets: the cached load at least 10x faster than the first;
the train transform's images/s per DataLoader worker, to size `--dataloader_num_workers`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from hf_segcompare.data import (
    generate_synthetic_voc,
    load_voc,
    make_batch_transform,
    train_transforms,
)
from hf_segcompare.models import IMAGENET


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1500, help="train + val images in the generated tree")
    parser.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "hf_segcompare_bench"))
    parser.add_argument("--transform_images", type=int, default=200, help="images timed through the transform")
    args = parser.parse_args()
    torch.set_num_threads(1)  # one DataLoader worker uses one core

    tree = Path(args.workdir) / f"voc-{args.images}"
    if not tree.exists():
        num_val = args.images // 2
        started = time.perf_counter()
        # VOC-sized images (VOC: at most 500 px a side).
        generate_synthetic_voc(tree, num_train=args.images - num_val, num_val=num_val, min_size=300, max_size=500)
        print(f"generated {args.images} images in {time.perf_counter() - started:.1f} s", flush=True)
    cache = Path(args.workdir) / "arrow-cache"
    shutil.rmtree(cache, ignore_errors=True)

    started = time.perf_counter()
    first = load_voc(tree, cache_dir=cache)
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    cached = load_voc(tree, cache_dir=cache)
    cached_s = time.perf_counter() - started
    assert len(cached["train"]) == len(first["train"])

    transform = make_batch_transform(train_transforms(512, IMAGENET.mean, IMAGENET.std))
    rows = cached["train"].select(range(min(args.transform_images, len(cached["train"]))))
    started = time.perf_counter()
    for row in rows:
        transform({"image": [row["image"]], "label": [row["label"]]})
    transform_s = time.perf_counter() - started

    print(json.dumps({
        "images": len(first["train"]) + len(first["validation"]),
        "first_load_s": round(first_s, 3),
        "cached_load_s": round(cached_s, 3),
        "cached_speedup": round(first_s / cached_s, 1),
        "train_transform_images_per_s_per_worker": round(len(rows) / transform_s, 1),
        "transform_includes": "JPEG/PNG decode from the Arrow cache, scale jitter, pad/crop 512, flip, normalise",
    }, indent=2))


if __name__ == "__main__":
    main()
