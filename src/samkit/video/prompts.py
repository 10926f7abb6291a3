"""User prompts of a video session (video pixels, numpy / torch / lists) checked and
mapped into the model's input frame as a :class:`~samkit.video.results.Prompt`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from samkit.errors import InvalidPrompt
from samkit.video.frames import mask_to_model, points_to_model
from samkit.video.results import Prompt
from samkit.video.state import Points

PointsLike = Sequence[Sequence[float]] | np.ndarray | torch.Tensor
LabelsLike = Sequence[int] | np.ndarray | torch.Tensor
BoxLike = Sequence[float] | np.ndarray | torch.Tensor


def make_prompt(
    points: PointsLike | None,
    labels: LabelsLike | None,
    box: BoxLike | None,
    mask: np.ndarray | torch.Tensor | None,
    *,
    video_size: tuple[int, int],
    model_size: int,
) -> Prompt:
    """Check one object's prompt on one frame and map it into the model's frame.

    Args:
        points: ``(P, 2)`` clicks ``(x, y)`` in video pixels, with ``labels`` ``(P,)``
            (1 positive, 0 negative).
        box: ``(x0, y0, x1, y1)`` in video pixels (with or without points).
        mask: ``(H, W)`` binary mask at the video's resolution (instead of points and
            box).
        video_size: ``(H, W)`` of the video.
        model_size: side ``S`` of the model's square input.

    Returns a :class:`Prompt` with clicks (a box as two corner points) in the ``S x S``
    input frame, or a ``(1, 1, S, S)`` mask. Raises
    :class:`~samkit.errors.InvalidPrompt` for anything malformed.
    """
    if mask is not None:
        if points is not None or labels is not None or box is not None:
            raise InvalidPrompt("give a mask, or points and/or a box, not both")
        m = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask)
        if m.ndim != 2 or m.shape != video_size:
            raise InvalidPrompt(f"mask must be (H, W) = {video_size}, got {tuple(m.shape)}")
        if m.dtype != np.bool_ and not np.issubdtype(m.dtype, np.number):
            raise InvalidPrompt(f"mask must be a bool or numeric array, got {m.dtype}")
        if m.dtype != np.bool_ and not np.isfinite(m).all():
            raise InvalidPrompt("mask contains NaN or infinite values")
        return Prompt(mask=mask_to_model(torch.from_numpy(m.astype(bool)), model_size))
    return Prompt(points=_points(points, labels, box, video_size, model_size))


def _points(
    points: PointsLike | None,
    labels: LabelsLike | None,
    box: BoxLike | None,
    video_size: tuple[int, int],
    model_size: int,
) -> Points:
    if points is None and box is None:
        raise InvalidPrompt("give points (with labels), a box, or a mask")
    try:
        pts = None if points is None else _float_array(points).reshape(-1, 2)
        labs = None if labels is None else _float_array(labels).reshape(-1)
        bx = None if box is None else _float_array(box).reshape(4)
    except (TypeError, ValueError) as exc:
        raise InvalidPrompt(f"malformed prompt: {exc}") from exc
    if (pts is None) != (labs is None):
        raise InvalidPrompt("points and labels must be given together")
    if pts is not None and labs is not None:
        if len(pts) != len(labs):
            raise InvalidPrompt(f"{len(pts)} points but {len(labs)} labels")
        if not np.isin(labs, (0, 1)).all():
            raise InvalidPrompt("point labels must be 0 (negative) or 1 (positive)")
        labs = labs.astype(np.int64)
    if (pts is None or len(pts) == 0) and bx is None:
        raise InvalidPrompt("give at least one point (with its label), a box, or a mask")
    for arr in (pts, bx):
        if arr is not None and not np.isfinite(arr).all():
            raise InvalidPrompt("prompt coordinates must be finite")
    if bx is not None and (bx[2] < bx[0] or bx[3] < bx[1]):
        raise InvalidPrompt("box must be (x0, y0, x1, y1) with x0 <= x1, y0 <= y1")
    return points_to_model(
        None if pts is None else torch.from_numpy(pts),
        None if labs is None else torch.from_numpy(labs),
        video_size,
        model_size,
        box=None if bx is None else torch.from_numpy(bx),
    )


def _float_array(x: object) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


__all__ = ["make_prompt"]
