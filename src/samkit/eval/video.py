"""Video object segmentation protocol: prompt every object on the first frame, track
forward, score DAVIS ``J``, ``F`` and ``J&F`` (:func:`~samkit.eval.metrics.j_and_f`).

``prompt="mask"`` is the semi-supervised DAVIS protocol (the first frame's ground-truth
mask is given); ``"box"`` gives the mask's tight box and ``"click"`` one click at the
point farthest from the mask's boundary
(:func:`~samkit.eval.metrics.click_point_farthest_from_boundary`, as the single-point
image protocol).
As in the DAVIS 2017 semi-supervised evaluation, the first and last frames are not
scored by default. Frames where an object is wholly hidden count as ``J = F = 1`` when
the prediction is empty too (the DAVIS convention), so the numbers reward reporting an
occluded object as absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from samkit.errors import InvalidArgument, InvalidDataset
from samkit.eval.metrics import JFResult, batch_iou, click_point_farthest_from_boundary, j_and_f

__all__ = ["VideoEvalResult", "clips_from", "evaluate_video"]

Prompt = Literal["mask", "box", "click"]


@dataclass(frozen=True)
class VideoEvalResult:
    """Scores of a set of clips; one entry per evaluated object.

    Attributes:
        per_object: ``J``/``F`` of each object.
        hidden_frame_accuracy: over the frames where an object is wholly hidden, the
            fraction on which the tracker reported it absent (``None`` if there were none).
        occluded_j: mean ``J`` over frames where an object is less than half visible
            (relative to its largest visible area in the clip) but not hidden.
    """

    per_object: tuple[JFResult, ...]
    hidden_frame_accuracy: float | None
    occluded_j: float | None

    @property
    def j(self) -> float:
        return float(np.mean([r.j_mean for r in self.per_object]))

    @property
    def f(self) -> float:
        return float(np.mean([r.f_mean for r in self.per_object]))

    @property
    def jf(self) -> float:
        return (self.j + self.f) / 2

    def summary(self) -> dict[str, Any]:
        return {
            "objects": len(self.per_object),
            "J": round(self.j, 4),
            "F": round(self.f, 4),
            "J&F": round(self.jf, 4),
            "hidden_frame_accuracy": None
            if self.hidden_frame_accuracy is None
            else round(self.hidden_frame_accuracy, 4),
            "occluded_J": None if self.occluded_j is None else round(self.occluded_j, 4),
        }


def _check_clip(k: int, frames: np.ndarray, masks: np.ndarray, exclude_first_last: bool) -> None:
    """Clip ``k`` can be tracked and scored: ``(T, H, W, 3)`` frames, ``(N, T, H, W)``
    masks, and at least 3 frames when the first and last are not scored."""
    f_shape, m_shape = np.shape(frames), np.shape(masks)
    if len(f_shape) != 4 or len(m_shape) != 4 or tuple(m_shape[1:]) != tuple(f_shape[:3]):
        raise InvalidArgument(
            f"clip {k}: frames {tuple(f_shape)} and masks {tuple(m_shape)} must be "
            "(T, H, W, 3) and (N, T, H, W)"
        )
    if exclude_first_last and f_shape[0] < 3:
        raise InvalidArgument(
            f"clip {k} has {f_shape[0]} frame(s): with exclude_first_last (the DAVIS "
            "protocol) a clip needs at least 3; pass exclude_first_last=False"
        )


def evaluate_video(
    predictor: Any,
    clips: Iterable[tuple[np.ndarray, np.ndarray]],
    prompt: Prompt = "mask",
    *,
    min_area: int = 30,
    exclude_first_last: bool = True,
) -> VideoEvalResult:
    """Track and score clips with a :class:`~samkit.video.VideoPredictor`.

    Args:
        predictor: the video predictor.
        clips: ``(frames (T, H, W, 3) uint8, masks (N, T, H, W) bool)`` pairs; objects
            with fewer than ``min_area`` pixels on frame 0 are not prompted or scored.
        prompt: how each object is prompted on frame 0 (see the module docstring).
        exclude_first_last: do not score the first and last frames.

    Returns:
        A :class:`VideoEvalResult`.

    Raises:
        InvalidArgument: (a ``ValueError``) an unknown ``prompt``, or a clip that cannot
            be scored (frames and masks of different lengths or sizes, fewer than 3
            frames with ``exclude_first_last``): checked before any tracking when
            ``clips`` is a sequence, else before the clip is tracked.
    """
    if prompt not in ("mask", "box", "click"):
        raise InvalidArgument(f"unknown prompt {prompt!r}: use 'mask', 'box' or 'click'")
    if isinstance(clips, Sequence):
        for k, (frames, masks) in enumerate(clips):
            _check_clip(k, frames, masks, exclude_first_last)
    results: list[JFResult] = []
    hidden_hits: list[bool] = []
    occluded: list[float] = []
    for k, (frames, masks) in enumerate(clips):
        _check_clip(k, frames, masks, exclude_first_last)
        objs = [i for i in range(masks.shape[0]) if masks[i, 0].sum() >= min_area]
        if not objs:
            continue
        session = predictor.start(np.asarray(frames))
        try:
            for i in objs:
                m = masks[i, 0]
                if prompt == "mask":
                    session.add_prompt(0, i + 1, mask=m)
                elif prompt == "box":
                    ys, xs = np.nonzero(m)
                    box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
                    session.add_prompt(0, i + 1, box=box)
                else:
                    x, y = click_point_farthest_from_boundary(m)
                    session.add_prompt(0, i + 1, points=[[x, y]], labels=[1])
            t_len = frames.shape[0]
            preds = {i: np.zeros(masks.shape[1:], dtype=bool) for i in objs}
            visible = {i: np.zeros(t_len, dtype=bool) for i in objs}
            for r in session.propagate():
                for i in objs:
                    preds[i][r.frame_index] = r.masks[i + 1]
                    visible[i][r.frame_index] = r.visible[i + 1]
        finally:
            session.close()
        for i in objs:
            results.append(j_and_f(preds[i], masks[i], exclude_first_last=exclude_first_last))
            area = masks[i].reshape(t_len, -1).sum(1)
            frames_scored = range(1, t_len - 1) if exclude_first_last else range(t_len)
            for t in frames_scored:
                if area[t] == 0:
                    hidden_hits.append(not visible[i][t])
                elif area[t] < 0.5 * area.max():
                    occluded.append(float(batch_iou(preds[i][t][None], masks[i][t][None])[0]))
    if not results:
        raise InvalidDataset("no object to evaluate")
    return VideoEvalResult(
        per_object=tuple(results),
        hidden_frame_accuracy=float(np.mean(hidden_hits)) if hidden_hits else None,
        occluded_j=float(np.mean(occluded)) if occluded else None,
    )


def clips_from(dataset: Sequence[Any]) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """``(frames, masks)`` pairs of a :class:`~samkit.data.synthetic_video.SyntheticVideoDataset`."""
    for clip in dataset:
        yield clip.frames, clip.masks
