"""Mask quality and clean-up: stability score, and the connected-component rules of SAM
(small holes and islands of a mask) and SAM 2 (small holes and sprinkles of logits)."""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from samkit.errors import InvalidArgument

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def component_sizes(region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 8-connected components of a ``(H, W)`` bool ``region`` (the one
    connected-components primitive of samkit's mask clean-ups).

    Returns ``(labels, sizes)``: ``labels`` ``(H, W)`` int, 0 outside the region and
    ``1..n`` for the components in raster order of their first pixel; ``sizes``
    ``(n + 1,)`` pixel counts, ``sizes[0]`` the pixels outside the region.
    """
    labels, n = ndimage.label(region, structure=_EIGHT_CONNECTED)
    return labels, np.bincount(labels.ravel(), minlength=n + 1)


def small_components(region: np.ndarray, max_area: float) -> np.ndarray:
    """``(H, W)`` bool: the pixels of ``region`` that lie in an 8-connected component of
    at most ``max_area`` pixels (SAM 2's hole and sprinkle rule)."""
    labels, sizes = component_sizes(region)
    small = sizes <= max_area
    small[0] = False  # outside the region
    return small[labels]


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
    ``area_thresh`` pixels are removed, but if every region is small the largest one is
    kept; on a tie, the one OpenCV (the official code's labelling) numbers first.

    Returns:
        ``(mask, changed)``: when nothing is small, the input ``mask`` object itself and
        ``False``; otherwise a new ``(H, W)`` bool array and ``True``. Same semantics as
        the official ``remove_small_regions``.
    """
    if mode not in ("holes", "islands"):
        raise InvalidArgument(f"mode must be 'holes' or 'islands', got {mode!r}")
    fill_holes = mode == "holes"
    binary = np.asarray(mask, dtype=bool)
    regions = ~binary if fill_holes else binary
    labels, counts = component_sizes(regions)
    n_regions, sizes = len(counts) - 1, counts[1:]
    small = sizes < area_thresh
    if not small.any():
        return mask, False
    # Lookup table from label (0 = the other class) to the output value.
    lut = np.zeros(n_regions + 1, dtype=bool)
    if fill_holes:
        lut[0] = True  # the mask itself
        lut[1:] = small
    elif small.all():
        lut[_largest_region(labels, counts)] = True
    else:
        lut[1:] = ~small
    return lut[labels], True


def _largest_region(labels: np.ndarray, sizes: np.ndarray) -> int:
    """The label of the largest region (``sizes[1:]``); on a tie the one OpenCV's
    8-connected labelling (``cv2.connectedComponentsWithStats``, whose choice the official
    ``remove_small_regions`` keeps) numbers first. OpenCV 4.x/5.x labels 2x2 blocks in
    raster order (the Spaghetti algorithm), and a block's foreground pixels are always
    8-connected, so that region is the one whose first pixel in the order
    ``(row // 2, col // 2)`` comes first. scipy numbers by first pixel in plain raster
    order, which differs when two tied regions start in the same pair of rows."""
    tied = np.flatnonzero(sizes[1:] == sizes[1:].max()) + 1
    if len(tied) == 1:
        return int(tied[0])
    ys, xs = np.nonzero(np.isin(labels, tied))
    block = (ys // 2) * ((labels.shape[1] + 1) // 2) + xs // 2
    first = {int(label): int(block[labels[ys, xs] == label].min()) for label in tied}
    return min(first, key=first.__getitem__)


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
    pixels to ``threshold - 10``; both are found on the input: holes among ``logits <=
    threshold``, sprinkles among ``logits > threshold`` (a NaN logit is in neither, and
    stays NaN). Same rule as the official SAM 2 predictor's ``max_hole_area`` /
    ``max_sprinkle_area`` post-processing (which needs its CUDA extension; this is a
    CPU implementation with scipy). Returns a new tensor.

    ``max_sprinkle_area``: a separate bound for sprinkles (``max_area`` then bounds the
    holes only). A bound ``<= 0`` turns its step off.
    """
    sprinkle_area = max_area if max_sprinkle_area is None else max_sprinkle_area
    if max_area <= 0 and sprinkle_area <= 0:
        return logits
    flat = logits.reshape(-1, *logits.shape[-2:])
    holes = (flat <= threshold).cpu().numpy()  # not ~(flat > threshold): NaN is neither
    sprinkles = (flat > threshold).cpu().numpy()
    out = flat.clone()
    change = np.zeros(holes.shape, dtype=np.int8)  # +1 fill, -1 remove
    steps = [(1, holes, max_area), (-1, sprinkles, sprinkle_area)]
    steps = [(value, regions, area) for value, regions, area in steps if area > 0]
    for i in range(change.shape[0]):
        for value, regions, area in steps:
            change[i][small_components(regions[i], area)] = value
    delta = torch.from_numpy(change).to(out.device)
    out = torch.where(delta > 0, torch.full_like(out, threshold + 10.0), out)
    out = torch.where(delta < 0, torch.full_like(out, threshold - 10.0), out)
    return out.reshape(logits.shape)
