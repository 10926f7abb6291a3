"""Pure augmentations on :class:`Sample` (each returns a new sample; inputs are untouched).

Geometric ops move image and masks together; photometric ops change the image only.
``levels`` and ``image_id`` are carried through unchanged.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from PIL import Image

from samkit.data.types import Sample
from samkit.errors import InvalidArgument

__all__ = [
    "Augment",
    "color_jitter",
    "hflip",
    "resize_longest_side",
    "vflip",
]

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def resize_longest_side(sample: Sample, long_side: int) -> Sample:
    """Resize so that ``max(H, W) == long_side``, keeping the aspect ratio.

    The new size is ``(int(H * s + 0.5), int(W * s + 0.5))`` with ``s = long_side / max(H, W)``
    (as in SAM's ``ResizeLongestSide``). The image is resampled bilinearly with PIL; masks
    use nearest neighbour on pixel centres (output pixel ``j`` takes input pixel
    ``floor((j + 0.5) * in / out)``), so a mask stays aligned with the image content.
    """
    if long_side <= 0:
        raise InvalidArgument(f"long_side must be positive, got {long_side}")
    h, w = sample.image.shape[:2]
    scale = long_side / max(h, w)
    new_h, new_w = max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))
    if (new_h, new_w) == (h, w):
        return replace(sample, image=sample.image.copy(), masks=sample.masks.copy())
    image = np.asarray(Image.fromarray(sample.image).resize((new_w, new_h), Image.BILINEAR))
    rows = np.minimum(((np.arange(new_h) + 0.5) * h / new_h).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(new_w) + 0.5) * w / new_w).astype(np.int64), w - 1)
    masks = sample.masks[:, rows][:, :, cols]
    return replace(sample, image=image.copy(), masks=np.ascontiguousarray(masks))


def hflip(sample: Sample) -> Sample:
    """Mirror left–right (``x -> W - 1 - x``) image and masks."""
    return replace(
        sample,
        image=np.ascontiguousarray(sample.image[:, ::-1]),
        masks=np.ascontiguousarray(sample.masks[:, :, ::-1]),
    )


def vflip(sample: Sample) -> Sample:
    """Mirror top–bottom (``y -> H - 1 - y``) image and masks."""
    return replace(
        sample,
        image=np.ascontiguousarray(sample.image[::-1]),
        masks=np.ascontiguousarray(sample.masks[:, ::-1]),
    )


def color_jitter(
    sample: Sample,
    rng: np.random.Generator,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
) -> Sample:
    """Random brightness, contrast and saturation change of the image (masks untouched).

    Factors are drawn uniformly from ``[1 - x, 1 + x]`` (in this order: brightness,
    contrast, saturation; a strength of 0 draws nothing) and applied in that order:
    brightness scales pixel values, contrast blends with the mean luma, saturation blends
    with the per-pixel luma (torchvision's definitions). Result is rounded and clipped.
    """
    img = sample.image.astype(np.float32)
    if brightness > 0:
        img = img * rng.uniform(1 - brightness, 1 + brightness)
    if contrast > 0:
        f = rng.uniform(1 - contrast, 1 + contrast)
        mean = float((np.clip(img, 0, 255) @ _LUMA).mean())
        img = f * img + (1 - f) * mean
    if saturation > 0:
        f = rng.uniform(1 - saturation, 1 + saturation)
        gray = (np.clip(img, 0, 255) @ _LUMA)[..., None]
        img = f * img + (1 - f) * gray
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return replace(sample, image=image, masks=sample.masks.copy())


class Augment:
    """Seeded composition: optional resize, random flips, then colour jitter.

    ``Augment(seed=0)`` owns a ``numpy.random.Generator``; each call draws from it, so a
    fresh ``Augment`` with the same seed replays the same sequence. :meth:`apply` is the
    pure form taking an explicit generator.

    Args:
        long_side: if set, :func:`resize_longest_side` to this size first.
        hflip_p: probability of :func:`hflip`.
        vflip_p: probability of :func:`vflip`.
        brightness, contrast, saturation: :func:`color_jitter` strengths (all 0: no jitter).
        seed: seed of the internal generator.
    """

    def __init__(
        self,
        *,
        long_side: int | None = None,
        hflip_p: float = 0.5,
        vflip_p: float = 0.0,
        brightness: float = 0.2,
        contrast: float = 0.2,
        saturation: float = 0.2,
        seed: int | None = 0,
    ) -> None:
        self.long_side = long_side
        self.hflip_p = hflip_p
        self.vflip_p = vflip_p
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.rng = np.random.default_rng(seed)

    def apply(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """Augment ``sample`` drawing all randomness from ``rng``."""
        out = sample
        if self.long_side is not None:
            out = resize_longest_side(out, self.long_side)
        # Always draw both flips so the stream of draws does not depend on the outcome.
        do_h, do_v = rng.random() < self.hflip_p, rng.random() < self.vflip_p
        if do_h:
            out = hflip(out)
        if do_v:
            out = vflip(out)
        if self.brightness > 0 or self.contrast > 0 or self.saturation > 0:
            out = color_jitter(out, rng, self.brightness, self.contrast, self.saturation)
        if out is sample:
            out = replace(sample, image=sample.image.copy(), masks=sample.masks.copy())
        return out

    def __call__(self, sample: Sample) -> Sample:
        return self.apply(sample, self.rng)
