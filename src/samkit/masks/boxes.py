"""Boxes of masks, box IoU and greedy (batched) NMS without torchvision; conventions in
:mod:`samkit.masks`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from samkit.errors import InvalidArgument, InvalidMask

_NMS_BLOCK = 2048
"""Boxes per block in :func:`nms`: IoU matrices are at most ``_NMS_BLOCK**2`` entries."""


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes around ``(..., H, W)`` bool masks -> ``(..., 4)`` int64 ``XYXY``.

    Coordinates are inclusive pixel indices (``x1``/``y1`` are the last set column/row),
    in the masks' frame. Empty masks (and any input with zero elements) give
    ``[0, 0, 0, 0]``. Same values as the official ``batched_mask_to_box``, except that the
    dtype is always int64 (the official returns float32 zeros for zero-element input).
    """
    if masks.dim() < 2:
        raise InvalidMask(f"masks must be (..., H, W), got shape {tuple(masks.shape)}")
    *lead, h, w = masks.shape
    if masks.numel() == 0:
        return torch.zeros((*lead, 4), dtype=torch.int64, device=masks.device)
    if masks.dtype != torch.bool:
        masks = masks != 0
    rows = masks.any(dim=-1)  # (..., H): row y has a set pixel
    cols = masks.any(dim=-2)  # (..., W)
    ys = torch.arange(h, device=masks.device)
    xs = torch.arange(w, device=masks.device)
    y0 = torch.where(rows, ys, h).amin(dim=-1)
    y1 = torch.where(rows, ys, -1).amax(dim=-1)
    x0 = torch.where(cols, xs, w).amin(dim=-1)
    x1 = torch.where(cols, xs, -1).amax(dim=-1)
    boxes = torch.stack([x0, y0, x1, y1], dim=-1)
    return boxes.masked_fill(~rows.any(dim=-1, keepdim=True), 0)


def box_xyxy_to_xywh(box: Any) -> Any:
    """``XYXY`` -> ``XYWH`` (``w = x1 - x0``, ``h = y1 - y0``), returning a new object.

    Accepts a tensor or array ``(..., 4)`` (same dtype back), a list/tuple of 4 numbers
    (a list back) or a list of such boxes (a list of lists back).
    """
    if isinstance(box, torch.Tensor):
        out = box.clone()
        out[..., 2:] = box[..., 2:] - box[..., :2]
        return out
    if isinstance(box, np.ndarray):
        out = box.copy()
        out[..., 2:] = box[..., 2:] - box[..., :2]
        return out
    items = list(box)
    if items and isinstance(items[0], Sequence | np.ndarray | torch.Tensor):
        return [box_xyxy_to_xywh(b) for b in items]
    if len(items) != 4:
        raise InvalidArgument(f"a box has 4 numbers, got {len(items)}")
    x0, y0, x1, y1 = items
    return [x0, y0, x1 - x0, y1 - y0]


def _upcast(t: torch.Tensor) -> torch.Tensor:
    """Avoid overflow/precision loss like torchvision: half -> float32, small ints -> int32."""
    if t.is_floating_point():
        return t if t.dtype in (torch.float32, torch.float64) else t.float()
    return t if t.dtype in (torch.int32, torch.int64) else t.int()


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas ``(x1 - x0) * (y1 - y0)`` of ``(..., 4)`` ``XYXY`` boxes -> ``(...)``."""
    boxes = _upcast(boxes)
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` ``XYXY`` boxes -> ``(N, M)``.

    Same arithmetic as torchvision's ``box_iou``: ``inter / (area1 + area2 - inter)`` with
    areas without ``+1``; integer boxes give float32 (true division); two degenerate
    boxes give nan (0 / 0).
    """
    area1 = box_area(boxes1)
    area2 = box_area(boxes2)
    lt = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = _upcast(rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area1[:, None] + area2[None, :] - inter)


def _suppresses(
    a: torch.Tensor,
    b: torch.Tensor,
    iou_threshold: float,
    cat_a: torch.Tensor | None,
    cat_b: torch.Tensor | None,
) -> torch.Tensor:
    """``(len(a), len(b))`` bool: box ``a[i]`` would suppress ``b[j]``."""
    # torchvision compares the float IoU with the threshold as a C double; a tensor-scalar
    # comparison would round the threshold to the tensor's dtype instead.
    over = box_iou(a, b).double() > iou_threshold
    if cat_a is not None and cat_b is not None:
        over &= cat_a[:, None] == cat_b[None, :]
    return over


def _greedy_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float,
    categories: torch.Tensor | None,
) -> torch.Tensor:
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise InvalidArgument(f"boxes must be (N, 4), got shape {tuple(boxes.shape)}")
    if scores.shape != boxes.shape[:1]:
        raise InvalidArgument(f"scores must be ({boxes.shape[0]},), got {tuple(scores.shape)}")
    n = boxes.shape[0]
    if n == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    sorted_boxes = boxes[order]
    sorted_cats = categories[order] if categories is not None else None

    # Blocks of the score-sorted list: a box is kept iff no earlier kept box suppresses it.
    # Earlier blocks are final, so each block is first filtered against every box kept so
    # far (vectorised, in chunks), then resolved greedily within itself from its IoU matrix.
    kept = torch.empty((0,), dtype=torch.int64, device=boxes.device)  # sorted positions
    for start in range(0, n, _NMS_BLOCK):
        stop = min(start + _NMS_BLOCK, n)
        block = sorted_boxes[start:stop]
        block_cats = sorted_cats[start:stop] if sorted_cats is not None else None
        alive = torch.ones(stop - start, dtype=torch.bool, device=boxes.device)
        for chunk in kept.split(_NMS_BLOCK):
            chunk_cats = sorted_cats[chunk] if sorted_cats is not None else None
            hit = _suppresses(sorted_boxes[chunk], block, iou_threshold, chunk_cats, block_cats)
            alive &= ~hit.any(dim=0)
        within = _suppresses(block, block, iou_threshold, block_cats, block_cats).cpu().numpy()
        alive_np = alive.cpu().numpy().copy()
        for i in range(stop - start):
            if alive_np[i]:
                alive_np[i + 1 :] &= ~within[i, i + 1 :]
        new = torch.from_numpy(np.flatnonzero(alive_np) + start).to(boxes.device)
        kept = torch.cat([kept, new])
    return order[kept]


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression (torchvision ``nms`` semantics).

    Args:
        boxes: ``(N, 4)`` ``XYXY`` boxes (any frame, all the same).
        scores: ``(N,)`` scores.
        iou_threshold: a box is dropped when its IoU with an already kept, higher-scored
            box is strictly greater than this.

    Returns:
        ``(K,)`` int64 indices of the kept boxes in decreasing score order. Equal scores
        keep their input order (stable sort). Empty input gives an empty tensor.
    """
    return _greedy_nms(boxes, scores, iou_threshold, None)


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """:func:`nms` run independently per category: boxes only suppress boxes with the same
    ``idxs`` value. ``idxs`` is ``(N,)`` (int or float). Returns ``(K,)`` int64 indices in
    decreasing score order over all categories.

    torchvision offsets the boxes of each category instead of masking; that gives the same
    result except for float rounding of the offset coordinates. With a single category
    (how AMG calls it) the two are identical.
    """
    if idxs.shape != boxes.shape[:1]:
        raise InvalidArgument(f"idxs must be ({boxes.shape[0]},), got {tuple(idxs.shape)}")
    return _greedy_nms(boxes, scores, iou_threshold, idxs)
