"""Image and coordinate transforms for SAM 1-family models (longest side -> 1024).

Frames: *original* pixels (the user's image, x right, y down), *input* pixels (the resized
image before padding, ``input_size = (H', W')``), and the padded square model input.
Preprocessing reproduces the official one exactly: the uint8 RGB image is resized with
PIL's bilinear filter (what the official ``ResizeLongestSide`` does via torchvision).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from samkit.errors import InvalidImage

ImageLike = np.ndarray | Image.Image | str | os.PathLike

#: What Pillow raises on a damaged file besides ``OSError`` (``UnidentifiedImageError``,
#: truncated data) and ``ValueError``: ``SyntaxError`` (a broken PNG chunk), ``struct.error``
#: (malformed EXIF), ``EOFError``, ``IndexError`` / ``KeyError`` / ``TypeError`` /
#: ``ZeroDivisionError`` from plugins parsing bad headers, and its decompression-bomb
#: error (a bare ``Exception``). Readers turn all of these into one typed error.
DAMAGED_IMAGE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    struct.error,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    Image.DecompressionBombError,
)


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB (EXIF orientation applied)."""
    p = Path(path)
    if not p.exists():
        raise InvalidImage(f"image not found: {p}")
    if not p.is_file():
        raise InvalidImage(f"not an image file: {p}")
    try:
        with Image.open(p) as im:
            im = ImageOps.exif_transpose(im)
            return pil_to_rgb(im)
    except DAMAGED_IMAGE_ERRORS as exc:
        raise InvalidImage(f"cannot read image {p}: {exc or type(exc).__name__}") from None


def pil_to_rgb(im: Image.Image) -> np.ndarray:
    """A PIL image as ``(H, W, 3)`` uint8 RGB.

    16-bit images (``I;16*``, e.g. 16-bit PNGs) are scaled to 8 bits (``v / 257``, so
    65535 -> 255); 32-bit integer (``I``) and float (``F``) images follow the rules of
    numpy arrays of their dtype (floats in [0, 1]; other dtypes are refused). PIL's own
    conversion to RGB would clip all of them to 0-255.
    """
    if im.mode.startswith("I;16"):
        gray = np.rint(np.asarray(im, dtype=np.float32) / 257.0).astype(np.uint8)
        return to_rgb_uint8(gray)
    if im.mode in ("I", "F"):
        try:
            return to_rgb_uint8(np.asarray(im))
        except InvalidImage as exc:
            raise InvalidImage(
                f"PIL image of mode {im.mode}: {exc}; convert the file to 8 bits per channel"
            ) from None
    return np.asarray(im.convert("RGB"))


def to_rgb_uint8(image: ImageLike) -> np.ndarray:
    """Normalise any supported image to a C-contiguous ``(H, W, 3)`` uint8 RGB array.

    Accepts a path, a PIL image, or a numpy array: ``(H, W)`` grayscale, ``(H, W, 1)``,
    ``(H, W, 3)`` RGB, ``(H, W, 4)`` RGBA (alpha is dropped), as uint8, as uint16
    (divided by 257 and rounded, as 16-bit image files are read) or as floats in [0, 1]
    (scaled by 255 and rounded).
    """
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, Image.Image):
        return pil_to_rgb(image)
    if isinstance(image, torch.Tensor):
        raise InvalidImage("pass images as numpy arrays (H, W, C), PIL images or paths")
    if not isinstance(image, np.ndarray):
        raise InvalidImage(f"unsupported image type {type(image).__name__}")
    arr = image
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InvalidImage(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got {image.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise InvalidImage(f"empty image of shape {image.shape}")
    arr = arr[:, :, :3]
    if arr.dtype == np.uint8:
        pass
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
            raise InvalidImage("float images must hold finite values in [0, 1]")
        arr = np.round(arr.astype(np.float64) * 255.0).astype(np.uint8)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:  # as 16-bit image files are read (v / 257)
        arr = np.rint(arr / 257.0).astype(np.uint8)
    else:
        raise InvalidImage(
            f"unsupported image dtype {arr.dtype}; use uint8, uint16 or float in [0, 1]"
        )
    return np.ascontiguousarray(arr)


def preprocess_shape(h: int, w: int, long_side: int) -> tuple[int, int]:
    """Size ``(H', W')`` after resizing the longest side to ``long_side`` (rounded)."""
    scale = long_side * 1.0 / max(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def resize_longest_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """Resize a uint8 ``(H, W, 3)`` image so its longest side is ``long_side`` (bilinear).

    Raises :class:`InvalidImage` when the short side would round to 0 pixels (an image
    more than ``2 * long_side`` times longer than it is wide).
    """
    h, w = preprocess_shape(image.shape[0], image.shape[1], long_side)
    if h < 1 or w < 1:
        raise InvalidImage(
            f"a {image.shape[1]}x{image.shape[0]} image is too elongated: resized to a "
            f"longest side of {long_side} pixels its short side becomes 0 pixels"
        )
    return np.array(Image.fromarray(image).resize((w, h), Image.BILINEAR))


def image_to_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(H, W, 3)`` uint8 -> ``(1, 3, H, W)`` float32 on ``device`` (0-255 scale)."""
    return torch.from_numpy(image).to(device).permute(2, 0, 1).unsqueeze(0).float()


def coords_to_input(
    coords: np.ndarray, original_size: tuple[int, int], input_size: tuple[int, int]
) -> np.ndarray:
    """Scale ``(..., 2)`` (x, y) original-pixel coordinates to the input frame (float64)."""
    out = np.array(coords, dtype=np.float64, copy=True)
    out[..., 0] *= input_size[1] / original_size[1]
    out[..., 1] *= input_size[0] / original_size[0]
    return out


def bilinear(
    x: torch.Tensor,
    size: tuple[int, int] | None = None,
    scale_factor: float | None = None,
) -> torch.Tensor:
    """``F.interpolate(x, ..., mode="bilinear", align_corners=False)`` on ``(..., h, w)``.

    Every leading index is its own single-channel image: torch's CPU kernel vectorises
    along the row then, not across a handful of channels. With one thread this made a
    whole ``sam-vit-b`` prompt-to-mask 66.7 -> 61.0 ms (three masks at 1024x768); with
    two threads it was the same. Values equal those of the plain call to float
    rounding (a few ULP).
    """
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    flat = x.reshape(-1, 1, h, w).contiguous()
    if size is not None:
        up = F.interpolate(flat, size, mode="bilinear", align_corners=False)
    else:
        up = F.interpolate(flat, scale_factor=scale_factor, mode="bilinear", align_corners=False)
    return up.reshape(*lead, *up.shape[-2:])


def postprocess_masks(
    low_res: torch.Tensor,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    image_size: int,
) -> torch.Tensor:
    """Upscale ``(B, K, h, w)`` low-res logits to ``(B, K, H, W)`` original-image logits.

    Same result as the official two-step upsampling (to the padded square input, crop
    the padding, then to the original size), but the first step only computes the
    rows/columns that survive the crop: bilinear interpolation with
    ``align_corners=False`` at an integer ``scale_factor`` reads only neighbouring
    source pixels, so slicing the source before upsampling gives identical values.
    """
    h_in, w_in = input_size
    scale = image_size // low_res.shape[-1]
    if scale * low_res.shape[-1] == image_size and low_res.shape[-2] == low_res.shape[-1]:
        # source rows/cols needed for output rows < h_in: floor((h_in - 0.5) / s + 0.5) + 1
        rows = min(low_res.shape[-2], (h_in + scale - 1) // scale + 1)
        cols = min(low_res.shape[-1], (w_in + scale - 1) // scale + 1)
        up = bilinear(low_res[..., :rows, :cols], scale_factor=float(scale))[..., :h_in, :w_in]
    else:
        up = bilinear(low_res, (image_size, image_size))[..., :h_in, :w_in]
    if (h_in, w_in) == tuple(original_size):
        return up
    return bilinear(up, original_size)
