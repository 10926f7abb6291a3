"""Encoding of ``samkit segment`` results: mask PNG and COCO RLE for JSON (the overlay
is drawn by :mod:`samkit.viz`)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def png_bytes(image: Image.Image) -> bytes:
    """Encode a PIL image as PNG bytes (so the file can be written atomically)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def mask_png(mask: np.ndarray) -> bytes:
    """A ``(H, W)`` bool mask as an 8-bit grayscale PNG: 255 inside, 0 outside."""
    return png_bytes(Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)))


def mask_rle(mask: np.ndarray) -> dict[str, object]:
    """COCO compressed RLE of a ``(H, W)`` mask as JSON-ready ``{"size", "counts"}``.

    ``pycocotools.mask.decode`` reads it back (after ``counts.encode()`` or as is).
    """
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = rle["counts"]
    return {
        "size": [int(s) for s in rle["size"]],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else str(counts),
    }
