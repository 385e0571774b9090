"""Every VOC source becomes the same validated, cached DatasetDict; bad inputs are named."""

from __future__ import annotations

import io
import os
import shutil
import tarfile

import numpy as np
import pytest
from PIL import Image

from hf_segcompare.data import (
    DataError,
    InvalidSamplesError,
    generate_synthetic_sbd,
    generate_synthetic_voc,
    load_voc,
    voc_palette,
    write_voc_tar,
)
from hf_segcompare.data import validation as validation_module

# in the fast subset, which CI also runs on constraints/minimum.txt (the declared lower bounds)
pytestmark = pytest.mark.fast

TREE = {"num_train": 10, "num_val": 5, "min_size": 32, "max_size": 48, "seed": 11}


@pytest.fixture()
def tree(tmp_path):
    """A fresh, writable VOC tree per test (tests here break files on purpose)."""
    generate_synthetic_voc(tmp_path / "data", **TREE)
    return tmp_path / "data"


def _voc(tree):
    return tree / "VOCdevkit" / "VOC2012"


def _rows(split):
    return [(row["id"], np.array(row["image"]), np.array(row["label"])) for row in split]


def test_folder_and_tar_give_identical_datasets(tree, tmp_path):
    tar_path = write_voc_tar(tree, tmp_path / "VOCtrainval_11-May-2012.tar")
    from_folder = load_voc(tree, cache_dir=tmp_path / "cache")
    from_tar = load_voc(tar_path, cache_dir=tmp_path / "cache")
    for split in ("train", "validation"):
        folder_rows, tar_rows = _rows(from_folder[split]), _rows(from_tar[split])
        assert len(folder_rows) == len(tar_rows) > 0
        for (id_a, image_a, label_a), (id_b, image_b, label_b) in zip(folder_rows, tar_rows):
            assert id_a == id_b and np.array_equal(image_a, image_b) and np.array_equal(label_a, label_b)


def test_tar_is_read_in_place(tree, tmp_path):
    tar_path = write_voc_tar(tree, tmp_path / "voc.tar")
    shutil.rmtree(tree)  # nothing extracted anywhere: the tar alone must do
    dataset = load_voc(tar_path, cache_dir=tmp_path / "cache")
    assert len(dataset["train"]) == TREE["num_train"]


def test_a_tar_without_voc_is_refused(tmp_path):
    tar_path = tmp_path / "other.tar"
    with tarfile.open(tar_path, "w") as tar:
        info = tarfile.TarInfo("readme.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(FileNotFoundError, match="other.tar holds no VOC2012"):
        load_voc(tar_path, cache_dir=tmp_path / "cache")


def test_train_aug_is_train_plus_sbd_minus_val(tree, tmp_path):
    generate_synthetic_sbd(tmp_path / "sbd", _voc(tree), num_extra=4, min_size=32, max_size=48)
    split_dir = _voc(tree) / "ImageSets" / "Segmentation"
    voc_train = (split_dir / "train.txt").read_text().split()
    voc_val = (split_dir / "val.txt").read_text().split()
    sbd_ids = (tmp_path / "sbd" / "train_aug.txt").read_text().split()
    assert set(sbd_ids) & set(voc_val), "the fixture must list some val ids, to see them dropped"

    dataset = load_voc(tree, sbd_dir=tmp_path / "sbd" / "SegmentationClassAug", cache_dir=tmp_path / "cache")
    expected = (set(voc_train) | set(sbd_ids)) - set(voc_val)
    assert set(dataset["train"]["id"]) == expected
    assert len(dataset["train"]) == len(expected) == len(voc_train) + 4
    assert dataset["validation"]["id"] == voc_val  # validation stays the official val
    extra = next(row for row in dataset["train"] if row["id"] == "sbd_000000")
    aug_mask = np.array(Image.open(tmp_path / "sbd" / "SegmentationClassAug" / "sbd_000000.png"))
    assert np.array_equal(np.array(extra["label"]), aug_mask)


def test_second_load_uses_the_cache_and_a_change_is_not_served_stale(tree, tmp_path, monkeypatch):
    calls = []
    original = validation_module.validate_sample
    monkeypatch.setattr(validation_module, "validate_sample", lambda *a: calls.append(a[2]) or original(*a))
    first = load_voc(tree, cache_dir=tmp_path / "cache")
    assert len(calls) == TREE["num_train"] + TREE["num_val"]

    calls.clear()
    second = load_voc(tree, cache_dir=tmp_path / "cache")
    assert calls == [], "a cached source must not be read or validated again"
    assert second["train"].cache_files == first["train"].cache_files

    # Change one training mask: that split is rebuilt and the new mask is served.
    mask_path = _voc(tree) / "SegmentationClass" / f"{first['train'][0]['id']}.png"
    mask = np.array(Image.open(mask_path))
    mask[mask != 255] = 3
    Image.fromarray(mask).save(mask_path)
    stat = mask_path.stat()
    os.utime(mask_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    third = load_voc(tree, cache_dir=tmp_path / "cache")
    assert len(calls) == TREE["num_train"]  # validation split untouched, still cached
    assert np.array_equal(np.array(third["train"][0]["label"]), mask)


def _first_train_id(tree):
    return (_voc(tree) / "ImageSets" / "Segmentation" / "train.txt").read_text().split()[0]


def _break_truncated_image(tree, sample_id):
    path = _voc(tree) / "JPEGImages" / f"{sample_id}.jpg"
    path.write_bytes(path.read_bytes()[:200])
    return "unreadable or truncated image"


def _break_size(tree, sample_id):
    path = _voc(tree) / "SegmentationClass" / f"{sample_id}.png"
    mask = Image.open(path)
    mask.crop((0, 0, mask.width - 3, mask.height)).save(path)
    return "mask is .* but its image is"


def _break_values(tree, sample_id):
    path = _voc(tree) / "SegmentationClass" / f"{sample_id}.png"
    mask = np.array(Image.open(path))
    mask[0, 0] = 42
    Image.fromarray(mask).save(path)
    return r"mask values \[42\] are not in the label set, 21 classes \(0 background, .*20 tvmonitor\), 255 ignored"


def _break_rgb_colours(tree, sample_id):
    path = _voc(tree) / "SegmentationClass" / f"{sample_id}.png"
    rgb = np.array(Image.open(path).convert("RGB"))
    rgb[0, 0] = (1, 2, 3)
    Image.fromarray(rgb).save(path)
    return r"RGB mask with colours that are not in VOC's colour map: \[\(1, 2, 3\)\]"


@pytest.mark.parametrize("breaker", [_break_truncated_image, _break_size, _break_values, _break_rgb_colours])
def test_each_bad_sample_is_named_and_can_be_dropped(breaker, tree, tmp_path):
    sample_id = _first_train_id(tree)
    problem = breaker(tree, sample_id)
    with pytest.raises(InvalidSamplesError, match=rf"train id '{sample_id}': .*{sample_id}.*{problem}") as raised:
        load_voc(tree, cache_dir=tmp_path / "cache")
    assert len(raised.value.errors) == 1 and "--drop_invalid" in str(raised.value)

    kept = load_voc(tree, cache_dir=tmp_path / "cache", drop_invalid=True)
    assert sample_id not in kept["train"]["id"]
    assert len(kept["train"]) == TREE["num_train"] - 1 and len(kept["validation"]) == TREE["num_val"]
    assert len(kept.dropped) == 1 and sample_id in kept.dropped[0]


def test_the_loaded_data_carries_its_provenance_as_fields_that_limiting_keeps(tree, tmp_path):
    """What the record needs about the data (labels, decoding, dropped samples) is a field of the
    returned object, not an attribute stuck on a `DatasetDict` that a `select` or a new dict loses."""
    import dataclasses

    from datasets import DatasetDict

    from hf_segcompare.data import SegmentationData

    sample_id = _first_train_id(tree)
    _break_values(tree, sample_id)
    data = load_voc(tree, cache_dir=tmp_path / "cache", drop_invalid=True)
    assert isinstance(data, SegmentationData) and isinstance(data.splits, DatasetDict)
    assert not {"labels", "label_info", "dropped"} & set(vars(data.splits)), "nothing is stuck on the DatasetDict"
    assert data.labels is data.label_info.labels and data.label_info.evidence is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.dropped = ()

    small = data.limited(train=2, validation=None)
    assert (len(small["train"]), len(small["validation"])) == (2, TREE["num_val"])
    assert len(data["train"]) == TREE["num_train"] - 1, "limiting returns new data and leaves the loaded one alone"
    assert small.dropped == data.dropped and len(small.dropped) == 1 and sample_id in small.dropped[0]
    assert small.label_info is data.label_info and list(small) == ["train", "validation"]


def test_rgb_mask_in_the_voc_palette_is_converted_to_class_ids(tree, tmp_path):
    sample_id = _first_train_id(tree)
    path = _voc(tree) / "SegmentationClass" / f"{sample_id}.png"
    indices = np.array(Image.open(path))
    Image.open(path).convert("RGB").save(path)
    row = load_voc(tree, cache_dir=tmp_path / "cache")["train"][0]
    assert row["id"] == sample_id and np.array_equal(np.array(row["label"]), indices)


@pytest.mark.parametrize("folder, suffix", [("JPEGImages", ".jpg"), ("SegmentationClass", ".png")])
def test_a_listed_id_without_its_file_is_named(folder, suffix, tree, tmp_path):
    sample_id = _first_train_id(tree)
    (_voc(tree) / folder / f"{sample_id}{suffix}").unlink()
    with pytest.raises(
        FileNotFoundError, match=rf"train lists id '{sample_id}' but .*{folder}/{sample_id}\{suffix} is missing"
    ):
        load_voc(tree, cache_dir=tmp_path / "cache")


def test_ids_in_both_splits_are_refused(tree, tmp_path):
    split_dir = _voc(tree) / "ImageSets" / "Segmentation"
    leaked = _first_train_id(tree)
    (split_dir / "val.txt").write_text((split_dir / "val.txt").read_text() + leaked + "\n")
    with pytest.raises(DataError, match=rf"1 id\(s\) are in both train and validation.*'{leaked}'"):
        load_voc(tree, cache_dir=tmp_path / "cache")


def test_palette_constants():
    palette = voc_palette()
    assert palette[0] == (0, 0, 0) and palette[1] == (128, 0, 0) and palette[15] == (192, 128, 128)
    assert palette[255] == (224, 224, 192)


@pytest.mark.parametrize("listed", ["../../outside", "..", "sub/../../outside", "/etc/passwd"])
def test_a_split_list_cannot_name_a_file_outside_the_dataset(listed, tree, tmp_path):
    """A VOC id is a file name: one holding a path would read an image from outside the dataset
    (and such an image can reach sample_predictions.png, which a push publishes)."""
    outside = tmp_path / "outside"
    Image.new("RGB", (32, 32)).save(tmp_path / "outside.jpg")
    Image.new("P", (32, 32)).save(tmp_path / "outside.png")
    val = _voc(tree) / "ImageSets" / "Segmentation" / "val.txt"
    val.write_text(val.read_text() + listed + "\n")
    with pytest.raises(DataError) as raised:
        load_voc(tree, cache_dir=tmp_path / "cache")
    message = str(raised.value)
    assert f"{val}: id {listed!r} (entry 6) is not a file name" in message and "Fix the list" in message
    assert outside.with_suffix(".jpg").exists()  # still there, never read


def test_a_folder_source_reads_nothing_outside_its_root(tree, tmp_path):
    from hf_segcompare.data.sources import FolderSource

    (tmp_path / "secret.txt").write_text("x")
    source = FolderSource(_voc(tree))
    assert source.read_bytes("ImageSets/Segmentation/val.txt")
    for relative in ("../../../secret.txt", str(tmp_path / "secret.txt"), "JPEGImages/../../../../secret.txt"):
        with pytest.raises(DataError, match="names a file outside"):
            source.read_bytes(relative)
