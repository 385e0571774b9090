"""The VOC-format loader, the synthetic generator and the joint transforms."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from hf_segcompare.data import (
    IGNORE_INDEX,
    VOC_CLASSES,
    SegCollator,
    ensure_synthetic_voc,
    eval_transforms,
    generate_synthetic_voc,
    largest_image_side,
    load_voc,
    make_batch_transform,
    shape_order,
    size_to_fit,
    train_transforms,
    voc_palette,
)
from hf_segcompare.models import IMAGENET

from .conftest import TINY_TREE

# in the fast subset, which CI also runs on constraints/minimum.txt (the declared lower bounds)
pytestmark = pytest.mark.fast

IMAGENET_MEAN, IMAGENET_STD = IMAGENET.mean, IMAGENET.std


def _tree_digest(root) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_synthetic_tree_has_the_voc_layout(voc_tree):
    voc = voc_tree / "VOCdevkit" / "VOC2012"
    train_ids = (voc / "ImageSets/Segmentation/train.txt").read_text().split()
    val_ids = (voc / "ImageSets/Segmentation/val.txt").read_text().split()
    assert len(train_ids) == TINY_TREE["num_train"] and len(val_ids) == TINY_TREE["num_val"]
    assert not set(train_ids) & set(val_ids)
    seen_classes = set()
    for sample_id in train_ids + val_ids:
        image = Image.open(voc / "JPEGImages" / f"{sample_id}.jpg")
        mask = Image.open(voc / "SegmentationClass" / f"{sample_id}.png")
        assert image.format == "JPEG" and image.mode == "RGB"
        assert mask.mode == "P" and mask.size == image.size
        palette = np.array(mask.getpalette()[: 256 * 3]).reshape(256, 3)
        assert [tuple(c) for c in palette] == voc_palette()
        values = np.asarray(mask)
        assert set(np.unique(values)) <= set(range(len(VOC_CLASSES))) | {IGNORE_INDEX}
        assert (values == IGNORE_INDEX).any(), f"{sample_id}: no void boundary"
        seen_classes |= set(np.unique(values)) - {0, IGNORE_INDEX}
    assert len(seen_classes) >= 10  # objects of many classes, not one repeated


def test_void_band_separates_every_object_from_background(voc_tree):
    """No object pixel touches a pixel of another class directly: boundaries are 255, as in VOC."""
    voc = voc_tree / "VOCdevkit" / "VOC2012"
    for png in sorted((voc / "SegmentationClass").glob("*.png"))[:5]:
        values = np.asarray(Image.open(png)).astype(int)
        right = values[:, 1:], values[:, :-1]
        down = values[1:, :], values[:-1, :]
        for a, b in (right, down):
            both_classes = (a != IGNORE_INDEX) & (b != IGNORE_INDEX)
            assert (a[both_classes] == b[both_classes]).all(), png.name


def test_generation_is_deterministic(tmp_path):
    kwargs = {"num_train": 3, "num_val": 2, "min_size": 32, "max_size": 48, "seed": 7}
    generate_synthetic_voc(tmp_path / "a", **kwargs)
    generate_synthetic_voc(tmp_path / "b", **kwargs)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    generate_synthetic_voc(tmp_path / "c", **{**kwargs, "seed": 8})
    assert _tree_digest(tmp_path / "a") != _tree_digest(tmp_path / "c")


def test_ensure_synthetic_voc_generates_once(tmp_path):
    kwargs = {"num_train": 2, "num_val": 1, "min_size": 32, "max_size": 40}
    first = ensure_synthetic_voc(tmp_path, **kwargs)
    marker = first / "marker"
    marker.write_text("kept")
    assert ensure_synthetic_voc(tmp_path, **kwargs) == first and marker.exists()
    assert ensure_synthetic_voc(tmp_path, **{**kwargs, "num_val": 2}) != first
    assert not list(tmp_path.glob(".synthetic-voc-*")), "staging folders must not be left behind"


@pytest.mark.parametrize("subfolder", ["", "VOCdevkit", "VOCdevkit/VOC2012"])
def test_load_voc_accepts_the_folder_or_its_parents(voc_tree, subfolder):
    dataset = load_voc(voc_tree / subfolder if subfolder else voc_tree)
    assert set(dataset) == {"train", "validation"}
    assert len(dataset["train"]) == TINY_TREE["num_train"]
    assert len(dataset["validation"]) == TINY_TREE["num_val"]
    assert dataset["train"].column_names == ["id", "image", "label", "width", "height"]
    assert type(dataset["train"].features["image"]).__name__ == "Image"
    sample = dataset["validation"][0]
    assert sample["id"] == "synth_000016"
    assert sample["image"].size == sample["label"].size
    assert sample["label"].mode == "P"


def test_missing_folder_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        load_voc(tmp_path / "nowhere")


def test_folder_without_split_list_names_train_txt(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    with pytest.raises(FileNotFoundError, match=r"ImageSets/Segmentation/train\.txt"):
        load_voc(tmp_path)


def test_missing_image_names_the_id(voc_tree, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(voc_tree, copy)
    (copy / "VOCdevkit/VOC2012/JPEGImages/synth_000003.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"'synth_000003'.*synth_000003\.jpg"):
        load_voc(copy)


def test_eval_size_is_the_smallest_multiple_of_32_holding_every_image(voc_tree):
    dataset = load_voc(voc_tree)
    largest = largest_image_side(dataset["validation"])
    expected = max(max(s["image"].size) for s in dataset["validation"])
    assert largest == expected
    assert size_to_fit(500) == 512 and size_to_fit(64) == 64 and size_to_fit(65) == 96


def _denormalise(pixel_values: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return ((pixel_values * std + mean) * 255).round()


def _class_coded_sample(rng, height=57, width=43):
    """An image whose grey level encodes its mask's class id (10 * id + 20), so alignment can be read back."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[10:40, 5:30] = 7
    mask[20:50, 25:40] = 15
    mask[:, :2] = IGNORE_INDEX
    grey = np.where(mask == IGNORE_INDEX, 250, mask.astype(np.int32) * 10 + 20).astype(np.uint8)
    image = Image.fromarray(np.repeat(grey[..., None], 3, axis=2))
    return image, Image.fromarray(mask)


def test_train_transform_keeps_image_and_mask_aligned():
    """After random scale, crop, pad and flip, the image still says what the mask says."""
    torch.manual_seed(0)
    transform = make_batch_transform(train_transforms(64, IMAGENET_MEAN, IMAGENET_STD))
    image, mask = _class_coded_sample(np.random.default_rng(0))
    for _ in range(20):
        out = transform({"image": [image], "label": [mask]})
        pixels, labels = out["pixel_values"][0], out["labels"][0]
        assert pixels.shape == (3, 64, 64) and labels.shape == (64, 64) and labels.dtype == torch.int64
        grey = _denormalise(pixels)[0]
        # Interior pixels (whole 5x5 neighbourhood one class) are exact; edges are blended by
        # the antialiased bilinear image resize and are not checked, nor is the crop's rim, whose
        # neighbours outside the crop are unknown.
        padded = torch.nn.functional.pad(labels.float(), (2, 2, 2, 2), value=-1)
        windows = padded.unfold(0, 5, 1).unfold(1, 5, 1).reshape(64, 64, 25)
        interior = (windows == labels[..., None]).all(dim=-1) & (labels != IGNORE_INDEX)
        assert interior.sum() > 100
        assert torch.allclose(grey[interior], labels[interior].float() * 10 + 20, atol=2)
        assert set(labels.unique().tolist()) <= {0, 7, 15, IGNORE_INDEX}


def test_train_padding_fills_masks_with_255():
    transform = make_batch_transform(train_transforms(128, IMAGENET_MEAN, IMAGENET_STD, scale_range=(0.5, 0.5)))
    image, mask = _class_coded_sample(np.random.default_rng(0))
    out = transform({"image": [image], "label": [mask]})
    labels = out["labels"][0]
    grey = _denormalise(out["pixel_values"][0])[0]
    # A 0.5x scale of a 57 px image cannot fill 128 px: the rest is padding, image 0 and mask 255.
    image_padding = grey == 0  # no image pixel is darker than 20
    assert image_padding.float().mean() > 0.5
    assert (labels[image_padding] == IGNORE_INDEX).all()
    assert (grey[labels != IGNORE_INDEX] > 0).all()


def test_square_eval_transform_pads_without_resizing():
    image, mask = _class_coded_sample(np.random.default_rng(0), height=57, width=43)
    transform = make_batch_transform(eval_transforms(64, IMAGENET_MEAN, IMAGENET_STD, square=True))
    out = transform({"image": [image], "label": [mask]})
    labels = out["labels"][0]
    assert labels.shape == (64, 64)
    assert torch.equal(labels[:57, :43], torch.from_numpy(np.array(mask)).long())
    assert (labels[57:] == IGNORE_INDEX).all() and (labels[:, 43:] == IGNORE_INDEX).all()
    grey = _denormalise(out["pixel_values"][0])[0]
    assert torch.equal(grey[:57, :43], torch.from_numpy(np.array(image)[..., 0]).float())
    assert (grey[57:] == 0).all()  # black, as the training crop pads


def test_the_collator_pads_a_batch_to_its_own_shape_as_square_padding_would():
    """Batch padding: each side to the batch's largest, rounded up to 32; black image, 255 labels.
    Inside that shape the values equal what square padding to the eval size gives."""
    rng = np.random.default_rng(0)
    samples = [_class_coded_sample(rng, height=57, width=43), _class_coded_sample(rng, height=40, width=70)]
    batch = {"image": [s[0] for s in samples], "label": [s[1] for s in samples]}
    own = make_batch_transform(eval_transforms(128, IMAGENET_MEAN, IMAGENET_STD))(dict(batch))
    assert [tuple(v.shape[-2:]) for v in own["labels"]] == [(57, 43), (40, 70)]  # no padding per image
    collated = SegCollator(IMAGENET_MEAN, IMAGENET_STD)([{"pixel_values": p, "labels": label}
                                                          for p, label in zip(own["pixel_values"], own["labels"])])
    assert collated["pixel_values"].shape == (2, 3, 64, 96) and collated["labels"].shape == (2, 64, 96)
    square = make_batch_transform(eval_transforms(128, IMAGENET_MEAN, IMAGENET_STD, square=True))(dict(batch))
    for index in range(2):
        assert torch.equal(collated["labels"][index], square["labels"][index][:64, :96])
        assert torch.allclose(collated["pixel_values"][index], square["pixel_values"][index][:, :64, :96])


def test_shape_order_groups_images_by_their_padded_shape():
    sizes = [(375, 500), (500, 375), (370, 500), (500, 500), (333, 500), (500, 370), (600, 800)]
    order = shape_order(sizes, eval_size=512)
    assert sorted(order) == list(range(len(sizes)))
    # 600x800 is shrunk to 384x512 first: it joins the 375x500 and 370x500 images.
    assert order == [4, 0, 2, 6, 1, 5, 3]


def test_eval_transform_shrinks_a_larger_image_with_a_nearest_neighbour_mask():
    image, mask = _class_coded_sample(np.random.default_rng(0), height=128, width=86)
    out = make_batch_transform(eval_transforms(64, IMAGENET_MEAN, IMAGENET_STD))({"image": [image], "label": [mask]})
    labels = out["labels"][0]
    assert labels.shape == (64, 43)
    # 128x86 -> 64x43: the mask keeps only its own values (nearest-neighbour).
    assert set(labels.unique().tolist()) <= {0, 7, 15, IGNORE_INDEX}
    assert (labels == 7).sum() > 0 and (labels == 15).sum() > 0


def test_rgb_mask_is_refused_with_a_clear_message():
    image, mask = _class_coded_sample(np.random.default_rng(0))
    with pytest.raises(ValueError, match="expected a palette"):
        make_batch_transform(eval_transforms(64, IMAGENET_MEAN, IMAGENET_STD))(
            {"image": [image], "label": [mask.convert("RGB")]}
        )


def test_tv_tensor_types_are_what_the_pipeline_expects():
    # Guards the fill mapping: pad_fill is keyed by these exact types, the mask's fill the label set's void.
    from hf_segcompare.data.transforms import pad_fill

    assert pad_fill()[tv_tensors.Mask] == IGNORE_INDEX and pad_fill()[tv_tensors.Image] == 0
    assert pad_fill(7)[tv_tensors.Mask] == 7


class _SeedOfEachSample(torch.utils.data.Dataset):
    def __init__(self, seeds):
        self.seeds = seeds

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return self.seeds.for_sample(f"sample{index}")


def test_persistent_workers_see_each_new_augmentation_epoch():
    """Persistent data-loader workers keep their copy of the dataset between epochs: the epoch the
    augmentation seeds are drawn for must still reach them."""
    from hf_segcompare.data import AugmentationSeeds

    seeds = AugmentationSeeds(7)
    loader = torch.utils.data.DataLoader(_SeedOfEachSample(seeds), batch_size=2, num_workers=2,
                                         persistent_workers=True)
    for epoch in range(3):
        seeds.epoch = epoch
        in_workers = [seed for batch in loader for seed in batch.tolist()]
        assert in_workers == [seeds.for_sample(f"sample{index}") for index in range(4)], epoch
    assert len({seeds.for_sample("sample0") for seeds.epoch in range(3)}) == 3  # the epochs do differ


def test_voc_sized_synthetic_images_have_a_longer_side_of_500(tmp_path):
    voc = generate_synthetic_voc(tmp_path, num_train=6, num_val=2, min_size=333, max_size=500, longer_side=500, seed=1)
    sizes = [Image.open(path).size for path in sorted((voc / "JPEGImages").glob("*.jpg"))]
    assert all(max(size) == 500 and 333 <= min(size) <= 500 for size in sizes)
    assert {size[0] == 500 for size in sizes} == {True, False}  # landscape and portrait both drawn
