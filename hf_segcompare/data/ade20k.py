"""ADE20K (the SceneParsing challenge release, ``ADEChallengeData2016``) read in place.

Layout, as the official ``ADEChallengeData2016.zip`` holds it (the zip itself is read without
extracting, as is the extracted folder)::

    ADEChallengeData2016/
        images/training/ADE_train_00000001.jpg        20,210 images
        images/validation/ADE_val_00000001.jpg        2,000 images
        annotations/training/ADE_train_00000001.png   0 = "other", 1-150 = the classes
        annotations/validation/ADE_val_00000001.png
        objectInfo150.txt                             Idx, Ratio, Train, Val, Name of the 150 classes

Its masks follow the reduce-labels convention (mmsegmentation's ``reduce_zero_label``, evaluate's
``reduce_labels``): 0 is ignored and class ``i`` is stored as ``i + 1``. The class names are read
from the release's own ``objectInfo150.txt`` (the first of each row's synonyms).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .label_source import LabelOptions, MaskDecoding
from .segmentation_data import SegmentationData
from .sources import FolderSource, zip_holding
from .validation import finish_validation, validated_split

ADE20K_ROOT = "ADEChallengeData2016"
SPLIT_FOLDERS = {"train": "training", "validation": "validation"}
CLASS_FILE = "objectInfo150.txt"
REDUCE_LABELS = MaskDecoding(reduce_labels=True, source="ADE20K's convention")
WHERE_TO_GET = ("the release is ADEChallengeData2016.zip from http://sceneparsing.csail.mit.edu (pass the zip or "
                "the extracted folder as --data_dir)")


def open_ade20k_source(data_dir: str | Path):
    """The release at `data_dir`: ``ADEChallengeData2016.zip``, or a folder holding ``ADEChallengeData2016``
    or being it.

    Raises:
        FileNotFoundError: naming what is missing and where to get the release.
    """
    data_dir = Path(data_dir).expanduser()
    if data_dir.is_file():
        source = zip_holding(data_dir, "images/training/")
        if source is None:
            raise FileNotFoundError(f"{data_dir} holds no images/training/ folder: it is not the ADE20K release; "
                                    f"{WHERE_TO_GET}.")
        return source
    for candidate in (data_dir / ADE20K_ROOT, data_dir):
        if (candidate / "images" / "training").is_dir():
            return FolderSource(candidate)
    raise FileNotFoundError(f"{data_dir / 'images' / 'training'} is missing (nor is there {data_dir / ADE20K_ROOT}): "
                            f"{data_dir} is not the ADE20K release; {WHERE_TO_GET}.")


def ade20k_class_names(text: str, where: str) -> tuple[str, ...]:
    """The 150 class names of ``objectInfo150.txt`` (tab-separated Idx, Ratio, Train, Val, Name; the
    name is a list of synonyms, of which the first is kept unless two classes would share it)."""
    rows = {}
    for line in text.splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) >= 5 and fields[0].strip().isdigit():
            rows[int(fields[0])] = fields[4].strip()
    if sorted(rows) != list(range(1, len(rows) + 1)) or not rows:
        raise DataError(f"{where}: expected rows 'Idx<TAB>Ratio<TAB>Train<TAB>Val<TAB>Name' numbered 1, 2, ...")
    first = [rows[index].split(",")[0].strip() for index in sorted(rows)]
    return tuple(name if first.count(name) == 1 else rows[index + 1] for index, name in enumerate(first))


def load_ade20k(data_dir: str | Path, *, cache_dir: str | Path | None = None, drop_invalid: bool = False,
                label_options: LabelOptions | None = None) -> SegmentationData:
    """ADE20K as ``train`` and ``validation`` splits (a `SegmentationData`), validated and cached like
    `load_voc` (same columns).

    Args:
        data_dir: ``ADEChallengeData2016.zip``, or a folder holding ``ADEChallengeData2016`` or being it.
        label_options: ``--labels`` and ``--ignore_index`` apply; the masks' decoding is the release's
            (reduced labels), so a label map or another decoding is refused.

    Raises:
        FileNotFoundError: a missing release, image or annotation, named.
        DataError: no class names (no objectInfo150.txt and no --labels), or a decoding other than the
            release's; `InvalidSamplesError` for invalid samples.
    """
    from datasets import DatasetDict

    options = label_options or LabelOptions()
    if not options.decoding.identity and options.decoding.label_map is not None:
        raise DataError("--label_map: ADE20K's masks are read by their own convention (0 ignored, class i stored as "
                        "i + 1); drop it.")
    if options.colours is not None:
        raise DataError("--mask_colors: ADE20K's annotations are index PNGs (0 ignored, class i stored as i + 1); "
                        "drop it.")
    source = open_ade20k_source(data_dir)
    found = None
    if source.exists(CLASS_FILE):
        where = source.location(CLASS_FILE)
        found = (ade20k_class_names(source.read_bytes(CLASS_FILE).decode("utf-8", errors="replace"), where), where)
    labels = options.resolve(found, source.description, decoding=REDUCE_LABELS)
    splits = {}
    for split, folder in SPLIT_FOLDERS.items():
        images = [name for name in source.files(f"images/{folder}") if name.lower().endswith((".jpg", ".jpeg", ".png"))]
        if not images:
            raise FileNotFoundError(f"{source.location(f'images/{folder}/')} holds no images; {WHERE_TO_GET}.")
        samples = []
        for image in images:
            sample_id = Path(image).stem
            mask = f"annotations/{folder}/{sample_id}.png"
            if not source.exists(mask):
                raise FileNotFoundError(f"{source.location(image)} has no annotation: {source.location(mask)} is "
                                        "missing.")
            samples.append((sample_id, image, mask, None))
        key = [[s[0] for s in samples], source.signature([path for s in samples for path in s[1:3]])]
        splits[split] = validated_split(source, samples, split, labels, key, "ade20k", cache_dir)
    return finish_validation(DatasetDict(splits), drop_invalid, labels, source=data_dir)


__all__ = ["ADE20K_ROOT", "ade20k_class_names", "load_ade20k", "open_ade20k_source"]
