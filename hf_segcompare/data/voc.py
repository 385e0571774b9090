"""Pascal VOC 2012 segmentation as a `datasets.DatasetDict`.

`load_voc(root)` reads a folder in the layout of the official release::

    VOCdevkit/VOC2012/
        JPEGImages/<id>.jpg
        SegmentationClass/<id>.png          palette PNG, pixel value = class id, 255 = "void" boundary
        ImageSets/Segmentation/train.txt    one id per line
        ImageSets/Segmentation/val.txt

and returns ``DatasetDict(train=..., validation=...)`` with the columns ``id`` (string),
``image`` (Image) and ``label`` (Image). Images stay on disk; `datasets` stores their paths and
decodes them lazily, so loading the 2,913 VOC ids takes a fraction of a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image as PILImage

IGNORE_INDEX = 255
"""Mask value of VOC's "void" pixels (object boundaries, hard regions): ignored by loss and metric."""

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip

# `datasets` split names; VOC's own split files are called train.txt / val.txt.
SPLIT_FILES = {"train": "train", "validation": "val"}


def voc_palette() -> list[tuple[int, int, int]]:
    """The 256-entry VOC colour map (index 0 black, 1 dark red, ..., 255 cream for void).

    VOC builds it by spreading the bits of the class id over the high bits of R, G and B.
    """
    palette = []
    for index in range(256):
        red = green = blue = 0
        bits = index
        for shift in range(7, -1, -1):
            red |= (bits & 1) << shift
            green |= ((bits >> 1) & 1) << shift
            blue |= ((bits >> 2) & 1) << shift
            bits >>= 3
        palette.append((red, green, blue))
    return palette


def id2label() -> dict[int, str]:
    """Class id -> VOC class name, the mapping every model config carries."""
    return dict(enumerate(VOC_CLASSES))


def resolve_voc_root(data_dir: str | Path) -> Path:
    """Return the `VOC2012` folder for `data_dir` (which may hold `VOCdevkit/VOC2012`, hold `VOC2012`, or be it).

    Raises:
        FileNotFoundError: naming the missing path, when neither layout is there.
    """
    data_dir = Path(data_dir).expanduser()
    if not data_dir.exists():
        raise FileNotFoundError(
            f"VOC data folder {data_dir} does not exist. Pass --data_dir with a folder that holds "
            "VOCdevkit/VOC2012 (or is that folder), or use --dataset_name synthetic for the embedded data."
        )
    for candidate in (data_dir / "VOCdevkit" / "VOC2012", data_dir / "VOC2012", data_dir):
        if (candidate / "ImageSets" / "Segmentation").is_dir():
            return candidate
    raise FileNotFoundError(
        f"{data_dir / 'ImageSets' / 'Segmentation' / 'train.txt'} is missing (nor is there "
        f"{data_dir / 'VOCdevkit' / 'VOC2012' / 'ImageSets' / 'Segmentation'}): {data_dir} is not a "
        "VOC-format folder. Pass the folder that holds VOCdevkit/VOC2012, or VOC2012 itself."
    )


def read_split_ids(voc_root: Path, split_file: str) -> list[str]:
    """Ids listed in `ImageSets/Segmentation/<split_file>.txt`, in file order."""
    path = voc_root / "ImageSets" / "Segmentation" / f"{split_file}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: a VOC-format folder needs it to know the {split_file} ids.")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"{path} lists no ids.")
    return ids


def load_voc(data_dir: str | Path):
    """Load a VOC-format folder as ``DatasetDict(train, validation)``.

    Args:
        data_dir: a folder holding `VOCdevkit/VOC2012`, or the `VOC2012` folder itself.

    Returns:
        `datasets.DatasetDict` with splits ``train`` and ``validation`` and columns ``id``,
        ``image`` (RGB JPEG) and ``label`` (palette PNG of class ids, 255 = ignore).

    Raises:
        FileNotFoundError: naming the missing folder, split list, image or mask.
    """
    from datasets import Dataset, DatasetDict, Features, Image, Value

    voc_root = resolve_voc_root(data_dir)
    features = Features({"id": Value("string"), "image": Image(), "label": Image()})
    splits = {}
    for split, split_file in SPLIT_FILES.items():
        ids = read_split_ids(voc_root, split_file)
        images = [voc_root / "JPEGImages" / f"{sample_id}.jpg" for sample_id in ids]
        labels = [voc_root / "SegmentationClass" / f"{sample_id}.png" for sample_id in ids]
        for sample_id, image, label in zip(ids, images, labels):
            for path in (image, label):
                if not path.is_file():
                    raise FileNotFoundError(
                        f"{split_file}.txt lists id {sample_id!r} but {path} is missing."
                    )
        splits[split] = Dataset.from_dict(
            {"id": ids, "image": [str(p) for p in images], "label": [str(p) for p in labels]},
            features=features,
        )
    return DatasetDict(splits)


def mask_to_array(mask: PILImage.Image) -> np.ndarray:
    """Class-id array (H, W, uint8) of a VOC mask.

    VOC masks are palette ("P") PNGs whose pixel values *are* the class ids; converting them
    with ``.convert("L")`` would turn palette colours into grey levels, so they are read as is.
    """
    if mask.mode not in ("P", "L"):
        raise ValueError(
            f"mask {getattr(mask, 'filename', '')!r} has mode {mask.mode}; expected a palette (P) or "
            "greyscale (L) PNG whose pixel values are class ids."
        )
    return np.asarray(mask, dtype=np.uint8)
