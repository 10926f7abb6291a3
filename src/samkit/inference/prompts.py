"""Validation and conversion of user prompts (original-image pixels) to model tensors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from samkit.errors import InvalidPrompt
from samkit.inference.transforms import coords_to_input

ArrayLike = np.ndarray | Sequence | torch.Tensor


def _as_array(value: ArrayLike, name: str, dtype=np.float64) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise InvalidPrompt(f"{name} must be numeric") from None
    if not np.isfinite(arr).all():
        raise InvalidPrompt(f"{name} contains NaN or infinite values")
    return arr


@dataclass(frozen=True)
class PromptTensors:
    """Prompts for N prompt sets, in the model's input frame, ready for the decoder.

    ``points``: ``(N, P, 2)`` float32 and ``labels``: ``(N, P)`` int; ``boxes``: ``(N, 4)``;
    ``mask_input``: ``(N, 1, 256, 256)`` logits. Any of them may be ``None``.
    """

    points: tuple[torch.Tensor, torch.Tensor] | None
    boxes: torch.Tensor | None
    mask_input: torch.Tensor | None
    n: int


def prepare_prompts(
    *,
    points: ArrayLike | None,
    labels: ArrayLike | None,
    boxes: ArrayLike | None,
    mask_input: ArrayLike | None,
    original_size: tuple[int, int],
    input_size: tuple[int, int],
    mask_size: tuple[int, int],
    device: torch.device,
    batched: bool,
    check_bounds: bool = True,
) -> PromptTensors:
    """Validate prompts and map them to the input frame.

    Single (``batched=False``): points ``(P, 2)``, labels ``(P,)``, box ``(4,)`` or
    ``(1, 4)``, mask ``(1, h, w)`` or ``(h, w)``. Batched: points ``(N, P, 2)``, labels
    ``(N, P)``, boxes ``(N, 4)``, masks ``(N, 1, h, w)``. Labels: 1 foreground,
    0 background, -1 padding (ignored). Coordinates outside the image raise
    :class:`InvalidPrompt` when ``check_bounds``.
    """
    h, w = original_size
    n_sets: set[int] = set()
    pts_t = None
    if points is not None or labels is not None:
        if points is None or labels is None:
            raise InvalidPrompt("points and labels must be given together")
        pts = _as_array(points, "points")
        lab = _as_array(labels, "labels")
        want = 3 if batched else 2
        if pts.ndim == want - 1 and pts.shape[-1] == 2 and not batched:
            pts = pts[None]
        if pts.ndim != want or pts.shape[-1] != 2:
            shape = "(N, P, 2)" if batched else "(P, 2)"
            raise InvalidPrompt(f"points must have shape {shape}, got {pts.shape}")
        if lab.shape != pts.shape[:-1]:
            raise InvalidPrompt(f"labels shape {lab.shape} does not match points {pts.shape}")
        if not np.isin(lab, (-1, 0, 1)).all():
            raise InvalidPrompt("labels must be 1 (foreground), 0 (background) or -1 (padding)")
        if check_bounds:
            real = lab != -1
            xs, ys = pts[..., 0][real], pts[..., 1][real]
            outside = (xs < 0) | (xs > w) | (ys < 0) | (ys > h)
            if outside.any():
                i = int(np.argmax(outside))
                raise InvalidPrompt(f"point ({xs[i]:g}, {ys[i]:g}) lies outside the {w}x{h} image")
        if not batched:
            pts, lab = pts[None], lab[None]
        pts = coords_to_input(pts, original_size, input_size)
        pts_t = (
            torch.as_tensor(pts, dtype=torch.float32, device=device),
            torch.as_tensor(lab, dtype=torch.int64, device=device),
        )
        n_sets.add(pts.shape[0])
    boxes_t = None
    if boxes is not None:
        b = _as_array(boxes, "box")
        if not batched and b.shape == (4,):
            b = b[None]
        if b.ndim != 2 or b.shape[1] != 4 or (not batched and b.shape[0] != 1):
            shape = "(N, 4)" if batched else "(4,)"
            raise InvalidPrompt(f"box must have shape {shape} as x0, y0, x1, y1; got {b.shape}")
        if (b[:, 2] < b[:, 0]).any() or (b[:, 3] < b[:, 1]).any():
            raise InvalidPrompt("box corners must satisfy x0 <= x1 and y0 <= y1")
        if check_bounds and (
            (b[:, [0, 2]] < 0).any()
            or (b[:, [0, 2]] > w).any()
            or (b[:, [1, 3]] < 0).any()
            or (b[:, [1, 3]] > h).any()
        ):
            raise InvalidPrompt(f"box {b.tolist()} lies outside the {w}x{h} image")
        b = coords_to_input(b.reshape(-1, 2, 2), original_size, input_size).reshape(-1, 4)
        boxes_t = torch.as_tensor(b, dtype=torch.float32, device=device)
        n_sets.add(b.shape[0])
    mask_t = None
    if mask_input is not None:
        m = _as_array(mask_input, "mask_input", dtype=np.float32)
        given = m.shape
        if not batched:
            if m.ndim == 2:
                m = m[None]
            m = m[None]
        if m.ndim != 4 or m.shape[1] != 1 or tuple(m.shape[2:]) != tuple(mask_size):
            mh, mw = mask_size
            shape = f"(N, 1, {mh}, {mw})" if batched else f"(1, {mh}, {mw})"
            raise InvalidPrompt(f"mask_input must have shape {shape}, got {given}")
        mask_t = torch.as_tensor(m, dtype=torch.float32, device=device)
        n_sets.add(m.shape[0])
    if len(n_sets) > 1:
        raise InvalidPrompt(f"points, boxes and masks disagree on the batch size: {n_sets}")
    n = n_sets.pop() if n_sets else 1
    if n == 0:
        raise InvalidPrompt("empty prompt batch")
    return PromptTensors(pts_t, boxes_t, mask_t, n)


def input_frame_prompts(
    point_coords: torch.Tensor | None,
    point_labels: torch.Tensor | None,
    boxes: torch.Tensor | None,
    mask_input: torch.Tensor | None,
    *,
    mask_size: tuple[int, int],
    device: torch.device,
) -> PromptTensors:
    """Check prompt tensors already in the model's input frame (``predict_torch``).

    ``point_coords`` ``(N, P, 2)`` with ``point_labels`` ``(N, P)`` (labels are ignored
    without coordinates, as officially), ``boxes`` ``(N, 4)`` (any ``(..., 4)`` is read
    as a list of boxes, as the official prompt encoder does), ``mask_input``
    ``(N, 1, h, w)`` or ``(1, 1, h, w)`` for every set; the given ones must agree on N.
    Raises :class:`InvalidPrompt`.
    """
    n_sets: set[int] = set()
    points = None
    if point_coords is not None:
        if point_labels is None:
            raise InvalidPrompt("point_labels must be given with point_coords")
        coords = torch.as_tensor(point_coords)
        labels = torch.as_tensor(point_labels)
        if coords.dim() != 3 or coords.shape[-1] != 2:
            raise InvalidPrompt(f"point_coords must be (N, P, 2), got {tuple(coords.shape)}")
        if tuple(labels.shape) != tuple(coords.shape[:2]):
            raise InvalidPrompt(
                f"point_labels must be (N, P) = {tuple(coords.shape[:2])}, "
                f"got {tuple(labels.shape)}"
            )
        coords = coords.to(device).float()
        if not torch.isfinite(coords).all():
            raise InvalidPrompt("point_coords contains NaN or infinite values")
        points = (coords, labels.to(device))
        n_sets.add(coords.shape[0])
    boxes_t = None
    if boxes is not None:
        boxes_t = torch.as_tensor(boxes).to(device).float()
        if boxes_t.dim() < 1 or boxes_t.shape[-1] != 4:
            raise InvalidPrompt(f"boxes must be (N, 4), got {tuple(boxes_t.shape)}")
        if not torch.isfinite(boxes_t).all():
            raise InvalidPrompt("boxes contains NaN or infinite values")
        boxes_t = boxes_t.reshape(-1, 4)
        n_sets.add(boxes_t.shape[0])
    mask_t = None
    if mask_input is not None:
        mask_t = torch.as_tensor(mask_input).to(device).float()
        if mask_t.dim() != 4 or mask_t.shape[1] != 1 or tuple(mask_t.shape[2:]) != tuple(mask_size):
            mh, mw = mask_size
            raise InvalidPrompt(f"mask_input must be (N, 1, {mh}, {mw}), got {tuple(mask_t.shape)}")
        if mask_t.shape[0] != 1:  # one mask goes with every prompt set
            n_sets.add(mask_t.shape[0])
    if len(n_sets) > 1:
        raise InvalidPrompt(f"points, boxes and masks disagree on the batch size: {n_sets}")
    return PromptTensors(points, boxes_t, mask_t, n_sets.pop() if n_sets else 1)
