"""A small, learnable, deterministic Pascal-VOC-format data set, written to disk.

Each image is a grey, noisy background (class 0) with one to three shapes (ellipse, rectangle,
triangle) of random VOC classes 1-20. Every class has its own saturated colour, so a model can
learn the task from colour and shape within minutes on a CPU, and a mIoU far above chance proves
that images and masks stayed aligned through loading and augmentation. As in the real VOC masks,
a band of 255 ("void") runs along every object boundary, and image sizes vary from image to image.

The tree has exactly the layout of ``VOCdevkit/VOC2012`` so the same `load_voc` path reads it.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..labels import IGNORE_INDEX, VOC_CLASSES
from .masks import voc_palette

SYNTHETIC_VERSION = 1  # bump when the generator's output changes, so caches are rebuilt
DEFAULT_CACHE_DIR = Path(os.environ.get("HF_SEGCOMPARE_CACHE", Path.home() / ".cache" / "hf_segcompare"))


def class_colours() -> np.ndarray:
    """RGB colour of each object class 1-20 (row 0, background, is unused): 10 hues x 2 brightnesses."""
    colours = np.zeros((len(VOC_CLASSES), 3), dtype=np.float32)
    for class_id in range(1, len(VOC_CLASSES)):
        hue = ((class_id - 1) % 10) / 10.0
        value = 0.95 if class_id <= 10 else 0.55
        colours[class_id] = np.array(colorsys.hsv_to_rgb(hue, 0.9, value)) * 255.0
    return colours


def _draw_sample(rng: np.random.Generator, min_size: int, max_size: int,
                 longer_side: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One (image HxWx3 uint8, mask HxW uint8) pair: each side in [min_size, max_size], or with
    `longer_side` one side that long (landscape or portrait) and the other in [min_size, max_size]."""
    if longer_side is None:
        width, height = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
    else:
        shorter, portrait = int(rng.integers(min_size, max_size + 1)), bool(rng.integers(0, 2))
        width, height = (shorter, longer_side) if portrait else (longer_side, shorter)
    mask_image = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask_image)
    for _ in range(int(rng.integers(1, 4))):
        class_id = int(rng.integers(1, len(VOC_CLASSES)))
        box_w = rng.uniform(0.3, 0.65) * width
        box_h = rng.uniform(0.3, 0.65) * height
        left = rng.uniform(0, width - box_w)
        top = rng.uniform(0, height - box_h)
        box = [left, top, left + box_w, top + box_h]
        shape = rng.integers(0, 3)
        if shape == 0:
            draw.ellipse(box, fill=class_id)
        elif shape == 1:
            draw.rectangle(box, fill=class_id)
        else:
            draw.polygon([(left, top + box_h), (left + box_w / 2, top), (left + box_w, top + box_h)], fill=class_id)
    classes = np.asarray(mask_image)

    # Image: grey background of random brightness with a gentle gradient; objects in their class
    # colour with a per-object brightness jitter; pixel noise on everything.
    grey = rng.uniform(70, 190)
    gradient = np.linspace(-25, 25, width)[None, :] * rng.choice([-1, 1])
    image = np.repeat((grey + gradient + np.zeros((height, 1)))[..., None], 3, axis=2)
    colours = class_colours()
    for class_id in np.unique(classes):
        if class_id:
            image[classes == class_id] = colours[class_id] * rng.uniform(0.85, 1.1)
    image += rng.normal(0, 10, size=image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)

    # VOC marks a band along every boundary as void: a pixel whose 3x3 neighbourhood holds more
    # than one class becomes 255.
    neighbourhood_max = np.asarray(mask_image.filter(ImageFilter.MaxFilter(3)))
    neighbourhood_min = np.asarray(mask_image.filter(ImageFilter.MinFilter(3)))
    mask = classes.copy()
    mask[neighbourhood_max != neighbourhood_min] = IGNORE_INDEX
    return image, mask


def generate_synthetic_voc(
    root: str | Path,
    num_train: int = 240,
    num_val: int = 61,
    min_size: int = 64,
    max_size: int = 96,
    seed: int = 0,
    longer_side: int | None = None,
) -> Path:
    """Write a VOC-format tree under `root` and return its `VOCdevkit/VOC2012` folder.

    Each image side is drawn from [min_size, max_size]; with `longer_side`, one side of every image
    is that long (landscape or portrait, at random) and the other is drawn from [min_size,
    max_size]: VOC's images have a longer side of 500, most of them 500x375 or 375x500
    (``min_size=max_size=375, longer_side=500``).

    The same arguments always give byte-identical files (each sample draws from its own seeded
    generator). `num_val` defaults to an odd number so distributed evaluation is exercised with
    a partial last batch.
    """
    voc_root = Path(root) / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc_root / sub).mkdir(parents=True, exist_ok=True)
    flat_palette = [channel for colour in voc_palette() for channel in colour]
    ids = {"train": [f"synth_{i:06d}" for i in range(num_train)],
           "val": [f"synth_{i:06d}" for i in range(num_train, num_train + num_val)]}
    for index, sample_id in enumerate(ids["train"] + ids["val"]):
        image, mask = _draw_sample(np.random.default_rng([seed, index]), min_size, max_size, longer_side)
        Image.fromarray(image).save(voc_root / "JPEGImages" / f"{sample_id}.jpg", quality=92)
        mask_png = Image.fromarray(mask, mode="L").convert("P")
        mask_png.putpalette(flat_palette)
        mask_png.save(voc_root / "SegmentationClass" / f"{sample_id}.png")
    for split, split_ids in ids.items():
        (voc_root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(split_ids) + "\n")
    (voc_root / "ImageSets" / "Segmentation" / "trainval.txt").write_text("\n".join(ids["train"] + ids["val"]) + "\n")
    return voc_root


def write_voc_tar(root: str | Path, tar_path: str | Path) -> Path:
    """Pack the `VOCdevkit` tree under `root` into an uncompressed tar laid out like the official one."""
    import tarfile

    tar_path = Path(tar_path)
    with tarfile.open(tar_path, "w") as tar:
        tar.add(Path(root) / "VOCdevkit", arcname="VOCdevkit")
    return tar_path


def generate_synthetic_sbd(
    root: str | Path, voc_root: str | Path, num_extra: int = 8, seed: int = 1, min_size: int = 64, max_size: int = 96
) -> Path:
    """Write an SBD-style `SegmentationClassAug` folder (index PNGs) and `train_aug.txt` under `root`.

    Like the real SBD it covers the VOC train ids, some VOC val ids (which train_aug must drop)
    and `num_extra` ids that VOC's segmentation lists do not have; the JPEGs of those extra ids
    are added to `voc_root/JPEGImages`, where the real release has them too.
    """
    root, voc_root = Path(root), Path(voc_root)
    aug = root / "SegmentationClassAug"
    aug.mkdir(parents=True, exist_ok=True)
    split_dir = voc_root / "ImageSets" / "Segmentation"
    train_ids = (split_dir / "train.txt").read_text().split()
    val_ids = (split_dir / "val.txt").read_text().split()
    extra_ids = [f"sbd_{i:06d}" for i in range(num_extra)]
    for sample_id in train_ids + val_ids[: max(1, len(val_ids) // 2)]:
        mask = np.asarray(Image.open(voc_root / "SegmentationClass" / f"{sample_id}.png"))
        Image.fromarray(mask, mode="L").save(aug / f"{sample_id}.png")
    for index, sample_id in enumerate(extra_ids):
        image, mask = _draw_sample(np.random.default_rng([seed, 10_000 + index]), min_size, max_size)
        Image.fromarray(image).save(voc_root / "JPEGImages" / f"{sample_id}.jpg", quality=92)
        Image.fromarray(mask, mode="L").save(aug / f"{sample_id}.png")
    listed = train_ids[::2] + val_ids[: max(1, len(val_ids) // 2)] + extra_ids
    (root / "train_aug.txt").write_text("\n".join(listed) + "\n")
    return root


def ensure_synthetic_voc(cache_dir: str | Path | None = None, **generator_kwargs) -> Path:
    """Return the cached synthetic tree for these generator arguments, generating it on first use.

    The tree is written to a temporary folder and renamed into place, so an interrupted
    generation never leaves a half-written tree that a later run would trust.
    """
    cache_dir = Path(cache_dir) if cache_dir else DEFAULT_CACHE_DIR
    key = json.dumps({"version": SYNTHETIC_VERSION, **generator_kwargs}, sort_keys=True)
    target = cache_dir / f"synthetic-voc-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if not target.is_dir():
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".synthetic-voc-", dir=cache_dir))
        try:
            generate_synthetic_voc(staging, **generator_kwargs)
            staging.rename(target)
        except OSError:
            # Another process (e.g. a second rank) finished first: its tree is identical.
            if not target.is_dir():
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target
