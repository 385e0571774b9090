"""Pascal VOC 2012 segmentation as validated, cached splits (a `SegmentationData`).

`load_voc(data_dir)` reads the layout of the official release, from the extracted folder or
straight from `VOCtrainval_11-May-2012.tar`::

    VOCdevkit/VOC2012/
        JPEGImages/<id>.jpg
        SegmentationClass/<id>.png          palette PNG, pixel value = class id, 255 = "void" boundary
        ImageSets/Segmentation/train.txt    one id per line (1,464 ids)
        ImageSets/Segmentation/val.txt      (1,449 ids)

optionally with the SBD "aug" masks for a 10,582-id train split, and returns the
``train`` and ``validation`` splits (a `SegmentationData`) with the columns ``id`` (string), ``image`` and
``label`` (Image). Every sample is validated once, while it is written to an Arrow cache keyed
by the source's file signatures; later loads memory-map that cache and read nothing else.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..labels import VOC_CLASSES
from .label_source import LabelOptions, id2label_in_folder
from .mask_reading import MaskReading, find_colour_table
from .segmentation_data import SegmentationData
from .validation import finish_validation, validated_split

# `datasets` split names; VOC's own split files are called train.txt / val.txt.
SPLIT_FILES = {"train": "train", "validation": "val"}


def read_split_ids(source, split_file: str) -> list[str]:
    """Ids listed in `ImageSets/Segmentation/<split_file>.txt`, in file order."""
    relative = f"ImageSets/Segmentation/{split_file}.txt"
    if not source.exists(relative):
        raise FileNotFoundError(
            f"{source.location(relative)} is missing: a VOC-format folder needs it to know the {split_file} ids."
        )
    ids = [line.strip() for line in source.read_bytes(relative).decode().splitlines() if line.strip()]
    if not ids:
        raise DataError(f"{source.location(relative)} lists no ids.")
    for number, sample_id in enumerate(ids, start=1):
        # An id names JPEGImages/<id>.jpg and SegmentationClass/<id>.png: a path in it could read an image
        # from outside the dataset, and such an image can reach sample_predictions.png and a push.
        if "/" in sample_id or "\\" in sample_id or sample_id in (".", "..") or "\0" in sample_id:
            raise DataError(f"{source.location(relative)}: id {sample_id!r} (entry {number}) is not a file name: "
                            "an id names JPEGImages/<id>.jpg and SegmentationClass/<id>.png inside the dataset. "
                            "Fix the list.")
    return ids


def read_id_list(path: Path) -> list[str]:
    """Ids of a plain list file (one per line; SBD lists may carry paths, of which the stem is kept)."""
    if not path.is_file():
        raise FileNotFoundError(f"SBD id list {path} is missing.")
    return [Path(line.split()[0]).stem for line in path.read_text().splitlines() if line.strip()]


def _split_samples(source, ids: list[str], split_file: str, sbd=None) -> list[tuple]:
    """(id, image, mask, mask source) per id, after checking every file is there."""
    samples = []
    for sample_id in ids:
        image = f"JPEGImages/{sample_id}.jpg"
        mask, mask_source = f"SegmentationClass/{sample_id}.png", None
        if sbd is not None and sbd.exists(f"{sample_id}.png"):
            mask, mask_source = f"{sample_id}.png", sbd
        for reader, relative in ((source, image), (mask_source or source, mask)):
            if not reader.exists(relative):
                raise FileNotFoundError(
                    f"{split_file} lists id {sample_id!r} but {reader.location(relative)} is missing."
                )
        samples.append((sample_id, image, mask, mask_source))
    return samples


def load_voc(
    data_dir: str | Path,
    *,
    sbd_dir: str | Path | None = None,
    sbd_list: str | Path | None = None,
    cache_dir: str | Path | None = None,
    drop_invalid: bool = False,
    label_options: LabelOptions | None = None,
    name: str = "Pascal VOC 2012",
) -> SegmentationData:
    """Load Pascal VOC segmentation's ``train`` and ``validation`` splits, validated and cached.

    Args:
        data_dir: a folder holding `VOCdevkit/VOC2012` (or `VOC2012`, or being it), or the official
            `VOCtrainval_11-May-2012.tar`, read in place.
        sbd_dir: a `SegmentationClassAug` folder of index PNGs (the SBD "aug" masks). With it, the
            train split is VOC train + the ids of `sbd_list`, minus every VOC val id (10,582 ids on the
            real data); validation stays VOC val. Images come from VOC's `JPEGImages`.
        sbd_list: the SBD id list (default: `train_aug.txt` beside or inside `sbd_dir`).
        cache_dir: the toolkit's cache (as ``--cache_dir``; default ``$HF_SEGCOMPARE_CACHE`` or
            ``~/.cache/hf_segcompare``): the Arrow cache goes to its ``arrow`` folder. The same source loads
            from the cache the second time without reading or validating anything again; any change
            to a listed file (size or time) makes a new cache.
        drop_invalid: leave out samples that fail validation (reporting how many and which)
            instead of raising.
        label_options: the classes and ignore index the masks hold (``--labels``,
            ``--ignore_index``, ``--label_map``, ``--reduce_labels``, ``--mask_colors``). Default: a
            colour table or an ``id2label.json`` at the tree's root, else Pascal VOC's 21 classes with
            255 ignored. Masks are read by index (palette PNGs) or, RGB, through VOC's colour map
            (or the colour table).
        name: what the data is called where its labels' source is recorded.

    Returns:
        `SegmentationData` whose splits have the columns ``id``, ``image`` (JPEG bytes), ``label`` (PNG of
        class ids, the ignore index for void), ``width`` and ``height`` (of the image);
        ``.dropped`` lists the samples `drop_invalid` left out, ``.labels`` is the label set.

    Raises:
        FileNotFoundError: naming the missing folder, split list, image or mask.
        InvalidSamplesError: listing every invalid sample, each with its id, file and problem.
    """
    from datasets import DatasetDict

    from .sources import open_voc_source

    source = open_voc_source(data_dir)
    roots = _roots(data_dir, source)
    found = next(filter(None, (id2label_in_folder(folder) for folder in roots)), (VOC_CLASSES, name))
    # VOC's own masks are palette PNGs; VOC-format colour masks are drawn in its colour map, unless
    # the tree says otherwise with a colour table of its own.
    labels = (label_options or LabelOptions()).resolve(
        found, source.description, reading=MaskReading.voc_palette(),
        table=next(filter(None, (find_colour_table(folder) for folder in roots)), None))
    ids = {split: read_split_ids(source, split_file) for split, split_file in SPLIT_FILES.items()}
    sbd = None
    if sbd_dir is not None:
        ids["train"], sbd = _train_aug(ids, sbd_dir, sbd_list)
    overlap = sorted(set(ids["train"]) & set(ids["validation"]))
    if overlap:
        raise DataError(
            f"{len(overlap)} id(s) are in both train and validation of {source.description}: {overlap[:10]}. "
            "A validation image seen in training inflates mIoU; remove them from one split list."
        )

    splits = {}
    for split, split_ids in ids.items():
        # SBD masks serve the train split only: validation is always scored on VOC's own masks.
        samples = _split_samples(source, split_ids, SPLIT_FILES[split], sbd if split == "train" else None)
        listed = [f"ImageSets/Segmentation/{SPLIT_FILES[split]}.txt"]
        for _, image, mask, mask_source in samples:
            listed += [image] if mask_source is not None else [image, mask]
        key = [split_ids, source.signature(listed),
               sbd.signature([s[2] for s in samples if s[3] is not None]) if sbd else None]
        splits[split] = validated_split(source, samples, split, labels, key, "voc", cache_dir)
    return finish_validation(DatasetDict(splits), drop_invalid, labels, source=data_dir)


def _train_aug(ids: dict[str, list[str]], sbd_dir: str | Path, sbd_list: str | Path | None):
    """VOC "train_aug": (VOC train | SBD) - VOC val, the 10,582-image set the published DeepLab
    numbers use, and the source of SBD's masks."""
    from .sources import FolderSource

    sbd_dir = Path(sbd_dir).expanduser()
    aug_root = sbd_dir / "SegmentationClassAug" if (sbd_dir / "SegmentationClassAug").is_dir() else sbd_dir
    if not aug_root.is_dir():
        raise FileNotFoundError(f"SBD folder {sbd_dir} does not exist (expected a SegmentationClassAug folder).")
    sbd_list = Path(sbd_list) if sbd_list else next(
        (p for p in (sbd_dir / "train_aug.txt", aug_root.parent / "train_aug.txt") if p.is_file()),
        sbd_dir / "train_aug.txt",
    )
    val_ids = set(ids["validation"])
    train = [i for i in dict.fromkeys(ids["train"] + read_id_list(sbd_list)) if i not in val_ids]
    return train, FolderSource(aug_root)


def _roots(data_dir: str | Path, source) -> list[Path]:
    """Where an ``id2label.json`` of a VOC-format tree may lie: the folder given, and the VOC2012 root."""
    folders = [Path(data_dir).expanduser()] + [getattr(source, "root", None)]
    return [folder for folder in dict.fromkeys(folders) if folder is not None and folder.is_dir()]
