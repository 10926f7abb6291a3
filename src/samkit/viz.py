"""Drawing masks for people: distinct colours, translucent fills with outlines, prompts.

The one copy of the drawing used by ``samkit segment --overlay``, ``samkit auto``'s
overlays and ``samkit track --format overlay-mp4``; also meant for notebooks::

    from samkit.viz import overlay_masks, prompt_overlay

    overlay_masks(image, result.masks).save("candidates.png")
    prompt_overlay(image, result.best_mask, points=[[500, 375]], labels=[1]).show()

Conventions: images are ``(H, W, 3)`` uint8 RGB; masks are ``(H, W)`` bool in the same
pixels; points ``(x, y)`` and boxes ``(x0, y0, x1, y1)`` are in image pixels. Colours are
``(r, g, b)`` ints in 0-255. Blending is done in float32 and rounded once, so a pixel
inside a mask of colour ``c`` at ``alpha`` is ``round((1 - alpha) * pixel + alpha * c)``.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from samkit.errors import InvalidArgument, InvalidMask
from samkit.inference.transforms import ImageLike, to_rgb_uint8

#: Fill opacity of :class:`MaskOverlay` and :func:`overlay_masks`.
OVERLAY_ALPHA = 0.5
#: Colour and opacity of the mask in :func:`prompt_overlay`.
PROMPT_MASK_COLOUR = (30, 144, 255)
PROMPT_MASK_ALPHA = 0.45
#: Prompt markers: positive click, negative click, box, marker edge.
POSITIVE_COLOUR = (0, 200, 0)
NEGATIVE_COLOUR = (230, 0, 0)
BOX_COLOUR = (255, 200, 0)
MARKER_EDGE = (255, 255, 255)

Colour = tuple[int, int, int]

__all__ = [
    "OVERLAY_ALPHA",
    "MaskOverlay",
    "as_mask",
    "draw_prompts",
    "erode",
    "mask_colour",
    "overlay_masks",
    "prompt_overlay",
]


def mask_colour(index: int) -> Colour:
    """A distinct, deterministic colour for mask (or object) ``index``: hues spaced by
    the golden ratio, so neighbouring indices never look alike."""
    hue = (index * 0.6180339887498949) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion of a ``(H, W)`` bool mask by a ``(2r+1)`` square; pixels beyond the
    border count as inside (so a mask touching the border has no outline there)."""
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


class MaskOverlay:
    """An image with masks painted on it, built one mask at a time.

    Each mask is filled with its colour at ``alpha`` and outlined ``outline`` pixels wide
    in full colour (0: no outline). A mask added later is drawn over earlier ones, so add
    large masks first. Memory stays at a few image-sized arrays whatever the number of
    masks.
    """

    def __init__(self, image: ImageLike, alpha: float = OVERLAY_ALPHA, outline: int = 1) -> None:
        """``image``: anything :meth:`samkit.ImagePredictor.set_image` takes (``(H, W, 3)``
        uint8 RGB, gray, RGBA, floats in [0, 1], PIL, a path; not modified), read by
        :func:`~samkit.inference.transforms.to_rgb_uint8` (``InvalidImage`` otherwise)."""
        image = to_rgb_uint8(image)
        if not 0.0 <= alpha <= 1.0:
            raise InvalidArgument(f"alpha must be in [0, 1], got {alpha}")
        h, w = image.shape[:2]
        self.image = image
        self.alpha = float(alpha)
        self.outline = int(outline)
        self._fill = np.zeros((h, w, 3), dtype=np.uint8)
        self._filled = np.zeros((h, w), dtype=bool)
        self._edge = np.zeros((h, w, 3), dtype=np.uint8)
        self._edged = np.zeros((h, w), dtype=bool)

    def add(self, mask: np.ndarray, colour: Sequence[int]) -> None:
        """Paint the ``(H, W)`` ``mask`` in ``colour`` over what is there (see
        :func:`as_mask`: bool, or logits whose positive pixels are the mask)."""
        mask = as_mask(mask)
        if mask.shape != self._filled.shape:
            raise InvalidMask(f"mask shape {mask.shape} != image size {self._filled.shape}")
        self._fill[mask] = colour
        self._filled |= mask
        if self.outline > 0:
            edge = mask & ~erode(mask, self.outline)
            self._edge[edge] = colour
            self._edged |= edge

    def render_array(self) -> np.ndarray:
        """The blended picture, ``(H, W, 3)`` uint8."""
        out = self.image.astype(np.float32)
        inside = self._filled
        out[inside] = out[inside] * (1.0 - self.alpha) + self._fill[inside] * self.alpha
        out[self._edged] = self._edge[self._edged]
        return np.clip(np.round(out), 0, 255).astype(np.uint8)

    def render(self) -> Image.Image:
        """The blended picture as an RGB PIL image."""
        return Image.fromarray(self.render_array())


def as_mask(mask: np.ndarray) -> np.ndarray:
    """A mask as bool: bool (or 0/1 integer) masks as they are, float masks as logits
    thresholded at 0 (what ``return_logits=True`` gives; the predictors' threshold)."""
    mask = np.asarray(mask)
    if np.issubdtype(mask.dtype, np.floating):
        return mask > 0.0
    return mask.astype(bool)


def overlay_masks(
    image: np.ndarray,
    masks: np.ndarray | Sequence[np.ndarray],
    colours: Sequence[Sequence[int]] | None = None,
    alpha: float = OVERLAY_ALPHA,
    outline: int = 1,
) -> Image.Image:
    """``image`` with every mask of ``masks`` (``(N, H, W)`` bool, or a list of ``(H, W)``)
    painted on it: mask ``i`` in ``colours[i]`` (default :func:`mask_colour` ``(i)``),
    larger masks first so that smaller ones stay visible on top."""
    items = [as_mask(m) for m in masks]
    if colours is not None and len(colours) != len(items):
        raise InvalidArgument(f"{len(colours)} colours for {len(items)} masks")
    canvas = MaskOverlay(image, alpha=alpha, outline=outline)
    for i in sorted(range(len(items)), key=lambda i: -int(items[i].sum())):
        canvas.add(items[i], mask_colour(i) if colours is None else colours[i])
    return canvas.render()


def draw_prompts(
    picture: Image.Image,
    points: Sequence[Sequence[float]] = (),
    labels: Sequence[int] = (),
    box: Sequence[float] | None = None,
) -> None:
    """Draw clicks (label 1: green, else red, white edge) and a box (yellow) on
    ``picture`` in place; marker sizes scale with the picture's longest side."""
    longest = max(picture.size)
    line = max(1, round(longest / 500))
    draw = ImageDraw.Draw(picture)
    if box is not None:
        x0, y0, x1, y1 = (float(v) for v in box)
        draw.rectangle((x0, y0, x1, y1), outline=BOX_COLOUR, width=max(2, 2 * line))
    radius = max(4, round(longest / 100))
    for (x, y), label in zip(points, labels, strict=True):
        fill = POSITIVE_COLOUR if label == 1 else NEGATIVE_COLOUR
        draw.ellipse(
            (x - radius, y - radius, x + radius, y + radius),
            fill=fill,
            outline=MARKER_EDGE,
            width=max(1, radius // 4),
        )


def prompt_overlay(
    image: np.ndarray,
    mask: np.ndarray,
    points: Sequence[Sequence[float]] = (),
    labels: Sequence[int] = (),
    box: Sequence[float] | None = None,
) -> Image.Image:
    """``image`` with one ``(H, W)`` ``mask`` tinted and outlined (outline width scaled to
    the image) and the prompt that produced it drawn on top (:func:`draw_prompts`)."""
    mask = as_mask(mask)
    line = max(1, round(max(mask.shape) / 500))
    canvas = MaskOverlay(image, alpha=PROMPT_MASK_ALPHA, outline=line)
    canvas.add(mask, PROMPT_MASK_COLOUR)
    picture = canvas.render()
    draw_prompts(picture, points, labels, box)
    return picture
