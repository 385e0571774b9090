"""Small datasets of one's own, written by the tests in the layouts people bring: an imagefolder, a
parquet folder in the transformers example's layout, an ADE20K tree, a Cityscapes tree.

Every image is a grey background with a few rectangles; each class has its own colour, so a
tiny model learns something in a few steps and a mask that moved against its image would show.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A distinct saturated colour per class id (the background, id 0, is grey)."""
    if class_id == 0:
        return (128, 128, 128)
    rng = np.random.default_rng(1000 + class_id)
    return tuple(int(v) for v in rng.integers(0, 256, size=3))


def draw(rng: np.random.Generator, class_ids: list[int], size: tuple[int, int] = (48, 64),
         background: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(image H x W x 3, mask H x W) with a rectangle of each of `class_ids` on `background`; the mask
    holds the ids as given (raw values: the caller decides what they mean)."""
    height, width = size
    mask = np.full((height, width), background, dtype=np.uint8)
    for class_id in class_ids:
        box_h, box_w = int(rng.integers(height // 4, height // 2)), int(rng.integers(width // 4, width // 2))
        top, left = int(rng.integers(0, height - box_h)), int(rng.integers(0, width - box_w))
        mask[top: top + box_h, left: left + box_w] = class_id
    image = np.zeros((height, width, 3), dtype=np.uint8)
    for value in np.unique(mask):
        image[mask == value] = class_colour(int(value))
    noise = rng.integers(-12, 13, size=image.shape)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8), mask


def samples(count: int, raw_ids: list[int], seed: int, size=(48, 64), background: int = 0, per_image: int = 2):
    """`count` (image, mask) pairs, each with `per_image` rectangles of ids drawn from `raw_ids`."""
    rng = np.random.default_rng(seed)
    return [draw(rng, list(rng.choice(raw_ids, size=per_image)), size, background) for _ in range(count)]


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_imagefolder(root: Path, splits: dict[str, list]) -> Path:
    """``root/<split>/`` with ``<n>.png`` images, ``<n>_mask.png`` masks and a metadata.jsonl."""
    for split, pairs in splits.items():
        folder = root / split
        folder.mkdir(parents=True)
        lines = []
        for index, (image, mask) in enumerate(pairs):
            Image.fromarray(image).save(folder / f"{split}{index:03d}.png")
            Image.fromarray(mask).save(folder / f"{split}{index:03d}_mask.png")
            lines.append(json.dumps({"file_name": f"{split}{index:03d}.png",
                                     "label_file_name": f"{split}{index:03d}_mask.png"}))
        (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return root


def write_parquet(root: Path, splits: dict[str, list], image_column: str = "pixel_values",
                  label_column: str = "label") -> Path:
    """The transformers example's layout: ``root/data/<split>-00000-of-00001.parquet`` with image and mask columns."""
    from datasets import Dataset, Features
    from datasets import Image as ImageFeature

    (root / "data").mkdir(parents=True)
    features = Features({image_column: ImageFeature(), label_column: ImageFeature()})
    for split, pairs in splits.items():
        rows = {image_column: [{"bytes": png_bytes(image), "path": None} for image, _ in pairs],
                label_column: [{"bytes": png_bytes(mask), "path": None} for _, mask in pairs]}
        Dataset.from_dict(rows, features=features).to_parquet(root / "data" / f"{split}-00000-of-00001.parquet")
    return root


def write_id2label(root: Path, names: list[str]) -> Path:
    path = root / "id2label.json"
    path.write_text(json.dumps({str(index): name for index, name in enumerate(names)}))
    return path


def write_ade20k(root: Path, train: list, validation: list, class_count: int = 150) -> Path:
    """An ``ADEChallengeData2016`` tree: JPEG images, annotations whose 0 is "other" and class i is
    stored as i + 1, and an objectInfo150.txt naming `class_count` classes."""
    release = root / "ADEChallengeData2016"
    for split, prefix, pairs in (("training", "ADE_train", train), ("validation", "ADE_val", validation)):
        (release / "images" / split).mkdir(parents=True)
        (release / "annotations" / split).mkdir(parents=True)
        for index, (image, mask) in enumerate(pairs, start=1):
            Image.fromarray(image).save(release / "images" / split / f"{prefix}_{index:08d}.jpg", quality=95)
            Image.fromarray(mask).save(release / "annotations" / split / f"{prefix}_{index:08d}.png")
    rows = ["Idx\tRatio\tTrain\tVal\tName"]
    rows += [f"{index}\t0.01\t100\t10\tthing{index}, synonym" for index in range(1, class_count + 1)]
    (release / "objectInfo150.txt").write_text("\n".join(rows) + "\n")
    return root


def write_cityscapes(root: Path, train: list, validation: list, city: str = "aachen") -> Path:
    """``leftImg8bit/`` and ``gtFine/`` with ``*_labelIds.png`` masks holding raw Cityscapes label ids."""
    for split, pairs in (("train", train), ("val", validation)):
        for folder in ("leftImg8bit", "gtFine"):
            (root / folder / split / city).mkdir(parents=True)
        for index, (image, mask) in enumerate(pairs):
            stem = f"{city}_{index:06d}_000019"
            Image.fromarray(image).save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            Image.fromarray(mask).save(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")
            Image.fromarray(mask).save(root / "gtFine" / split / city / f"{stem}_gtFine_color.png")  # ignored
    return root


# CamVid's colours for five of its classes; Void, Sky, Building, Tree and Car are also VOC palette colours.
CAMVID_TABLE = [("Sky", (128, 128, 128)), ("Building", (128, 0, 0)), ("Tree", (128, 128, 0)), ("Car", (64, 0, 128)),
                ("Void", (0, 0, 0))]


def rgb_mask(mask: np.ndarray, table: list) -> np.ndarray:
    """The RGB mask of a class-id mask, each id drawn in its table row's colour."""
    rgb = np.zeros((*mask.shape, 3), dtype=np.uint8)
    for class_id, (_, colour) in enumerate(table):
        rgb[mask == class_id] = colour
    return rgb


def write_camvid(root: Path, train: list, validation: list, table: list | None = CAMVID_TABLE) -> Path:
    """CamVid's layout: ``train/`` + ``train_labels/`` (``<name>_L.png`` RGB masks), ``val/`` + ``val_labels/``,
    a ``test/`` split that is not scored, and ``class_dict.csv`` (name,r,g,b) unless `table` is None."""
    for split, pairs in (("train", train), ("val", validation), ("test", validation[:1])):
        (root / split).mkdir(parents=True)
        (root / f"{split}_labels").mkdir()
        for index, (image, mask) in enumerate(pairs):
            Image.fromarray(image).save(root / split / f"0001TP_{index:06d}.png")
            Image.fromarray(rgb_mask(mask, CAMVID_TABLE)).save(root / f"{split}_labels" / f"0001TP_{index:06d}_L.png")
    if table is not None:
        rows = ["name,r,g,b"] + [f"{name},{r},{g},{b}" for name, (r, g, b) in table]
        (root / "class_dict.csv").write_text("\n".join(rows) + "\n")
    return root


def write_images_and_masks(root: Path, splits: dict[str, list], mask_suffix: str = ".png",
                           save_mask=None) -> Path:
    """``images/<split>/<n>.jpg`` and ``masks/<split>/<n><mask_suffix>`` (no metadata): the layout
    most tools export. `save_mask(array, path)` writes a mask (default: an 8-bit PNG as it is)."""
    for split, pairs in splits.items():
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for index, (image, mask) in enumerate(pairs):
            Image.fromarray(image).save(root / "images" / split / f"{index:04d}.jpg", quality=95)
            path = root / "masks" / split / f"{index:04d}{mask_suffix}"
            (save_mask or (lambda array, target: Image.fromarray(array).save(target)))(mask, path)
    return root


def write_saved_dataset(root: Path, splits: dict[str, list], names: list[str]) -> Path:
    """A ``DatasetDict.save_to_disk`` folder: image and label Image columns, the label a ClassLabel-free
    mask, with the classes in an id2label.json beside it."""
    from datasets import Dataset, DatasetDict, Features
    from datasets import Image as ImageFeature

    features = Features({"image": ImageFeature(), "label": ImageFeature()})
    DatasetDict({split: Dataset.from_dict(
        {"image": [{"bytes": png_bytes(image), "path": None} for image, _ in pairs],
         "label": [{"bytes": png_bytes(mask), "path": None} for _, mask in pairs]}, features=features)
        for split, pairs in splits.items()}).save_to_disk(str(root))
    write_id2label(root, names)
    return root
