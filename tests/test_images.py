"""Images are what the user sees: EXIF orientation applied to the photo and its mask alike (or the
sample refused), 16-bit images scaled rather than clipped, and one decoding for training and
``predict.py``."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from hf_segcompare.data import LabelOptions, load_image_mask_dataset, make_batch_transform
from hf_segcompare.data.images import UnsupportedImage, open_rgb, to_rgb
from hf_segcompare.data.transforms import eval_transforms
from hf_segcompare.errors import InvalidSamplesError

# in the fast subset, which CI also runs on constraints/minimum.txt (the declared lower bounds)
pytestmark = pytest.mark.fast

NAMES = LabelOptions(names=("background", "thing"), names_source="the test")


def _shown_pair(width: int, height: int):
    """The picture as a viewer shows it (left third red, the rest grey) and its mask (left third 1)."""
    image = np.full((height, width, 3), 128, dtype=np.uint8)
    image[:, : width // 3] = (220, 20, 20)
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[:, : width // 3] = 1
    return image, mask


def _jpeg_with_orientation(shown: np.ndarray, turn: int = 6) -> bytes:
    """A JPEG whose stored pixels are `shown` turned back, with EXIF orientation `turn` (6: a viewer
    turns it 90° clockwise to show it)."""
    stored = Image.fromarray(shown).transpose(Image.Transpose.ROTATE_90)  # orientation 6 applies ROTATE_270
    exif = Image.Exif()
    exif[0x0112] = turn
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", quality=98, exif=exif.tobytes())
    return buffer.getvalue()


def _imagefolder(root, image_bytes: bytes, mask: np.ndarray, suffix: str = ".jpg", validation: bytes | None = None):
    """The photo in train/ and validation/ (or `validation`'s bytes there, with the same mask)."""
    for split in ("train", "validation"):
        folder = root / split
        folder.mkdir(parents=True)
        (folder / f"photo{suffix}").write_bytes(validation if split == "validation" and validation else image_bytes)
        Image.fromarray(mask).save(folder / "photo_mask.png")
        (folder / "metadata.jsonl").write_text(json.dumps({"file_name": f"photo{suffix}",
                                                           "label_file_name": "photo_mask.png"}) + "\n")
    return root


def _aligned(row) -> bool:
    image, mask = np.asarray(to_rgb(row["image"])).astype(int), np.asarray(row["label"])
    red = (image[..., 0] > 150) & (image[..., 1] < 100)
    return image.shape[:2] == mask.shape and (red == (mask == 1)).mean() > 0.98


@pytest.mark.parametrize("mask_frame", ["shown", "stored"])
def test_an_orientation_6_photo_and_its_mask_are_aligned_upright(mask_frame, tmp_path):
    """48 wide x 32 high as shown (stored 32 x 48): a mask of the shown size is taken as it is, one of
    the stored size turns with the photo; either way image and mask agree, upright."""
    shown, mask = _shown_pair(48, 32)
    image_bytes = _jpeg_with_orientation(shown)
    if mask_frame == "stored":
        mask = np.asarray(Image.fromarray(mask).transpose(Image.Transpose.ROTATE_90))
    root = _imagefolder(tmp_path / "photos", image_bytes, mask)
    dataset = load_image_mask_dataset(str(root), cache_dir=tmp_path / "cache", label_options=NAMES)
    row = dataset["train"][0]
    assert (row["width"], row["height"]) == (48, 32) and _aligned(row)
    # predict.py decodes the file as training decoded it: the same pixels.
    assert np.array_equal(np.asarray(open_rgb(root / "train" / "photo.jpg")), np.asarray(to_rgb(row["image"])))


def test_a_photo_whose_orientation_keeps_its_size_is_refused_in_one_line(tmp_path):
    shown, mask = _shown_pair(40, 40)  # square: turned or not, the mask fits, so it cannot tell
    plain = io.BytesIO()
    Image.fromarray(shown).save(plain, format="JPEG", quality=98)
    root = _imagefolder(tmp_path / "square", _jpeg_with_orientation(shown), mask, validation=plain.getvalue())
    with pytest.raises(InvalidSamplesError) as raised:
        load_image_mask_dataset(str(root), cache_dir=tmp_path / "cache", label_options=NAMES)
    message = str(raised.value)
    assert "\n" not in message and "train row 0 ('photo'): " in message
    assert "photo.jpg: its EXIF orientation (6) turns or mirrors the photo without changing its size" in message


def test_a_16_bit_image_is_scaled_to_8_bits_not_clipped(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.integers(0, 65536, size=(32, 48), dtype=np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    root = _imagefolder(tmp_path / "sixteen", buffer.getvalue(), np.zeros((32, 48), dtype=np.uint8), ".png")
    dataset = load_image_mask_dataset(str(root), cache_dir=tmp_path / "cache", label_options=NAMES)
    transform = make_batch_transform(eval_transforms(64, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)))
    pixels = transform({"image": [dataset["train"][0]["image"]], "label": [dataset["train"][0]["label"]]})
    reference = torch.from_numpy(np.round(values / 257.0) / 255.0).float()  # 65535 -> 255, never clipped
    assert torch.allclose(pixels["pixel_values"][0][0], reference, atol=1e-6)
    assert torch.equal(pixels["pixel_values"][0][0], pixels["pixel_values"][0][2])  # grey: one value, 3 channels
    assert 0.3 < float(pixels["pixel_values"][0].mean()) < 0.7  # not the white of a clipped convert("RGB")


def test_a_floating_point_image_is_refused_by_name():
    with pytest.raises(UnsupportedImage, match="scan.tif: floating-point image"):
        to_rgb(Image.fromarray(np.zeros((4, 4), dtype=np.float32)), "scan.tif")
