"""Encoding of ``samkit segment`` results: mask PNG, overlay PNG and COCO RLE for JSON."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

MASK_COLOR = (30, 144, 255)  # translucent tint and outline of the chosen mask
MASK_ALPHA = 0.45
POSITIVE_COLOR = (0, 200, 0)
NEGATIVE_COLOR = (230, 0, 0)
BOX_COLOR = (255, 200, 0)
MARKER_EDGE = (255, 255, 255)


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


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion by a ``(2r+1)`` square; pixels beyond the border count as inside."""
    out = mask.copy()
    h, w = mask.shape
    for axis, n in ((0, h), (1, w)):
        src = out.copy()
        for shift in range(1, min(radius, n - 1) + 1):
            if axis == 0:
                out[shift:] &= src[:-shift]
                out[:-shift] &= src[shift:]
            else:
                out[:, shift:] &= src[:, :-shift]
                out[:, :-shift] &= src[:, shift:]
    return out


def render_overlay(
    image: np.ndarray,
    mask: np.ndarray,
    points: Sequence[Sequence[float]] = (),
    labels: Sequence[int] = (),
    box: Sequence[float] | None = None,
) -> Image.Image:
    """The image with ``mask`` tinted and outlined, and the prompt drawn on top.

    Args:
        image: ``(H, W, 3)`` uint8 RGB.
        mask: ``(H, W)`` bool.
        points: (x, y) clicks in image pixels; ``labels`` 1 = positive (green),
            0 = negative (red).
        box: x0, y0, x1, y1 in image pixels, drawn as a rectangle.
    """
    h, w = mask.shape
    longest = max(h, w)
    line = max(1, round(longest / 500))
    out = image.astype(np.float32)
    color = np.asarray(MASK_COLOR, dtype=np.float32)
    out[mask] = out[mask] * (1.0 - MASK_ALPHA) + color * MASK_ALPHA
    outline = mask & ~erode(mask, line)
    out[outline] = color
    overlay = Image.fromarray(np.clip(np.round(out), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(overlay)
    if box is not None:
        x0, y0, x1, y1 = (float(v) for v in box)
        draw.rectangle((x0, y0, x1, y1), outline=BOX_COLOR, width=max(2, 2 * line))
    radius = max(4, round(longest / 100))
    for (x, y), label in zip(points, labels, strict=True):
        fill = POSITIVE_COLOR if label == 1 else NEGATIVE_COLOR
        draw.ellipse(
            (x - radius, y - radius, x + radius, y + radius),
            fill=fill,
            outline=MARKER_EDGE,
            width=max(1, radius // 4),
        )
    return overlay
