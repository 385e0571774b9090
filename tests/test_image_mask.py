"""Hub-style datasets: parquet and imagefolder with configurable columns, and an unreachable Hub."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from hf_segcompare.data import DataError, InvalidSamplesError, LabelOptions, generate_synthetic_voc, load_voc
from hf_segcompare.data.image_mask import load_image_mask_dataset
from hf_segcompare.labels import VOC_CLASSES

from .conftest import free_port

# in the fast subset, which CI also runs on constraints/minimum.txt (the declared lower bounds)
pytestmark = pytest.mark.fast

# The generated trees hold VOC's class ids; a dataset of one's own names its classes (here: VOC's).
VOC_NAMES = LabelOptions(names=VOC_CLASSES, names_source="the test")


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    generate_synthetic_voc(root, num_train=6, num_val=3, min_size=32, max_size=48)
    return root, load_voc(root, cache_dir=root / "cache")


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert np.array_equal(np.array(x["image"]), np.array(y["image"]))
        assert np.array_equal(np.array(x["label"]), np.array(y["label"]))


def test_parquet_with_custom_column_names(voc, tmp_path):
    _, reference = voc
    folder = tmp_path / "parquet"
    folder.mkdir()
    for split, file_split in (("train", "train"), ("validation", "val")):
        renamed = reference[split].rename_columns({"image": "pixel_image", "label": "annotation"})
        renamed.to_parquet(folder / f"{file_split}-00000-of-00001.parquet")
    loaded = load_image_mask_dataset(str(folder), "pixel_image", "annotation", cache_dir=tmp_path / "cache",
                                     label_options=VOC_NAMES)
    assert set(loaded) == {"train", "validation"}
    _same(loaded["train"], reference["train"])
    _same(loaded["validation"], reference["validation"])
    with pytest.raises(DataError, match=r"has no column 'image' or 'pixel_values'; its columns are .*pixel_image"):
        load_image_mask_dataset(str(folder), cache_dir=tmp_path / "cache", label_options=VOC_NAMES)


def _write_imagefolder(voc_root, folder):
    """The VOC tree as an imagefolder: train/ and validation/ with images, ``<id>_mask.png`` and metadata.jsonl."""
    source = voc_root / "VOCdevkit" / "VOC2012"
    for split, list_name in (("train", "train"), ("validation", "val")):
        target = folder / split
        target.mkdir(parents=True)
        lines = []
        for sample_id in (source / "ImageSets" / "Segmentation" / f"{list_name}.txt").read_text().split():
            shutil.copy(source / "JPEGImages" / f"{sample_id}.jpg", target)
            shutil.copy(source / "SegmentationClass" / f"{sample_id}.png", target / f"{sample_id}_mask.png")
            lines.append(json.dumps({"file_name": f"{sample_id}.jpg", "label_file_name": f"{sample_id}_mask.png"}))
        (target / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_imagefolder_with_label_file_names(voc, tmp_path):
    root, reference = voc
    _write_imagefolder(root, tmp_path / "imagefolder")
    loaded = load_image_mask_dataset(str(tmp_path / "imagefolder"), cache_dir=tmp_path / "cache",
                                     label_options=VOC_NAMES)
    assert sorted(loaded["train"]["id"]) == sorted(reference["train"]["id"])
    by_id = {row["id"]: row for row in reference["train"]}
    for row in loaded["train"]:
        assert np.array_equal(np.array(row["label"]), np.array(by_id[row["id"]]["label"]))


def test_invalid_rows_are_named(voc, tmp_path):
    _, reference = voc
    from datasets import Image

    def corrupt(row, index):
        if index == 1:
            mask = np.array(row["label"])
            mask[0, 0] = 77
            from PIL import Image as PILImage
            row["label"] = PILImage.fromarray(mask)
        return row

    broken = reference["train"].map(corrupt, with_indices=True, features=reference["train"].features)
    folder = tmp_path / "parquet"
    folder.mkdir()
    broken.cast_column("label", Image()).to_parquet(folder / "train.parquet")
    reference["validation"].to_parquet(folder / "validation.parquet")
    with pytest.raises(InvalidSamplesError, match=r"train row 1 .*mask values \[77\]"):
        load_image_mask_dataset(str(folder), cache_dir=tmp_path / "cache", label_options=VOC_NAMES)
    kept = load_image_mask_dataset(str(folder), cache_dir=tmp_path / "cache", drop_invalid=True,
                                   label_options=VOC_NAMES)
    assert len(kept["train"]) == 5 and len(kept.dropped) == 1


def test_an_unreachable_hub_fails_fast_with_what_to_pass(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    started = time.monotonic()
    with pytest.raises(DataError, match=r"'someone/voc-seg': the Hub .* cannot be reached.*local parquet"):
        load_image_mask_dataset("someone/voc-seg", cache_dir=tmp_path / "cache")
    assert time.monotonic() - started < 10


def test_a_missing_local_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.parquet does not exist"):
        load_image_mask_dataset(str(tmp_path / "nothing.parquet"))


def test_a_rewritten_imagefolder_mask_is_never_served_from_the_cache(voc, tmp_path):
    """datasets keys local files by mtime alone: the same size and mtime must not hide new content."""
    import io
    import os

    from PIL import Image

    _write_imagefolder(voc[0], tmp_path / "imagefolder")
    first = load_image_mask_dataset(str(tmp_path / "imagefolder"), cache_dir=tmp_path / "cache",
                                    label_options=VOC_NAMES)
    sample_id = first["train"][0]["id"]
    mask_path = tmp_path / "imagefolder" / "train" / f"{sample_id}_mask.png"
    old_bytes, old_stat = mask_path.read_bytes(), mask_path.stat()
    buffer = io.BytesIO()
    Image.fromarray(np.zeros_like(np.array(Image.open(mask_path)))).save(buffer, format="PNG")
    assert len(buffer.getvalue()) < len(old_bytes)
    mask_path.write_bytes(buffer.getvalue() + b"\0" * (len(old_bytes) - len(buffer.getvalue())))
    os.utime(mask_path, ns=(old_stat.st_atime_ns, old_stat.st_mtime_ns))

    second = load_image_mask_dataset(str(tmp_path / "imagefolder"), cache_dir=tmp_path / "cache",
                                     label_options=VOC_NAMES)
    row = second["train"]["id"].index(sample_id)
    assert np.array(first["train"][0]["label"]).any() and not np.array(second["train"][row]["label"]).any()
