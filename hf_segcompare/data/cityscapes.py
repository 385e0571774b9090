"""Cityscapes (fine annotations) read in place: the extracted folders or the official zips.

Layout (``leftImg8bit_trainvaltest.zip`` and ``gtFine_trainvaltest.zip`` hold the two top folders;
both zips in one folder are read without extracting, as is the extracted tree)::

    leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png     2,975 / 500 images
    gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png      label ids 0-33

The 34 label ids map to the 19 train ids every published figure is scored on (the official
``cityscapesScripts/helpers/labels.py`` table); every other id is ignored (255).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .label_source import LabelOptions, MaskDecoding
from .segmentation_data import SegmentationData
from .sources import CombinedSource, FolderSource, zip_holding
from .validation import finish_validation, validated_split

SPLIT_FOLDERS = {"train": "train", "validation": "val"}
IMAGE_SUFFIX = "_leftImg8bit.png"
MASK_SUFFIX = "_gtFine_labelIds.png"
ARCHIVES = {"leftImg8bit": "leftImg8bit_trainvaltest.zip", "gtFine": "gtFine_trainvaltest.zip"}
WHERE_TO_GET = ("the release is leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip from "
                "https://www.cityscapes-dataset.com (a login is needed; pass the folder holding both zips, or "
                "the extracted leftImg8bit/ and gtFine/, as --data_dir)")

# Train id -> (name, label id), from cityscapesScripts' labels.py: the 19 classes evaluated.
TRAIN_CLASSES = (
    ("road", 7), ("sidewalk", 8), ("building", 11), ("wall", 12), ("fence", 13), ("pole", 17),
    ("traffic light", 19), ("traffic sign", 20), ("vegetation", 21), ("terrain", 22), ("sky", 23),
    ("person", 24), ("rider", 25), ("car", 26), ("truck", 27), ("bus", 28), ("train", 31),
    ("motorcycle", 32), ("bicycle", 33),
)  # fmt: skip
CITYSCAPES_NAMES = tuple(name for name, _ in TRAIN_CLASSES)
LABEL_IDS_TO_TRAIN_IDS = MaskDecoding.from_mapping(
    {label_id: train_id for train_id, (_, label_id) in enumerate(TRAIN_CLASSES)},
    source="Cityscapes' labelIds -> trainIds table")


def open_cityscapes_source(data_dir: str | Path):
    """The release at `data_dir`: a folder holding ``leftImg8bit/`` and ``gtFine/`` (or ``cityscapes/``
    with them), or holding the two official zips.

    Raises:
        FileNotFoundError: naming what is missing and where to get the release.
    """
    data_dir = Path(data_dir).expanduser()
    for candidate in (data_dir, data_dir / "cityscapes"):
        if all((candidate / top).is_dir() for top in ARCHIVES):
            return FolderSource(candidate)
    if data_dir.is_dir() and all((data_dir / archive).is_file() for archive in ARCHIVES.values()):
        sources = {}
        for top, archive in ARCHIVES.items():
            source = zip_holding(data_dir / archive, f"{top}/train/")
            if source is None:
                raise FileNotFoundError(f"{data_dir / archive} holds no {top}/train/ folder; {WHERE_TO_GET}.")
            sources[top] = source
        return CombinedSource(sources)
    raise FileNotFoundError(f"{data_dir} holds neither leftImg8bit/ and gtFine/ nor {' and '.join(ARCHIVES.values())}:"
                            f" it is not the Cityscapes release; {WHERE_TO_GET}.")


def load_cityscapes(data_dir: str | Path, *, cache_dir: str | Path | None = None, drop_invalid: bool = False,
                    label_options: LabelOptions | None = None) -> SegmentationData:
    """Cityscapes' fine annotations as ``train`` and ``validation`` splits (a `SegmentationData`),
    validated and cached like `load_voc` (same columns), masks decoded to the 19 train ids.

    Args:
        data_dir: see `open_cityscapes_source`.
        label_options: ``--labels`` and ``--ignore_index`` apply; the masks' decoding is the release's
            (labelIds -> trainIds), so another one is refused.

    Raises:
        FileNotFoundError: a missing release, image or annotation, named.
        DataError: a decoding other than the release's; `InvalidSamplesError` for invalid samples.
    """
    from datasets import DatasetDict

    options = label_options or LabelOptions()
    if not options.decoding.identity or options.colours is not None:
        raise DataError("--label_map / --reduce_labels / --mask_colors: Cityscapes' labelIds PNGs are mapped to its "
                        "19 train ids by the official table; drop them.")
    source = open_cityscapes_source(data_dir)
    labels = options.resolve((CITYSCAPES_NAMES, "Cityscapes' 19 train ids"), source.description,
                             decoding=LABEL_IDS_TO_TRAIN_IDS)
    splits = {}
    for split, folder in SPLIT_FOLDERS.items():
        images = [name for name in source.files(f"leftImg8bit/{folder}") if name.endswith(IMAGE_SUFFIX)]
        if not images:
            raise FileNotFoundError(f"{source.location(f'leftImg8bit/{folder}/')} holds no *{IMAGE_SUFFIX}; "
                                    f"{WHERE_TO_GET}.")
        samples = []
        for image in images:
            stem = image[len(f"leftImg8bit/{folder}/"): -len(IMAGE_SUFFIX)]  # <city>/<city>_<seq>_<frame>
            mask = f"gtFine/{folder}/{stem}{MASK_SUFFIX}"
            if not source.exists(mask):
                raise FileNotFoundError(f"{source.location(image)} has no annotation: {source.location(mask)} is "
                                        "missing.")
            samples.append((Path(stem).name, image, mask, None))
        key = [[s[0] for s in samples], source.signature([path for s in samples for path in s[1:3]])]
        splits[split] = validated_split(source, samples, split, labels, key, "cityscapes", cache_dir)
    return finish_validation(DatasetDict(splits), drop_invalid, labels, source=data_dir)


__all__ = ["CITYSCAPES_NAMES", "LABEL_IDS_TO_TRAIN_IDS", "load_cityscapes", "open_cityscapes_source"]
