"""Point grids and crop boxes of the multi-crop mask generator, and the maps from crop
coordinates back to the image."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from samkit.errors import InvalidArgument, InvalidMask


def build_point_grid(n_per_side: int) -> np.ndarray:
    """``(n*n, 2)`` float64 ``(x, y)`` points, normalised to ``[0, 1]``: cell centres of an
    ``n x n`` grid, ``x`` varying fastest (row by row from the top)."""
    if n_per_side < 1:
        raise InvalidArgument(f"n_per_side must be >= 1, got {n_per_side}")
    half_cell = 1 / (2 * n_per_side)
    centres = np.linspace(half_cell, 1 - half_cell, n_per_side)
    xs, ys = np.meshgrid(centres, centres)  # xs[r, c] = centres[c], ys[r, c] = centres[r]
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def layer_points_per_side(n_per_side: int, n_layers: int, scale_per_layer: int) -> list[int]:
    """Points per side of crop layers ``0..n_layers``: ``int(n_per_side /
    scale_per_layer**i)`` for layer ``i``.

    Raises :class:`~samkit.errors.InvalidArgument` (a ``ValueError``) naming the first
    layer that would get no points (checked before any grid is built; no power is
    computed past that layer, so a huge ``n_layers`` fails at once).
    """
    if n_per_side < 1 or scale_per_layer < 1:
        raise InvalidArgument("points per side and the per-layer scale must be >= 1")
    counts, scale = [], 1
    for layer in range(n_layers + 1):
        if scale > n_per_side:
            raise InvalidArgument(
                f"crop layer {layer} would get no points ({n_per_side} / "
                f"{scale_per_layer}^{layer} < 1)"
            )
        counts.append(int(n_per_side / scale))
        if scale_per_layer == 1:  # every layer the same
            return counts + [n_per_side] * (n_layers - layer)
        scale *= scale_per_layer
    return counts


def build_all_layer_point_grids(
    n_per_side: int, n_layers: int, scale_per_layer: int
) -> list[np.ndarray]:
    """Point grids for crop layers ``0..n_layers``: layer ``i`` has
    ``int(n_per_side / scale_per_layer**i)`` points per side (see :func:`build_point_grid`);
    :class:`~samkit.errors.InvalidArgument` when a layer would have none
    (:func:`layer_points_per_side`).
    """
    counts = layer_points_per_side(n_per_side, n_layers, scale_per_layer)
    return [build_point_grid(n) for n in counts]


def generate_crop_boxes(
    im_size: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """Crop boxes for multi-crop AMG.

    Args:
        im_size: ``(H, W)`` of the image.
        n_layers: number of crop layers below the whole image; layer ``i >= 1`` has
            ``2**i`` crops per side.
        overlap_ratio: overlap of neighbouring crops as a fraction of the image's short
            side at layer 1 (halved at each further layer).

    Returns:
        ``(boxes, layer_idxs)``: ``[x0, y0, x1, y1]`` int boxes in image pixels (end
        exclusive, clipped to the image) and the layer of each. The whole image comes
        first; within a layer crops go column by column (``x0`` outer, ``y0`` inner), as
        in the official ``generate_crop_boxes``.
    """
    im_h, im_w = (int(s) for s in im_size)
    short_side = min(im_h, im_w)
    boxes: list[list[int]] = [[0, 0, im_w, im_h]]
    layer_idxs: list[int] = [0]
    for layer in range(1, n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * short_side * (2 / per_side))
        # ceil((overlap * (per_side - 1) + length) / per_side), exactly, in integers
        crop_w = -(-(overlap * (per_side - 1) + im_w) // per_side)
        crop_h = -(-(overlap * (per_side - 1) + im_h) // per_side)
        x_starts = [(crop_w - overlap) * i for i in range(per_side)]
        y_starts = [(crop_h - overlap) * i for i in range(per_side)]
        for x0 in x_starts:
            for y0 in y_starts:
                boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
                layer_idxs.append(layer)
    return boxes, layer_idxs


def _offset(crop_box: Sequence[int], n: int, device: torch.device) -> torch.Tensor:
    x0, y0 = crop_box[0], crop_box[1]
    return torch.tensor([x0, y0] * (n // 2), device=device)


def uncrop_boxes_xyxy(boxes: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    """``(..., 4)`` ``XYXY`` boxes in the crop ``crop_box = [x0, y0, x1, y1]`` -> image
    frame (adds ``[x0, y0, x0, y0]``; dtype follows torch promotion with an int64 or
    float32 offset, as in the official code)."""
    return boxes + _offset(crop_box, 4, boxes.device)


def uncrop_points(points: torch.Tensor, crop_box: Sequence[int]) -> torch.Tensor:
    """``(..., 2)`` ``(x, y)`` pixel points in the crop -> image frame (adds ``[x0, y0]``)."""
    return points + _offset(crop_box, 2, points.device)


def uncrop_masks(
    masks: torch.Tensor, crop_box: Sequence[int], orig_h: int, orig_w: int
) -> torch.Tensor:
    """Paste ``(..., h, w)`` masks of the crop ``[x0, y0, x1, y1]`` into zero
    ``(..., orig_h, orig_w)`` canvases at ``[y0:y1, x0:x1]``. A crop covering the whole
    image returns ``masks`` itself."""
    x0, y0, x1, y1 = (int(v) for v in crop_box)
    if (x0, y0, x1, y1) == (0, 0, orig_w, orig_h):
        return masks
    if tuple(masks.shape[-2:]) != (y1 - y0, x1 - x0):
        raise InvalidMask(
            f"masks of shape {tuple(masks.shape)} do not fit the crop box {list(crop_box)}"
        )
    out = masks.new_zeros((*masks.shape[:-2], orig_h, orig_w))
    out[..., y0:y1, x0:x1] = masks
    return out


def is_box_near_crop_edge(
    boxes: torch.Tensor,
    crop_box: Sequence[int],
    orig_box: Sequence[int],
    atol: float = 20.0,
) -> torch.Tensor:
    """Which ``(N, 4)`` crop-frame ``XYXY`` boxes touch a crop edge that is not an image
    edge -> ``(N,)`` bool.

    The boxes are moved to the image frame; a coordinate is "near" an edge when it is
    within ``atol`` pixels (float32 ``isclose``, ``rtol=0``) of the same coordinate of
    ``crop_box``, and counts only if it is not also within ``atol`` of ``orig_box`` (the
    whole image, ``[0, 0, W, H]``).
    """
    crop = torch.as_tensor(crop_box, dtype=torch.float, device=boxes.device)
    orig = torch.as_tensor(orig_box, dtype=torch.float, device=boxes.device)
    image_frame = uncrop_boxes_xyxy(boxes, crop_box).float()
    near_crop = torch.isclose(image_frame, crop, atol=atol, rtol=0)
    near_image = torch.isclose(image_frame, orig, atol=atol, rtol=0)
    return (near_crop & ~near_image).any(dim=-1)
