"""How an image file becomes the RGB picture a model sees: one decoding for training, evaluation,
`segment()`, the pipeline and ``predict.py``.

- **EXIF orientation** is applied (a photo is what its viewer shows, not its stored pixel order);
  validation brings every cached image (and its mask) into that orientation once (`upright`).
- **High bit depth**: a 16-bit greyscale image (PIL modes ``I;16*``, ``I``) is scaled to 8 bits
  (``value / 257``), never clipped to white; a floating-point or wider image is refused by name.
  (16-bit RGB PNGs are read by Pillow as 8-bit RGB already.)
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

ORIENTATION_TAG = 0x0112  # EXIF "Orientation": 1 as stored; 2-8 mirrored and/or turned
TURNED = (5, 6, 7, 8)  # orientations that swap width and height
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class UnsupportedImage(ValueError):
    """An image whose pixels cannot be read as an 8-bit picture without inventing a scale."""


def orientation(image: Image.Image) -> int:
    """The image's EXIF orientation (1 when it has none)."""
    try:
        return int(image.getexif().get(ORIENTATION_TAG, 1) or 1)
    except Exception:  # a malformed EXIF block: the pixels as stored
        return 1


def upright(image: Image.Image) -> Image.Image:
    """`image` turned and mirrored as its EXIF orientation says (itself when it says nothing)."""
    return ImageOps.exif_transpose(image) if orientation(image) != 1 else image


# What each orientation does to the stored pixels, as `ImageOps.exif_transpose` applies it.
ORIENTATION_OPS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                   4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
                   7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


def turn_like(image: Image.Image, turn: int) -> Image.Image:
    """`image` turned and mirrored as EXIF orientation `turn` says (for a mask drawn on a photo's
    stored pixels, which must follow the photo when it is shown upright)."""
    return image.transpose(ORIENTATION_OPS[turn]) if turn in ORIENTATION_OPS else image


def to_rgb(image: Image.Image, name: str = "image") -> Image.Image:
    """The RGB picture of `image`: EXIF orientation applied, 16-bit greyscale scaled to 8 bits.

    Raises:
        UnsupportedImage: a floating-point image, or integer values beyond 16 bits, named by `name`.
    """
    image = upright(image)
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.int64)
        if values.min() < 0 or values.max() > 65535:
            raise UnsupportedImage(f"{name}: {image.mode} image with values {values.min()}-{values.max()}, beyond "
                                   "16 bits; convert it to an 8- or 16-bit image")
        image = Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), mode="L")
    elif image.mode == "F":
        raise UnsupportedImage(f"{name}: floating-point image (mode F), whose value range is unknown; convert it "
                               "to an 8- or 16-bit image")
    return image if image.mode == "RGB" else image.convert("RGB")


def open_rgb(path, name: str | None = None) -> Image.Image:
    """`to_rgb` of the image file at `path` (a path or a binary file object)."""
    with Image.open(path) as image:
        image.load()
        return to_rgb(image, name or str(path))


__all__ = ["UnsupportedImage", "open_rgb", "orientation", "to_rgb", "turn_like", "upright"]
