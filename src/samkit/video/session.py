"""SAM 2 video sessions: prompt objects on frames, propagate them through a video.

:class:`VideoPredictor` wraps a :class:`~samkit.modeling.sam2.Sam2` model;
:meth:`VideoPredictor.start` opens a :class:`VideoSession` on a video::

    predictor = VideoPredictor(model)
    with predictor.start("frames/") as session:       # a folder of 00000.jpg, ...
        session.add_prompt(0, obj_id=1, points=[[210, 350]], labels=[1])
        session.add_prompt(0, obj_id=2, box=[300, 0, 500, 400])
        for result in session.propagate():            # FrameResult per frame
            result.masks[1]                            # (H, W) bool, video pixels

Coordinates are video pixels: points ``(x, y)``, boxes ``(x0, y0, x1, y1)``, masks
``(H, W)`` at the video's resolution; results are at the video's resolution too.

Semantics follow the official ``SAM2VideoPredictor`` (``sam2`` 1.1, as built by
``build_sam2_video_predictor``): every object is tracked alone with its own memory
bank; a prompt on a frame the object was never tracked on makes it a conditioning
frame (segmented from its prompts alone); a prompt on an already tracked frame is a
correction (the frame's earlier logits go with the clicks into the decoder, and the
result stays a non-conditioning memory); prompted frames are encoded into memory
(from their hole-filled low-res prediction) when the next propagation starts. One
Deliberate differences, all where the official silently drops a user's prompt: frames
holding a prompt for an object (conditioning frames and corrections) are never
re-tracked for that object, so a correction is not overwritten when a later
propagation passes over it (the official re-tracks corrected frames without their
clicks); a new prompt on one of an object's conditioning frames re-segments it as a
conditioning frame (the official files it as a correction, then discards it because
the frame is a conditioning frame); and without ``start``,
:meth:`VideoSession.propagate` starts at the earliest frame prompted since the last
propagation (the official: the earliest conditioning frame).

Frames are decoded lazily and their backbone features kept in a bounded LRU cache;
no session ever holds all frames. A folder source can revisit any frame; an iterable
source (a live stream) keeps only its ``max_cached_frames`` latest frames, so older
frames can be prompted only while their features are still cached.

This module holds what changes a session (prompting, propagation, clearing, closing);
the session's state (constructor), its properties and read-outs (:meth:`~VideoSession.frame`,
:meth:`~VideoSession.logits`) and the checks its operations share are in its base class,
:class:`~samkit.video.session_base.VideoSessionBase` (:mod:`samkit.video.session_base`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Literal

import numpy as np
import torch

from samkit.errors import InvalidArgument, InvalidPrompt, NoPrompts
from samkit.types import is_int
from samkit.video.frames import fill_holes, upsample_to_input
from samkit.video.memory_bank import (
    BatchedMemories,
    group_by_memory_frames,
    own_rows,
    prune_streaming,
    relabelled,
    stored_memories,
)
from samkit.video.prompts import make_prompt
from samkit.video.results import FrameOutput, FrameResult, ObjectTrack

# The session's state, properties, read-outs and shared checks moved to
# samkit.video.session_base (VideoSessionBase); _UNBOUNDED stays importable from here.
from samkit.video.session_base import _UNBOUNDED as _UNBOUNDED
from samkit.video.session_base import VideoSessionBase
from samkit.video.state import FrameFeatures, Memory
from samkit.video.tracker import encode_memory, track_step

Direction = Literal["forward", "backward", "both"]


class VideoSession(VideoSessionBase):
    """The prompts, memories and results of objects tracked through one video.

    Created by :meth:`VideoPredictor.start`. Frame indices count from 0; coordinates
    are video pixels. Usable as a context manager (closes on exit). The constructor,
    properties (``video_size``, ``object_ids``, ...), :meth:`frame`, :meth:`logits` and
    the shared checks are inherited from
    :class:`~samkit.video.session_base.VideoSessionBase`.
    """

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Free frames, features and memories; any later use raises SessionClosed."""
        if self._closed:
            return
        self._frames.close()
        self._features.clear()
        self._objects.clear()
        self._pos_enc = None
        self._closed = True

    def __enter__(self) -> VideoSession:
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self) -> None:
        """Remove every object with its prompts, memories and results (cached frame
        features are kept)."""
        self._check_open()
        self._objects.clear()
        self._frames.floor = None  # nothing left to track: a stream may skip ahead

    def remove_object(self, obj_id: int) -> None:
        """Remove an object with its prompts, memories and results (the others are
        tracked alone, so they are unaffected)."""
        self._track(obj_id)
        del self._objects[obj_id]
        if not self._objects:
            self._frames.floor = None

    def clear_frame(self, frame: int, obj_id: int | None = None) -> FrameResult:
        """Remove the prompts of one object (all objects if None) on ``frame``.

        A conditioning frame left without prompts becomes a tracked frame (its output
        is kept as a non-conditioning memory, and the frame counts as never tracked, so
        a new prompt there makes it a conditioning frame again), as in the official
        ``clear_all_prompts_in_frame``. Returns the frame's masks afterwards."""
        self._check_open()
        frame = self._check_frame(frame)
        tracks = [self._track(obj_id)] if obj_id is not None else list(self._objects.values())
        for track in tracks:
            track.prompts.pop(frame, None)
            track.pending.pop(frame, None)
            out = track.cond.pop(frame, None)
            if out is not None:
                if out.memory is not None:
                    out.memory = relabelled(out.memory, is_conditioning=False)
                track.non_cond[frame] = out
                track.tracked.pop(frame, None)
        is_cond = any(t.pending.get(frame, (None, False))[1] for t in self._objects.values())
        return self._result(frame, is_cond)

    # ------------------------------------------------------------------ prompting
    def add_prompt(
        self,
        frame: int,
        obj_id: int,
        points: Sequence[Sequence[float]] | np.ndarray | torch.Tensor | None = None,
        labels: Sequence[int] | np.ndarray | torch.Tensor | None = None,
        box: Sequence[float] | np.ndarray | torch.Tensor | None = None,
        mask: np.ndarray | torch.Tensor | None = None,
    ) -> FrameResult:
        """Prompt object ``obj_id`` on ``frame`` (a new id adds an object, at any time)
        and return the frame's masks for all objects.

        Args:
            frame: frame index.
            obj_id: the object's id (any int).
            points: ``(P, 2)`` clicks ``(x, y)`` in video pixels, with ``labels``
                ``(P,)`` (1 positive, 0 negative).
            box: ``(x0, y0, x1, y1)`` in video pixels (with or without points).
            mask: ``(H, W)`` binary mask at the video's resolution (instead of points
                and box).

        The prompt replaces the object's earlier prompt on this frame. On a frame the
        object was never tracked on (or one of its conditioning frames) it makes a
        conditioning frame, segmented from the prompt alone; on a tracked frame it
        corrects the tracked mask using the object's memory. With clicks, the object's
        earlier logits on the frame (if any) go with them into the decoder, as in the
        official predictor. Prompts take effect on other frames at the next
        :meth:`propagate`.
        """
        self._check_open()
        frame = self._check_frame(frame)
        if not is_int(obj_id):
            raise InvalidPrompt(f"object ids are ints, got {obj_id!r}")
        obj_id = int(obj_id)
        prompt = make_prompt(
            points, labels, box, mask, video_size=self.video_size, model_size=self.model_size
        )

        track = self._objects.get(obj_id) or ObjectTrack(obj_id)
        # a frame the object was never tracked on, or one of its conditioning frames
        # (re-prompted: it stays a conditioning frame), is segmented from its prompts
        is_init = frame not in track.tracked or frame in track.cond
        reverse = False if is_init else track.tracked[frame]
        is_cond = is_init
        prev = None
        if prompt.points is not None:
            earlier = track.output(frame, is_cond)
            # streaming mode keeps the logits of the latest frame only: without them the
            # clicks go in alone
            if earlier is not None and earlier.low_res_logits.numel() > 0:
                prev = earlier.low_res_logits.clamp(-32.0, 32.0)
        feats = self._frame_features(frame)
        out = track_step(
            self._model,
            frame,
            feats,
            is_init_cond_frame=is_init,
            point_inputs=prompt.points,
            mask_inputs=prompt.mask,
            cond_memories=stored_memories(track.cond),
            non_cond_memories=stored_memories(track.non_cond),
            num_frames=self._model_num_frames,
            track_in_reverse=reverse,
            run_mem_encoder=False,
            prev_sam_mask_logits=prev,
            options=self._options,
        )
        low = fill_holes(out.low_res_masks, self._fill)
        result = FrameOutput(low, out.object_score_logits, obj_ptr=out.obj_ptr)
        self._objects.setdefault(obj_id, track)
        track.prompts[frame] = prompt
        track.pending[frame] = (result, is_cond)
        track.last = (frame, result)
        self._advance_floor(frame)
        return self._result(frame, is_cond)

    def _advance_floor(self, frame: int) -> None:
        """A stream may read ahead only ``max_cached_frames`` past the frames still to
        track (the first frame after the latest one prompted or tracked)."""
        floor = self._frames.floor
        self._frames.floor = frame + 1 if floor is None else max(floor, frame + 1)

    # ------------------------------------------------------------------ propagation
    def propagate(
        self,
        direction: Direction = "forward",
        start: int | None = None,
        max_frames: int | None = None,
    ) -> Iterator[FrameResult]:
        """Track every object through the video, yielding one :class:`FrameResult` per
        frame as it is computed.

        Args:
            direction: "forward" (increasing frame index), "backward", or "both"
                (forward from ``start``, then backward from ``start - 1``).
            start: first frame; default: the earliest frame prompted since the last
                propagation, else the earliest conditioning frame.
            max_frames: track at most this many frames after ``start`` in each
                direction (``max_frames + 1`` frames with ``start``); default: to the
                video's end.

        Frames where an object has a prompt are not re-tracked for it (its prompted
        output is returned). Raises :class:`~samkit.errors.NoPrompts` if an object has
        no conditioning frame (or there are no objects).
        """
        self._check_open()
        if direction not in ("forward", "backward", "both"):
            raise InvalidArgument(f"direction must be forward, backward or both, not {direction!r}")
        if start is not None:
            start = self._check_frame(start)
        if max_frames is not None and (not is_int(max_frames) or max_frames < 0):
            raise InvalidArgument(f"max_frames must be an int >= 0, got {max_frames!r}")
        if not self._objects:
            raise NoPrompts("no objects: add a prompt before propagating")
        for track in self._objects.values():
            if not track.cond and not any(c for _, c in track.pending.values()):
                raise NoPrompts(
                    f"object {track.obj_id} has no conditioning frame "
                    "(a prompt on a frame it was not tracked on)"
                )
        return self._propagate(direction, start, max_frames)

    def _propagate(
        self, direction: Direction, start: int | None, max_frames: int | None
    ) -> Iterator[FrameResult]:
        pending_frames = [f for t in self._objects.values() for f in t.pending]
        self._preflight()
        if start is None:
            if pending_frames:
                start = min(pending_frames)
            else:
                start = min(f for t in self._objects.values() for f in t.cond)
        if direction == "backward":
            yield from self._run(start, True, max_frames)
            return
        yield from self._run(start, False, max_frames)
        if direction == "both" and start > 0 and max_frames != 0:
            limit = None if max_frames is None else max_frames - 1
            yield from self._run(start - 1, True, limit)

    def _preflight(self) -> None:
        """Encode the memory of prompted frames (from their hole-filled low-res
        prediction, as the official) and file them as conditioning or tracked."""
        for track in self._objects.values():
            # the official files non-conditioning outputs first, then conditioning ones
            items = sorted(track.pending.items(), key=lambda kv: kv[1][1])
            for frame, (out, is_cond) in items:
                feats = self._frame_features(frame)
                maskmem, pos = encode_memory(
                    self._model,
                    feats,
                    upsample_to_input(self._model, out.low_res_logits),
                    out.score,
                    is_mask_from_pts=True,
                    options=self._options,
                )
                assert out.obj_ptr is not None
                out.memory = Memory(
                    frame,
                    is_cond,
                    maskmem.to(torch.bfloat16),
                    self._shared_pos(pos),
                    out.obj_ptr,
                    out.score,
                )
                (track.cond if is_cond else track.non_cond)[frame] = out
            track.pending.clear()
            for frame in track.cond:
                track.non_cond.pop(frame, None)

    def _run(self, start: int, reverse: bool, max_frames: int | None) -> Iterator[FrameResult]:
        step = -1 if reverse else 1
        stride = self._options.memory_temporal_stride
        frame = start
        count = 0
        while True:
            self._check_open()  # closed while the caller held this generator
            if frame < 0 or not self._frames.has(frame):
                break
            if max_frames is not None and count > max_frames:
                break
            todo: list[ObjectTrack] = []
            for track in list(self._objects.values()):
                if not track.cond:  # added while this propagation runs: next time
                    continue
                if frame in track.cond or frame in track.prompts:
                    out = track.cond.get(frame) or track.non_cond.get(frame)
                else:
                    out = None
                if out is None:
                    todo.append(track)
                    continue
                track.tracked[frame] = reverse
                track.last = (frame, out)
            if todo:
                feats = self._frame_features(frame)
                for group in group_by_memory_frames(todo):
                    outs = self._track_frame(group, frame, feats, reverse)
                    for track, out in zip(group, outs, strict=True):
                        track.non_cond[frame] = out
                        track.tracked[frame] = reverse
                        track.last = (frame, out)
            if not self._keep_results:
                prune_streaming(
                    self._objects.values(),
                    frame,
                    reverse,
                    spatial_back=(self._model.num_maskmem + 1) * stride,
                    ptr_back=self._model.config.max_obj_ptrs_in_encoder,
                )
            self._advance_floor(frame)
            yield self._result(frame, None)
            frame += step
            count += 1

    def _track_frame(
        self, group: list[ObjectTrack], frame: int, feats: FrameFeatures, reverse: bool
    ) -> list[FrameOutput]:
        """Track the objects of ``group`` (same memory frames, see :func:`_batches`) on
        ``frame`` in one batched step; one output per object."""
        if len(group) == 1:
            cond: Mapping[int, Memory] = stored_memories(group[0].cond)
            non_cond: Mapping[int, Memory] = stored_memories(group[0].non_cond)
        else:
            cond = BatchedMemories([t.cond for t in group])
            non_cond = BatchedMemories([t.non_cond for t in group])
        out = track_step(
            self._model,
            frame,
            feats,
            is_init_cond_frame=False,
            cond_memories=cond,
            non_cond_memories=non_cond,
            num_frames=self._model_num_frames,
            track_in_reverse=reverse,
            run_mem_encoder=True,
            options=self._options,
            num_objects=len(group),
        )
        memory = out.to_memory(frame, False)
        memory.maskmem_pos_enc = self._shared_pos(memory.maskmem_pos_enc)
        low = fill_holes(out.low_res_masks, self._fill)
        assert out.obj_ptr is not None
        if len(group) == 1:
            return [FrameOutput(low, out.object_score_logits, memory, out.obj_ptr)]
        return [
            FrameOutput(
                low[i : i + 1].clone(),
                out.object_score_logits[i : i + 1].clone(),
                own_rows(memory.select(slice(i, i + 1))),
                out.obj_ptr[i : i + 1].clone(),
            )
            for i in range(len(group))
        ]


__all__ = ["Direction", "VideoSession"]
