"""Video frames and prompts in the SAM 2 model's frame, and mask post-processing.

Frames are decoded and normalised the way the official JPEG-folder loader does (PIL
bicubic resize of the whole frame to the model's square input, aspect not kept); clicks,
boxes and masks given in video pixels are mapped into that square frame; predicted
logits are hole-filled, made non-overlapping and resized back to the video.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from samkit.errors import InvalidImage, InvalidPrompt, InvalidVideo
from samkit.inference.transforms import pil_to_rgb
from samkit.masks import small_components
from samkit.modeling.sam2 import Sam2
from samkit.video.state import Points

#: Value a filled hole gets in :func:`fill_holes` (a small positive logit).
HOLE_FILL_LOGIT = 0.1


# ----------------------------------------------------------------------------- frames
def prepare_frame(
    rgb: np.ndarray | Image.Image, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """An RGB frame -> normalised ``(3, S, S)`` float32 tensor, as the official JPEG
    loader: PIL bicubic resize of the whole frame to ``S x S``, ``/ 255`` in float64,
    then ``(x - mean) / std`` in float32."""
    img = rgb if isinstance(rgb, Image.Image) else Image.fromarray(np.asarray(rgb))
    img = img.convert("RGB").resize((image_size, image_size), Image.BICUBIC)
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        raise InvalidImage(f"expected an 8-bit RGB frame, got {arr.dtype}")
    x = torch.from_numpy(arr / 255.0).permute(2, 0, 1).float()
    mean_t = torch.tensor(tuple(mean), dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(tuple(std), dtype=torch.float32)[:, None, None]
    return (x - mean_t) / std_t


def load_frame(
    path: str | os.PathLike, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Read an image file -> (normalised ``(3, S, S)`` tensor, original ``(H, W)``).

    The stored pixels are used as the official loader uses them (no EXIF orientation);
    16-bit frames are scaled to 8 bits (``v / 257``) where PIL's conversion would clip
    them (:func:`samkit.inference.transforms.pil_to_rgb`)."""
    with Image.open(path) as img:
        rgb = pil_to_rgb(img)
    return prepare_frame(rgb, image_size, mean, std), (rgb.shape[0], rgb.shape[1])


def _frame_sort_key(path: Path) -> tuple:
    try:
        return (0, int(path.stem), "")
    except ValueError:  # not an integer stem: natural order of the name
        parts = re.split(r"(\d+)", path.name)
        return (1, 0, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts))


def list_video_frames(folder: str | os.PathLike) -> list[Path]:
    """The frames of a folder: JPEG files (``<index>.jpg``) sorted by their integer
    stem as the official loader does; if there are none, PNG files likewise (names
    that are not integers sort naturally)."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file()]
    for suffixes in ((".jpg", ".jpeg"), (".png",)):
        chosen = [p for p in files if p.suffix.lower() in suffixes]
        if chosen:
            return sorted(chosen, key=_frame_sort_key)
    raise InvalidVideo(f"no JPEG or PNG frames in {folder}")


def model_frame(model: Sam2, rgb: np.ndarray | Image.Image) -> torch.Tensor:
    """:func:`prepare_frame` with the model's input size and pixel statistics, as a
    ``(1, 3, S, S)`` batch on the model's device."""
    mean, std = model.config.pixel_mean, model.config.pixel_std
    return prepare_frame(rgb, model.image_size, mean, std).unsqueeze(0).to(model.device)


# ------------------------------------------------------------------------- prompts
def points_to_model(
    points: torch.Tensor | Sequence[Sequence[float]] | None,
    labels: torch.Tensor | Sequence[int] | None,
    video_size: tuple[int, int],
    image_size: int,
    box: torch.Tensor | Sequence[float] | None = None,
) -> Points:
    """Clicks (and a box) of one object in video pixels -> :class:`Points` ``(1, P, ..)``
    in the model's input frame (``x * S / W``, ``y * S / H``), the box's two corners
    first with labels 2 and 3, as the official ``add_new_points_or_box`` does."""
    if (points is None) != (labels is None):
        raise InvalidPrompt("points and labels must be given together")
    coords = torch.zeros(0, 2) if points is None else torch.as_tensor(points, dtype=torch.float32)
    labs = torch.zeros(0, dtype=torch.int32)
    if labels is not None:
        labs = torch.as_tensor(labels, dtype=torch.int32)
    if coords.shape[0] != labs.shape[0] or (coords.numel() and coords.shape[-1] != 2):
        raise InvalidPrompt("points must be (P, 2) with one label each")
    coords = coords.reshape(1, -1, 2)
    labs = labs.reshape(1, -1)
    if box is not None:
        corners = torch.as_tensor(box, dtype=torch.float32).reshape(1, 2, 2)
        coords = torch.cat([corners, coords], dim=1)
        labs = torch.cat([torch.tensor([[2, 3]], dtype=torch.int32), labs], dim=1)
    if coords.shape[1] == 0:
        raise InvalidPrompt("give at least one point or a box")
    h, w = video_size
    coords = coords / torch.tensor([w, h]) * image_size
    return Points(coords, labs)


def concat_points(old: Points | None, new: Points) -> Points:
    """Append clicks to an object's earlier ones (the official ``clear_old_points=False``)."""
    if old is None:
        return new
    return Points(torch.cat([old.coords, new.coords], 1), torch.cat([old.labels, new.labels], 1))


def mask_to_model(mask: torch.Tensor | np.ndarray, image_size: int) -> torch.Tensor:
    """A binary ``(H, W)`` mask of one object -> ``(1, 1, S, S)`` float mask prompt:
    resized with antialiased bilinear interpolation and thresholded at 0.5 (as the
    official ``add_new_mask``), unchanged if already ``S x S``."""
    m = torch.as_tensor(mask)
    if m.dim() != 2:
        raise InvalidPrompt("mask must be (H, W)")
    m = m.to(torch.bool).float()[None, None]
    if tuple(m.shape[-2:]) == (image_size, image_size):
        return m
    m = F.interpolate(
        m, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True
    )
    return (m >= 0.5).float()


# --------------------------------------------------------------------- post-processing
def fill_holes(mask_logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """Fill small background holes of ``(B, 1, H, W)`` logits (the video predictor's
    ``fill_hole_area``): 8-connected regions of ``logits <= 0`` with at most
    ``max_area`` pixels get logit 0.1. (The official computes the components with a
    CUDA extension and silently skips this step without it; this runs on the CPU with
    scipy.) Returns a new tensor, or the input when ``max_area <= 0``."""
    if max_area <= 0:
        return mask_logits
    background = (mask_logits <= 0).reshape(-1, *mask_logits.shape[-2:]).cpu().numpy()
    holes = np.zeros_like(background)
    for i, region in enumerate(background):
        holes[i] = small_components(region, max_area)
    is_hole = torch.from_numpy(holes).reshape(mask_logits.shape).to(mask_logits.device)
    return torch.where(is_hole, HOLE_FILL_LOGIT, mask_logits)


def apply_non_overlapping_constraints(mask_logits: torch.Tensor) -> torch.Tensor:
    """Objects on the batch dimension ``(B, 1, H, W)``: keep each pixel's logit only for
    the highest-scoring object; the others are clamped to at most -10."""
    if mask_logits.shape[0] == 1:
        return mask_logits
    winner = torch.argmax(mask_logits, dim=0, keepdim=True)
    rows = torch.arange(mask_logits.shape[0], device=mask_logits.device)[:, None, None, None]
    return torch.where(winner == rows, mask_logits, mask_logits.clamp(max=-10.0))


def to_video_resolution(mask_logits: torch.Tensor, video_size: tuple[int, int]) -> torch.Tensor:
    """``(B, 1, h, w)`` logits -> ``(B, 1, H, W)`` at the video's size (bilinear)."""
    if tuple(mask_logits.shape[-2:]) == tuple(video_size):
        return mask_logits
    return F.interpolate(mask_logits, size=video_size, mode="bilinear", align_corners=False)


def upsample_to_input(model: Sam2, low_res: torch.Tensor) -> torch.Tensor:
    """Low-res logits -> ``(B, 1, S, S)`` at the model's input size (bilinear), e.g. to
    re-encode a stored low-res prediction into memory with :func:`encode_memory`."""
    s = model.image_size
    return F.interpolate(low_res.float(), size=(s, s), mode="bilinear", align_corners=False)


__all__ = [
    "HOLE_FILL_LOGIT",
    "apply_non_overlapping_constraints",
    "concat_points",
    "fill_holes",
    "list_video_frames",
    "load_frame",
    "mask_to_model",
    "model_frame",
    "points_to_model",
    "prepare_frame",
    "to_video_resolution",
    "upsample_to_input",
]
