"""Images and masks in folders, paired by name: the layouts people download and export.

`find_paired_layout(root)` recognises, in this order (split folders ``train``/``training``,
``val``/``valid``/``validation``; ``test`` is left out, since it is not scored)::

    root/train/  root/train_labels/      CamVid's: a mask folder beside each split folder
                                          (``<split>_labels``, ``_masks``, ``_annot``, ``annot`` ...)
    root/train/images/  root/train/masks/ a split folder holding an image and a mask folder
    root/train/x.jpg  root/train/x_mask.png
                                          a split folder holding both, masks by their suffix
    root/images/train/  root/masks/train/ an image and a mask folder, each split inside
    root/images/  root/masks/             no split folders: one training split
    root/x.jpg  root/x_mask.png           no folders: one training split

Mask folders are named ``masks``, ``annotations``, ``labels``, ``gt`` ... (`MASK_FOLDERS`); image
folders ``images``, ``imgs``, ``JPEGImages`` ... A mask pairs with the image of its relative path
and name, with or without a mask suffix (``x_mask.png``, CamVid's ``x_L.png``: `MASK_SUFFIXES`).
Every image needs its mask: one without stops the load, naming it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

logger = logging.getLogger(__name__)

SPLIT_FOLDERS = {"train": "train", "training": "train", "val": "validation", "valid": "validation",
                 "validation": "validation"}
UNSCORED_SPLITS = ("test", "testing")
IMAGE_FOLDERS = ("images", "image", "imgs", "img", "jpegimages", "photos", "rgb")
MASK_FOLDERS = ("masks", "mask", "annotations", "annotation", "labels", "label", "gt", "groundtruth", "ground_truth",
                "segmentations", "segmentation", "segmentationclass", "annot")
# CamVid's split-folder siblings: train_labels/ (Kaggle's), trainannot/ (SegNet's).
SIBLING_SUFFIXES = ("_labels", "_label", "_masks", "_mask", "_annot", "annot", "_annotations", "_gt", "-labels",
                    "-masks")
MASK_SUFFIXES = ("_mask", "_masks", "_L", "_label", "_labels", "_gt", "_seg", "_segmentation", "_annotation", "-mask",
                 "_labelIds")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MASK_FILE_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".jpg", ".jpeg")  # JPEGs: refused as lossy
SHOWN = 5


@dataclass(frozen=True)
class PairedLayout:
    """Where each split's images and masks lie under `root`: ``splits`` = ((split, image folder,
    mask folder), ...) relative to `root` (the same folder where masks are told by their suffix),
    and what the layout is called, for the record."""

    root: Path
    splits: tuple[tuple[str, str, str], ...]
    name: str

    def samples(self) -> dict[str, list[tuple[str, str, str, None]]]:
        """(id, image, mask, None) per split, paths relative to `root`: see `pair_by_name`."""
        return {split: pair_by_name(self.root, images, masks) for split, images, masks in self.splits}


def _folders(folder: Path) -> dict[str, Path]:
    return {child.name.lower(): child for child in sorted(folder.iterdir()) if child.is_dir()} \
        if folder.is_dir() else {}


def _first(folders: dict[str, Path], names: tuple[str, ...]) -> Path | None:
    return next((folders[name] for name in names if name in folders), None)


def _has_images(folder: Path) -> bool:
    return any(path.suffix.lower() in IMAGE_SUFFIXES for path in folder.iterdir() if path.is_file())


def _relative(path: Path, root: Path) -> str:
    return "." if path == root else str(path.relative_to(root))


def _split_of(name: str) -> str | None:
    return SPLIT_FOLDERS.get(name.lower())


def find_paired_layout(root: Path) -> PairedLayout | None:
    """The layout of image and mask folders under `root` (see the module), or None if it is none of them."""
    root = Path(root)
    folders = _folders(root)
    split_folders = {name: path for name, path in folders.items() if _split_of(name)}
    if split_folders:
        splits = []
        for name, folder in split_folders.items():
            sibling = _first(folders, tuple(f"{name}{suffix}" for suffix in SIBLING_SUFFIXES))
            inner = _folders(folder)
            images, masks = _first(inner, IMAGE_FOLDERS), _first(inner, MASK_FOLDERS)
            if sibling is not None:
                splits.append((_split_of(name), folder, sibling, "split folders beside their mask folders"))
            elif images is not None and masks is not None:
                splits.append((_split_of(name), images, masks, "split folders holding images/ and masks/"))
            elif _has_images(folder):
                splits.append((_split_of(name), folder, folder, "split folders holding images and suffixed masks"))
        if splits:
            return PairedLayout(root, tuple((split, _relative(images, root), _relative(masks, root))
                                            for split, images, masks, _ in splits), splits[0][3])
    images, masks = _first(folders, IMAGE_FOLDERS), _first(folders, MASK_FOLDERS)
    if images is not None and masks is not None:
        inner = {name: path for name, path in _folders(images).items() if _split_of(name)}
        if inner:
            mask_splits = _folders(masks)
            pairs = tuple((_split_of(name), _relative(path, root), _relative(mask_splits.get(name, masks / name), root))
                          for name, path in inner.items())
            return PairedLayout(root, pairs, "images/ and masks/ folders, each split inside")
        return PairedLayout(root, (("train", _relative(images, root), _relative(masks, root)),),
                            "images/ and masks/ folders, no split folders")
    if _has_images(root) and any(_mask_key(path.name) for path in root.iterdir() if path.is_file()):
        return PairedLayout(root, (("train", ".", "."),), "images and suffixed masks in one folder")
    return None


def _mask_key(name: str) -> str | None:
    """The stem a suffixed mask file name pairs with (``x_mask.png`` -> ``x``), or None."""
    stem, suffix = Path(name).stem, Path(name).suffix.lower()
    if suffix not in MASK_FILE_SUFFIXES:
        return None
    for mask_suffix in MASK_SUFFIXES:
        if stem.endswith(mask_suffix) and len(stem) > len(mask_suffix):
            return stem[: -len(mask_suffix)]
    return None


def _files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file() and not path.name.startswith("."))


def pair_by_name(root: Path, image_folder: str, mask_folder: str) -> list[tuple[str, str, str, None]]:
    """(id, image, mask, None) for every image under ``root/image_folder``, its mask found under
    ``root/mask_folder`` at the same relative path and name (its suffix aside), with or without a
    mask suffix. In one shared folder, masks are the suffixed files.

    Raises:
        DataError: an image without a mask, or one with two, named with where its mask was sought.
    """
    images_at, masks_at = root / image_folder, root / mask_folder
    shared = images_at == masks_at
    masks: dict[str, list[str]] = {}
    mask_files = set()
    for path in _files(masks_at):
        relative = path.relative_to(masks_at)
        key = _mask_key(path.name)
        if shared and key is None:
            continue
        if key is None and path.suffix.lower() not in MASK_FILE_SUFFIXES:
            continue
        mask_files.add(path)
        parent = "" if str(relative.parent) == "." else f"{relative.parent.as_posix()}/"
        for candidate in {key, None if shared else path.stem} - {None}:
            masks.setdefault(parent + candidate, []).append(_relative(path, root))
    samples, missing, twice = [], [], []
    for path in _files(images_at):
        if path.suffix.lower() not in IMAGE_SUFFIXES or path in mask_files:
            continue
        relative = path.relative_to(images_at)
        key = relative.with_suffix("").as_posix()
        found = masks.get(key, [])
        if not found:
            missing.append(_relative(path, root))
        elif len(found) > 1:
            twice.append(f"{_relative(path, root)} ({', '.join(found)})")
        else:
            samples.append((key, _relative(path, root), found[0], None))
    where = f"{masks_at}" + (" (masks named with a suffix such as _mask or _L)" if shared else "")
    if missing:
        raise DataError(f"{len(missing)} image(s) under {images_at} have no mask in {where}: "
                        f"{missing[:SHOWN]}. Give each image its mask (same name, optionally with a suffix such as "
                        "_mask), or move the image out.")
    if twice:
        raise DataError(f"{len(twice)} image(s) under {images_at} match two masks: {twice[:SHOWN]}; keep one mask "
                        "per image.")
    if not samples:
        raise DataError(f"{images_at} holds no image ({', '.join(IMAGE_SUFFIXES)}).")
    unused = len(mask_files) - len(samples)
    if unused > 0:
        logger.warning("%d mask file(s) under %s match no image and are not used", unused, masks_at)
    return samples


SINGLE_CHANNEL_MODES = ("1", "L", "P", "I", "I;16", "I;16L", "I;16B", "I;16N")


def _single_channel(path: Path) -> bool:
    """Whether the image file at `path` has one channel, as masks do (its header only is read)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.mode in SINGLE_CHANNEL_MODES
    except Exception:  # unreadable: not a mask we can tell; the caller reports it when it reads it
        return False


def _is_mask_folder(name: str) -> bool:
    name = name.lower()
    return name in MASK_FOLDERS or name in ("gtfine", "gtcoarse", "segmentationclassaug", "segmentationobject") or \
        any(name.endswith(suffix) and _split_of(name[: -len(suffix)]) for suffix in SIBLING_SUFFIXES)


def photos_under(path: Path) -> tuple[list[Path], list[str]]:
    """The photos to segment at `path` (a file, or a folder searched through its subfolders), and
    what was skipped as a mask, each with why: folders named like mask folders (``masks/``,
    ``annotations/``, CamVid's ``train_labels/`` ...), single-channel files named like masks
    (``x_mask.png``, ``x_L.png``), and a single-channel file beside a photo of the same name
    (``x.png`` beside ``x.jpg``: the photo's mask)."""
    path = Path(path)
    if path.is_file():
        return [path], []
    skipped = []
    candidates = []
    for file in _files(path):
        relative = file.relative_to(path)
        masks_folder = next((part for part in relative.parts[:-1] if _is_mask_folder(part)), None)
        if file.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if masks_folder is not None:
            skipped.append(f"{relative} (in a mask folder, {masks_folder}/)")
        elif _mask_key(file.name) is not None and _single_channel(file):
            skipped.append(f"{relative} (a mask by its name)")
        else:
            candidates.append(file)
    by_name: dict[tuple[Path, str], list[Path]] = {}
    for file in candidates:
        by_name.setdefault((file.parent, file.stem), []).append(file)
    photos = []
    for files in by_name.values():
        colour = [file for file in files if not _single_channel(file)] if len(files) > 1 else files
        for file in files:
            if file in colour or not colour:
                photos.append(file)
            else:
                skipped.append(f"{file.relative_to(path)} (a one-channel image beside the photo {colour[0].name}: "
                               "its mask)")
    return sorted(photos), skipped


LAYOUTS_HELP = ("an imagefolder (split folders with a metadata.jsonl naming each image's mask), parquet files, a "
                "save_to_disk folder, or images and masks paired by name: images/ + masks/ (or annotations/, labels/), "
                "each with train/ and val/ folders or not, train/ + train_labels/ as CamVid, or x.jpg + x_mask.png "
                "(see docs/data.md)")


__all__ = ["LAYOUTS_HELP", "PairedLayout", "find_paired_layout", "pair_by_name", "photos_under"]
