"""Run-length encoding of masks: uncompressed (torch, vectorised) and COCO compressed
(pycocotools); the format is described in :mod:`samkit.masks`."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from pycocotools import mask as _coco_mask

from samkit.errors import InvalidMask


def _is_compressed(counts: Any) -> bool:
    return isinstance(counts, str | bytes)


def _size(rle: Mapping[str, Any]) -> tuple[int, int]:
    h, w = rle["size"]
    return int(h), int(w)


def coco_counts(counts: str | bytes) -> np.ndarray:
    """The run lengths of a COCO compressed RLE string, as ``int64``.

    The format (pycocotools' ``rleToString``): each count in 5-bit groups, low group
    first, each group a character ``48 + g`` with ``0x20`` set while more groups follow
    and ``0x10`` of the last group the sign; from the fourth count on, the value stored
    is the difference to the count two places before. pycocotools has no Python call
    for this, and its C decoder trusts the string (a truncated string reads past its
    end, counts that overrun ``H * W`` write past the mask), so samkit parses it itself,
    vectorised, to check a string before pycocotools decodes it.

    Raises:
        InvalidMask: (a ``ValueError``) characters outside the alphabet, a string that
            ends inside a count, a count over 60 bits, or a negative count.
    """
    data = counts.encode("ascii", errors="replace") if isinstance(counts, str) else counts
    v = np.frombuffer(bytes(data), dtype=np.uint8).astype(np.int64) - 48
    if v.size == 0:
        return np.zeros(0, dtype=np.int64)
    if ((v < 0) | (v > 63)).any():
        raise InvalidMask("not a COCO RLE string (characters outside '0'..'o')")
    more = (v & 0x20) != 0
    if more[-1]:
        raise InvalidMask("truncated COCO RLE string (it ends inside a count)")
    last = ~more
    starts = np.flatnonzero(np.concatenate(([True], last[:-1])))
    group = np.cumsum(np.concatenate(([0], last[:-1].astype(np.int64))))
    pos = np.arange(v.size) - starts[group]  # group index within its count
    if int(pos.max()) >= 12:
        raise InvalidMask("corrupt COCO RLE string (a count over 60 bits)")
    x = np.add.reduceat((v & 0x1F) << (5 * pos), starts)
    negative = (v[last] & 0x10) != 0
    x[negative] -= np.left_shift(1, 5 * (pos[last][negative] + 1))
    # counts[m] = x[m] + counts[m - 2] for m > 2: running sums over odd and even places
    x[1::2] = np.cumsum(x[1::2])
    x[2::2] = np.cumsum(x[2::2])
    if (x < 0).any():
        raise InvalidMask("corrupt COCO RLE string (a negative run length)")
    return x


def check_coco_rle(rle: Mapping[str, Any]) -> tuple[int, int]:
    """Check one RLE (compressed or not) before decoding it: ``size`` two non-negative
    ints, run lengths non-negative and summing to ``H * W``. Returns ``(H, W)``.

    Raises:
        InvalidMask: (a ``ValueError``) what is wrong, in words.
    """
    h, w, _ = _checked_runs(rle)
    return h, w


def _checked_runs(rle: Mapping[str, Any]) -> tuple[int, int, np.ndarray]:
    """:func:`check_coco_rle`, also returning the run lengths (``int64``)."""
    try:
        h, w = _size(rle)
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError):
        raise InvalidMask("an RLE needs 'size' [H, W] and 'counts'") from None
    if h < 0 or w < 0:
        raise InvalidMask(f"RLE size {[h, w]} is negative")
    if _is_compressed(counts):
        runs = coco_counts(counts)
    else:
        try:
            runs = np.asarray(counts, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError, OverflowError):  # 1e300: no int64
            raise InvalidMask("RLE counts must be integers or a COCO string") from None
    if (runs < 0).any() or int(runs.sum()) != h * w:
        raise InvalidMask(f"RLE counts must be >= 0 and sum to H * W = {h * w}")
    return h, w, runs


def decode_rle_objects(rles: Any) -> np.ndarray:
    """``pycocotools.mask.decode`` of one COCO RLE object or a list of them: ``(H, W)`` or
    ``(H, W, N)`` uint8 (Fortran order).

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
        raise InvalidMask(f"masks must be (N, H, W), got shape {tuple(masks.shape)}")
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
        InvalidMask: (a ``ValueError``) ``counts`` that are negative, do not sum to
            ``H * W`` or (compressed) are not a well-formed COCO string
            (:func:`check_coco_rle`).
    """
    h, w, runs = _checked_runs(rle)
    counts = rle["counts"]
    if _is_compressed(counts):
        decoded = decode_rle_objects({"size": [h, w], "counts": counts})
        return np.ascontiguousarray(decoded, dtype=bool)
    values = np.arange(runs.size) % 2 == 1  # runs alternate 0, 1, 0, ...
    column_major = np.repeat(values, runs)
    return np.ascontiguousarray(column_major.reshape(w, h).T)


def rle_to_coco(rle: Mapping[str, Any]) -> dict[str, Any]:
    """Uncompressed RLE -> COCO compressed ``{"size": [H, W], "counts": str}``.

    Uses ``pycocotools.mask.frPyObjects`` so the string is byte-identical to pycocotools
    (the official ``coco_encode_rle``). A compressed input is returned normalised
    (``counts`` as str).
    """
    h, w, runs = _checked_runs(rle)
    counts = rle["counts"]
    if _is_compressed(counts):
        text = counts.decode("ascii") if isinstance(counts, bytes) else counts
        return {"size": [h, w], "counts": text}
    coco = _coco_mask.frPyObjects({"size": [h, w], "counts": runs.tolist()}, h, w)
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
        raise InvalidMask(f"masks must be (N, H, W), got shape {arr.shape}")
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
