"""PNG encoding of CLI outputs: masks and pictures (COCO RLE comes from
:func:`samkit.masks.masks_to_coco_rle`, overlays from :mod:`samkit.viz`)."""

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
