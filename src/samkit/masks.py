"""Pure mask and box utilities for automatic mask generation (AMG).

Everything here is model-free: run-length encoding, mask -> box, stability score, box IoU
and greedy NMS, small-region cleanup, point grids and crop boxes for the multi-crop
generator, and the maps from crop coordinates back to image coordinates. The functions
that have a counterpart in the official ``segment_anything/utils/amg.py`` produce the same
values (same order, same rounding), because samkit's mask generator must reproduce the
official generator's output; the tests compare against the official code directly.

Frames and conventions
----------------------
* Masks are ``(..., H, W)`` bool, row ``y`` then column ``x``, in the frame named by the
  caller (a crop or the whole image).
* **Mask boxes** (:func:`masks_to_boxes`) are int64 ``XYXY`` *pixel indices*, inclusive on
  both ends: a single pixel at ``(x, y)`` has the box ``[x, y, x, y]``. An empty mask has
  the box ``[0, 0, 0, 0]``.
* **Crop boxes** (:func:`generate_crop_boxes`) are ``[x0, y0, x1, y1]`` Python ints with an
  exclusive end, i.e. the crop is ``image[y0:y1, x0:x1]``.
* Boxes given to :func:`box_area`, :func:`box_iou`, :func:`nms` are continuous ``XYXY``;
  the area is ``(x1 - x0) * (y1 - y0)`` (no ``+1``), as in torchvision.
* Point grids (:func:`build_point_grid`) are ``(x, y)`` normalised to ``[0, 1]``; multiply
  by ``(W, H)`` of the crop to get pixels.
* ``uncrop_*`` add the crop's ``(x0, y0)`` offset to go from crop to image coordinates.

Run-length encoding
-------------------
Uncompressed RLE is ``{"size": [H, W], "counts": [int, ...]}``: the mask is read in
column-major (Fortran) order and ``counts`` alternates runs of 0 and 1, starting with the
number of leading zeros (``0`` when the first pixel is set). Compressed RLE is the COCO
string form ``{"size": [H, W], "counts": str}``. For compressed RLE we rely on
``pycocotools`` (the well-kept reference implementation of the COCO format, already a
samkit dependency) so that strings are byte-identical to what every COCO tool writes;
the uncompressed encoder is our own vectorised torch code.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from pycocotools import mask as _coco_mask
from scipy import ndimage

__all__ = [
    "batched_nms",
    "box_area",
    "box_iou",
    "box_xyxy_to_xywh",
    "build_all_layer_point_grids",
    "build_point_grid",
    "generate_crop_boxes",
    "is_box_near_crop_edge",
    "masks_to_boxes",
    "masks_to_coco_rle",
    "nms",
    "remove_small_regions",
    "rle_area",
    "rle_decode",
    "rle_encode",
    "rle_to_coco",
    "stability_score",
    "uncrop_boxes_xyxy",
    "uncrop_masks",
    "uncrop_points",
]

_NMS_BLOCK = 2048
"""Boxes per block in :func:`nms`: IoU matrices are at most ``_NMS_BLOCK**2`` entries."""

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


# ---------------------------------------------------------------------------------------
# Run-length encoding
# ---------------------------------------------------------------------------------------


def _is_compressed(counts: Any) -> bool:
    return isinstance(counts, str | bytes)


def _size(rle: Mapping[str, Any]) -> tuple[int, int]:
    h, w = rle["size"]
    return int(h), int(w)


def _pycocotools_decode(rles: Any) -> np.ndarray:
    """``pycocotools.mask.decode``: ``(H, W)`` or ``(H, W, N)`` uint8 (Fortran order).

    Silences the NumPy 2 ``__array__`` copy-keyword DeprecationWarning that pycocotools
    raises internally (harmless).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"__array__ implementation", category=DeprecationWarning
        )
        return _coco_mask.decode(rles)


def rle_encode(masks: torch.Tensor) -> list[dict[str, Any]]:
    """Encode ``(N, H, W)`` bool masks as uncompressed RLE (column-major runs).

    Returns ``N`` dicts ``{"size": [H, W], "counts": list[int]}``; ``counts`` starts with
    the number of leading zeros (``0`` if the first pixel, ``(0, 0)``, is set) and sums to
    ``H * W``. Same output as the official ``mask_to_rle_pytorch``.

    The whole batch is handled with one transpose, one comparison of neighbouring pixels
    and one ``nonzero``; only the final split into per-mask lists loops (over masks, not
    pixels). Works on any device; non-bool input is treated as ``!= 0``.
    """
    if masks.dim() != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {tuple(masks.shape)}")
    n, h, w = (int(s) for s in masks.shape)
    if n == 0:
        return []
    num_pixels = h * w
    if num_pixels == 0:
        return [{"size": [h, w], "counts": [0]} for _ in range(n)]
    if masks.dtype != torch.bool:
        masks = masks != 0

    # Row i of `flat` is mask i in Fortran order (x outer, y inner).
    flat = masks.transpose(1, 2).reshape(n, num_pixels)
    mask_idx, pos = (flat[:, 1:] != flat[:, :-1]).nonzero(as_tuple=True)
    # Lay the masks end to end: mask i covers [i * HW, (i + 1) * HW). A run starts at
    # every change (pos + 1) and at every mask boundary; consecutive starts give lengths.
    # `nonzero` lists changes sorted by mask, so the merged start list is built by
    # scattering: boundary k is preceded by the changes of masks < k, and a change of
    # mask i by the boundaries 0..i.
    device = flat.device
    changes_per_mask = torch.bincount(mask_idx, minlength=n)
    changes_before = torch.zeros(n + 1, dtype=torch.int64, device=device)
    changes_before[1:] = changes_per_mask.cumsum(0)
    n_changes = mask_idx.numel()
    bound_idx = torch.arange(n + 1, device=device)
    starts = torch.empty(n_changes + n + 1, dtype=torch.int64, device=device)
    starts[bound_idx + changes_before] = bound_idx * num_pixels
    starts[torch.arange(n_changes, device=device) + mask_idx + 1] = mask_idx * num_pixels + pos + 1
    lengths = starts.diff().tolist()
    runs_per_mask = (changes_per_mask + 1).tolist()
    first_set = flat[:, 0].tolist()

    out: list[dict[str, Any]] = []
    cursor = 0
    for n_runs, starts_with_one in zip(runs_per_mask, first_set, strict=True):
        counts = lengths[cursor : cursor + n_runs]
        cursor += n_runs
        if starts_with_one:
            counts = [0, *counts]
        out.append({"size": [h, w], "counts": counts})
    return out


def rle_decode(rle: Mapping[str, Any]) -> np.ndarray:
    """Decode one RLE to an ``(H, W)`` bool mask (C-contiguous).

    Accepts uncompressed RLE (``counts`` a sequence of ints, see :func:`rle_encode`) and
    COCO compressed RLE (``counts`` str or bytes, decoded with pycocotools).

    Raises:
        ValueError: uncompressed ``counts`` that are negative or do not sum to ``H * W``.
    """
    h, w = _size(rle)
    counts = rle["counts"]
    if _is_compressed(counts):
        decoded = _pycocotools_decode({"size": [h, w], "counts": counts})
        return np.ascontiguousarray(decoded, dtype=bool)
    runs = np.asarray(counts, dtype=np.int64).reshape(-1)
    if (runs < 0).any() or int(runs.sum()) != h * w:
        raise ValueError(f"RLE counts must be >= 0 and sum to H * W = {h * w}")
    values = np.arange(runs.size) % 2 == 1  # runs alternate 0, 1, 0, ...
    column_major = np.repeat(values, runs)
    return np.ascontiguousarray(column_major.reshape(w, h).T)


def rle_to_coco(rle: Mapping[str, Any]) -> dict[str, Any]:
    """Uncompressed RLE -> COCO compressed ``{"size": [H, W], "counts": str}``.

    Uses ``pycocotools.mask.frPyObjects`` so the string is byte-identical to pycocotools
    (the official ``coco_encode_rle``). A compressed input is returned normalised
    (``counts`` as str).
    """
    h, w = _size(rle)
    counts = rle["counts"]
    if _is_compressed(counts):
        text = counts.decode("ascii") if isinstance(counts, bytes) else counts
        return {"size": [h, w], "counts": text}
    runs = [int(c) for c in counts]
    if any(c < 0 for c in runs) or sum(runs) != h * w:
        raise ValueError(f"RLE counts must be >= 0 and sum to H * W = {h * w}")
    coco = _coco_mask.frPyObjects({"size": [h, w], "counts": runs}, h, w)
    return {"size": [h, w], "counts": coco["counts"].decode("ascii")}


def masks_to_coco_rle(masks: torch.Tensor | np.ndarray) -> list[dict[str, Any]]:
    """Encode ``(N, H, W)`` bool masks (tensor or array) as COCO compressed RLEs.

    Returns ``N`` dicts ``{"size": [H, W], "counts": str}``, from ``pycocotools.mask.encode``
    on an ``(H, W, N)`` Fortran-ordered uint8 array. Non-bool input is treated as ``!= 0``.
    """
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu()
        masks = (masks if masks.dtype == torch.bool else masks != 0).numpy()
    arr = np.asarray(masks)
    if arr.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {arr.shape}")
    if arr.dtype != np.bool_:
        arr = arr != 0
    if arr.shape[0] == 0:
        return []
    # C-contiguous (N, W, H) is the same memory as Fortran-contiguous (H, W, N).
    fortran = np.ascontiguousarray(arr.transpose(0, 2, 1)).view(np.uint8).transpose(2, 1, 0)
    return [
        {"size": [int(s) for s in r["size"]], "counts": r["counts"].decode("ascii")}
        for r in _coco_mask.encode(fortran)
    ]


def rle_area(rle: Mapping[str, Any]) -> int:
    """Number of set pixels of one RLE (uncompressed: sum of the odd-position counts;
    compressed: ``pycocotools.mask.area``)."""
    counts = rle["counts"]
    if _is_compressed(counts):
        h, w = _size(rle)
        return int(_coco_mask.area({"size": [h, w], "counts": counts}))
    return int(sum(int(c) for c in counts[1::2]))


# ---------------------------------------------------------------------------------------
# Boxes
# ---------------------------------------------------------------------------------------


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes around ``(..., H, W)`` bool masks -> ``(..., 4)`` int64 ``XYXY``.

    Coordinates are inclusive pixel indices (``x1``/``y1`` are the last set column/row),
    in the masks' frame. Empty masks (and any input with zero elements) give
    ``[0, 0, 0, 0]``. Same values as the official ``batched_mask_to_box``, except that the
    dtype is always int64 (the official returns float32 zeros for zero-element input).
    """
    if masks.dim() < 2:
        raise ValueError(f"masks must be (..., H, W), got shape {tuple(masks.shape)}")
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
        raise ValueError(f"a box has 4 numbers, got {len(items)}")
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
        raise ValueError(f"boxes must be (N, 4), got shape {tuple(boxes.shape)}")
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f"scores must be ({boxes.shape[0]},), got {tuple(scores.shape)}")
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
        raise ValueError(f"idxs must be ({boxes.shape[0]},), got {tuple(idxs.shape)}")
    return _greedy_nms(boxes, scores, iou_threshold, idxs)


# ---------------------------------------------------------------------------------------
# Mask quality and cleanup
# ---------------------------------------------------------------------------------------


def _count_set(binary: torch.Tensor) -> torch.Tensor:
    """Set pixels of ``(..., H, W)`` bool -> ``(...)`` int32, counted like the official
    code: per row in int16 (wraps when W > 32767), then over rows in int32."""
    return binary.sum(dim=-1, dtype=torch.int16).sum(dim=-1, dtype=torch.int32)


def stability_score(logits: torch.Tensor, mask_threshold: float, offset: float) -> torch.Tensor:
    """Stability score of ``(N, H, W)`` mask logits -> ``(N,)`` float32.

    The IoU of the masks thresholded at ``mask_threshold + offset`` and at
    ``mask_threshold - offset``; the first is inside the second, so it is
    ``count(logits > thr + offset) / count(logits > thr - offset)``. The thresholds are
    formed in Python (double) and compared in the logits' dtype, and counts are summed as
    in the official ``calculate_stability_score``, so results are bit-identical to it
    (``0 / 0`` gives nan). Works for any leading shape ``(..., H, W) -> (...)``.
    """
    high = _count_set(logits > (mask_threshold + offset))
    low = _count_set(logits > (mask_threshold - offset))
    return high / low


def remove_small_regions(
    mask: np.ndarray, area_thresh: float, mode: str
) -> tuple[np.ndarray, bool]:
    """Fill small holes or drop small islands of one ``(H, W)`` bool mask.

    Regions are 8-connected. ``mode="holes"``: connected regions of the *background* with
    fewer than ``area_thresh`` pixels are filled (a small outer background counts as a
    hole too). ``mode="islands"``: connected regions of the mask with fewer than
    ``area_thresh`` pixels are removed, but if every region is small the largest one (the
    first in raster order on a tie) is kept.

    Returns:
        ``(mask, changed)``: when nothing is small, the input ``mask`` object itself and
        ``False``; otherwise a new ``(H, W)`` bool array and ``True``. Same semantics as
        the official ``remove_small_regions``.
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    fill_holes = mode == "holes"
    binary = np.asarray(mask, dtype=bool)
    regions = ~binary if fill_holes else binary
    labels, n_regions = ndimage.label(regions, structure=_EIGHT_CONNECTED)
    sizes = np.bincount(labels.ravel(), minlength=n_regions + 1)[1:]
    small = sizes < area_thresh
    if not small.any():
        return mask, False
    # Lookup table from label (0 = the other class) to the output value.
    lut = np.zeros(n_regions + 1, dtype=bool)
    if fill_holes:
        lut[0] = True  # the mask itself
        lut[1:] = small
    elif small.all():
        lut[1 + int(np.argmax(sizes))] = True
    else:
        lut[1:] = ~small
    return lut[labels], True


def fill_small_regions_logits(
    logits: torch.Tensor,
    max_area: float,
    threshold: float = 0.0,
    *,
    max_sprinkle_area: float | None = None,
) -> torch.Tensor:
    """SAM 2's mask clean-up on ``(..., H, W)`` logits (usually the 256x256 low-res ones).

    8-connected background regions ("holes") of at most ``max_area`` pixels are set to
    ``threshold + 10`` and foreground regions ("sprinkles") of at most ``max_area``
    pixels to ``threshold - 10``; both are found on the input mask ``logits >
    threshold``. Same rule as the official SAM 2 predictor's ``max_hole_area`` /
    ``max_sprinkle_area`` post-processing (which needs its CUDA extension; this is a
    CPU implementation with scipy). Returns a new tensor.

    ``max_sprinkle_area``: a separate bound for sprinkles (``max_area`` then bounds the
    holes only). A bound ``<= 0`` turns its step off.
    """
    sprinkle_area = max_area if max_sprinkle_area is None else max_sprinkle_area
    if max_area <= 0 and sprinkle_area <= 0:
        return logits
    flat = logits.reshape(-1, *logits.shape[-2:])
    fg = (flat > threshold).cpu().numpy()
    out = flat.clone()
    change = np.zeros(fg.shape, dtype=np.int8)  # +1 fill, -1 remove
    steps = [(1, False, max_area), (-1, True, sprinkle_area)]
    steps = [(value, is_fg, area) for value, is_fg, area in steps if area > 0]
    for i in range(fg.shape[0]):
        for value, is_fg, area in steps:
            region = fg[i] if is_fg else ~fg[i]
            labels, n = ndimage.label(region, structure=_EIGHT_CONNECTED)
            if n == 0:
                continue
            sizes = np.bincount(labels.ravel(), minlength=n + 1)
            small = sizes <= area
            small[0] = False
            hit = small[labels]
            change[i][hit] = value
    delta = torch.from_numpy(change).to(out.device)
    out = torch.where(delta > 0, torch.full_like(out, threshold + 10.0), out)
    out = torch.where(delta < 0, torch.full_like(out, threshold - 10.0), out)
    return out.reshape(logits.shape)


# ---------------------------------------------------------------------------------------
# Point grids and crops
# ---------------------------------------------------------------------------------------


def build_point_grid(n_per_side: int) -> np.ndarray:
    """``(n*n, 2)`` float64 ``(x, y)`` points, normalised to ``[0, 1]``: cell centres of an
    ``n x n`` grid, ``x`` varying fastest (row by row from the top)."""
    if n_per_side < 1:
        raise ValueError(f"n_per_side must be >= 1, got {n_per_side}")
    half_cell = 1 / (2 * n_per_side)
    centres = np.linspace(half_cell, 1 - half_cell, n_per_side)
    xs, ys = np.meshgrid(centres, centres)  # xs[r, c] = centres[c], ys[r, c] = centres[r]
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(
    n_per_side: int, n_layers: int, scale_per_layer: int
) -> list[np.ndarray]:
    """Point grids for crop layers ``0..n_layers``: layer ``i`` has
    ``int(n_per_side / scale_per_layer**i)`` points per side (see :func:`build_point_grid`).
    """
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


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
        raise ValueError(
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
