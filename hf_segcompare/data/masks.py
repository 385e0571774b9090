"""How masks are stored and drawn: 8-bit PNGs whose pixel values are class ids, coloured with the
VOC palette (defined for all 256 values, so it colours any label set)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image as PILImage


def voc_palette() -> list[tuple[int, int, int]]:
    """The 256-entry VOC colour map (index 0 black, 1 dark red, ..., 255 cream for void).

    VOC builds it by spreading the bits of the class id over the high bits of R, G and B, which
    gives every value 0-255 its own colour: it serves any label set of up to 255 classes.
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


def mask_to_array(mask: PILImage.Image) -> np.ndarray:
    """Class-id array (H, W, uint8) of a stored mask.

    Masks are palette ("P") or greyscale ("L") PNGs whose pixel values *are* the class ids;
    converting a palette PNG with ``.convert("L")`` would turn its colours into grey levels, so
    they are read as they are.
    """
    if mask.mode not in ("P", "L"):
        raise ValueError(
            f"mask {getattr(mask, 'filename', '')!r} has mode {mask.mode}; expected a palette (P) or "
            "greyscale (L) PNG whose pixel values are class ids."
        )
    return np.asarray(mask, dtype=np.uint8)


def encode_mask_png(array: np.ndarray) -> bytes:
    """A greyscale PNG of a class-id array (H, W, uint8), as the cache stores decoded masks."""
    buffer = io.BytesIO()
    PILImage.fromarray(np.ascontiguousarray(array, dtype=np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


__all__ = ["encode_mask_png", "mask_to_array", "voc_palette"]
