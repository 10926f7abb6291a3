"""What a video session gives back and keeps per object: frame results, object tracks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from samkit.video.frames import to_video_resolution
from samkit.video.state import NO_OBJ_SCORE, Memory, Points


@dataclass(frozen=True)
class FrameResult:
    """The masks of every object of a session on one frame.

    Attributes:
        frame_index: index of the frame in the video.
        masks: object id -> ``(H, W)`` bool mask at the video's resolution (all False
            for an object with no output on this frame).
        scores: object id -> object score logit (> 0: the object is present;
            ``NO_OBJ_SCORE`` for an object with no output on this frame).
        visible: object id -> whether the object is present (score > 0).
    """

    frame_index: int
    masks: dict[int, np.ndarray]
    scores: dict[int, float]
    visible: dict[int, bool]


@dataclass
class FrameOutput:
    """One object's stored prediction on one frame.

    Attributes:
        low_res_logits: ``(1, 1, S/4, S/4)`` hole-filled mask logits (model frame).
        score: ``(1, 1)`` object score logit.
        memory: the frame's memory (None until encoded, for a fresh prompt); may be
            pointer-only (no spatial features) in streaming mode.
        obj_ptr: ``(1, hidden_dim)`` object pointer.
    """

    low_res_logits: torch.Tensor
    score: torch.Tensor
    memory: Memory | None = None
    obj_ptr: torch.Tensor | None = None


@dataclass
class Prompt:
    """One object's prompt on one frame, in the model's input frame: clicks (and a box
    as two corner points) or a binary ``(1, 1, S, S)`` mask."""

    points: Points | None = None
    mask: torch.Tensor | None = None


@dataclass
class ObjectTrack:
    """Everything the session keeps for one object.

    Attributes:
        obj_id: the user's object id.
        prompts: frame -> the object's prompt on that frame.
        pending: frame -> (output, is_conditioning) of prompts added since the last
            propagation; their memory is encoded when the next propagation starts.
        cond: frame -> output of a conditioning frame (with memory).
        non_cond: frame -> output of a tracked (or corrected) frame (with memory).
        tracked: frame -> whether it was last tracked in reverse.
        last: the most recent output of the object (any frame).
    """

    obj_id: int
    prompts: dict[int, Prompt] = field(default_factory=dict)
    pending: dict[int, tuple[FrameOutput, bool]] = field(default_factory=dict)
    cond: dict[int, FrameOutput] = field(default_factory=dict)
    non_cond: dict[int, FrameOutput] = field(default_factory=dict)
    tracked: dict[int, bool] = field(default_factory=dict)
    last: tuple[int, FrameOutput] | None = None

    def output(self, frame: int, is_cond: bool | None = None) -> FrameOutput | None:
        """The latest output on ``frame``: a pending one (of the given kind, any kind
        if None), else the conditioning one, else the tracked one."""
        pend = self.pending.get(frame)
        if pend is not None and (is_cond is None or pend[1] == is_cond):
            return pend[0]
        return self.cond.get(frame) or self.non_cond.get(frame)


def frame_result(
    tracks: Mapping[int, ObjectTrack],
    frame: int,
    is_cond: bool | None,
    video_size: tuple[int, int],
) -> FrameResult:
    """The masks of every object of ``tracks`` on ``frame`` at the video's resolution
    ``(H, W)``, from each object's latest output (a pending output of the kind
    ``is_cond`` first, as the official consolidation); an object with no output there
    gets an empty mask and ``NO_OBJ_SCORE``."""
    ids: list[int] = []
    lows: list[torch.Tensor] = []
    scores: dict[int, float] = {}
    h, w = video_size
    for obj_id, track in tracks.items():
        out = track.output(frame, is_cond)
        if out is None or out.low_res_logits.numel() == 0:
            scores[obj_id] = NO_OBJ_SCORE
            continue
        ids.append(obj_id)
        lows.append(out.low_res_logits)
        scores[obj_id] = float(out.score.reshape(-1)[0])
    masks: dict[int, np.ndarray] = {}
    if lows:
        video = to_video_resolution(torch.cat(lows).float(), (h, w))
        found = dict(zip(ids, (video[:, 0] > 0).cpu().numpy(), strict=True))
    else:
        found = {}
    for obj_id in tracks:
        masks[obj_id] = found.get(obj_id, np.zeros((h, w), dtype=bool))
    visible = {i: s > 0 for i, s in scores.items()}
    return FrameResult(frame, masks, scores, visible)


__all__ = ["FrameOutput", "FrameResult", "ObjectTrack", "Prompt", "frame_result"]
