"""SAM 2 video sessions: the state a video session holds, and the ways to read it.

:class:`VideoSessionBase` is the base class of
:class:`~samkit.video.session.VideoSession`, moved out of :mod:`samkit.video.session`
(which keeps what changes the state: prompting, propagation, clearing, closing). Its
constructor sets up the session's state (the frame source, the bounded LRU cache of
backbone features, the per-object tracks, the one shared memory position encoding);
it holds the read-only properties, the frame and logit read-outs, and the checks and
look-ups the session's operations share (open / frame / object checks, cached frame
features, frame results). Usage and semantics: :mod:`samkit.video.session`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np
import torch

from samkit.errors import FrameOutOfRange, SessionClosed, UnknownObject
from samkit.types import is_int
from samkit.video.frames import prepare_frame, to_video_resolution
from samkit.video.results import FrameResult, ObjectTrack, frame_result
from samkit.video.sources import FrameSource
from samkit.video.state import FrameFeatures
from samkit.video.tracker import encode_frame

if TYPE_CHECKING:
    from samkit.video.predictor import VideoPredictor

#: The number of frames assumed for a source of unknown length (a stream): long enough
#: for every pointer window, i.e. what a video of at least ``max_obj_ptrs_in_encoder``
#: frames gives.
_UNBOUNDED = 2**31 - 1


class VideoSessionBase:
    """The state of a :class:`~samkit.video.session.VideoSession` and its read-outs
    (the base class of ``VideoSession``; made through :meth:`VideoPredictor.start`)."""

    def __init__(
        self,
        predictor: VideoPredictor,
        source: object,
        keep_results: bool,
        max_cached_frames: int,
        num_frames: int | None,
    ) -> None:
        self._predictor = predictor
        self._model = predictor.model
        self._options = predictor.options
        self._fill = predictor.fill_hole_area
        self._frames = FrameSource(source, max_cached_frames, num_frames)
        self._features: OrderedDict[int, FrameFeatures] = OrderedDict()
        self._max_cached = max_cached_frames
        self._keep_results = keep_results
        self._objects: dict[int, ObjectTrack] = {}
        self._pos_enc: torch.Tensor | None = None
        self._closed = False

    # ------------------------------------------------------------------ properties
    @property
    def video_size(self) -> tuple[int, int]:
        """``(H, W)`` of the video's frames."""
        self._check_open()
        assert self._frames.video_size is not None
        return self._frames.video_size

    @property
    def num_frames(self) -> int | None:
        """The number of frames, when known (None for a stream not yet read to its end)."""
        self._check_open()
        return self._frames.num_frames

    @property
    def object_ids(self) -> list[int]:
        """Ids of the session's objects, in the order they were added."""
        self._check_open()
        return list(self._objects)

    @property
    def objects(self) -> dict[int, ObjectTrack]:
        """The per-object state (read-only use)."""
        self._check_open()
        return dict(self._objects)

    @property
    def stored_memory_frames(self) -> int:
        """Number of ``(object, frame)`` memories stored (conditioning and tracked,
        pointer-only ones included)."""
        self._check_open()
        return sum(
            sum(o.memory is not None for o in (*t.cond.values(), *t.non_cond.values()))
            for t in self._objects.values()
        )

    @property
    def stored_spatial_memory_frames(self) -> int:
        """Number of stored memories that still hold spatial features."""
        self._check_open()
        return sum(
            sum(
                o.memory is not None and o.memory.has_spatial
                for o in (*t.cond.values(), *t.non_cond.values())
            )
            for t in self._objects.values()
        )

    @property
    def cached_feature_frames(self) -> int:
        """Number of frames whose backbone features are cached."""
        self._check_open()
        return len(self._features)

    @property
    def buffered_frames(self) -> int:
        """Number of decoded frames kept from an iterable source."""
        self._check_open()
        return len(self._frames.recent)

    # ------------------------------------------------------------------ helpers
    @property
    def model_size(self) -> int:
        """Side ``S`` of the model's square input."""
        return self._model.image_size

    @property
    def _model_num_frames(self) -> int:
        n = self._frames.num_frames
        return _UNBOUNDED if n is None else n

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosed("this video session is closed")

    def _check_frame(self, frame: int, read: bool = True) -> int:
        """``frame`` as a Python int (numpy integers are accepted), checked to be in the
        video; raises :class:`~samkit.errors.FrameOutOfRange`. ``read=False``: a stream
        of unknown length is not read up to ``frame`` (only negative indices fail)."""
        if not is_int(frame):
            raise FrameOutOfRange(f"frame index must be an int, got {frame!r}")
        frame = int(frame)
        if read:
            inside = self._frames.has(frame)
        else:
            n = self._frames.num_frames
            inside = frame >= 0 and (n is None or frame < n)
        if not inside:
            n = self._frames.num_frames
            raise FrameOutOfRange(
                f"frame {frame} is outside the video" + (f" ({n} frames)" if n is not None else "")
            )
        return frame

    def _track(self, obj_id: int) -> ObjectTrack:
        self._check_open()
        track = self._objects.get(obj_id)
        if track is None:
            raise UnknownObject(f"no object {obj_id!r} (objects: {list(self._objects)})")
        return track

    def _frame_features(self, frame: int) -> FrameFeatures:
        feats = self._features.get(frame)
        if feats is not None:
            self._features.move_to_end(frame)
            return feats
        rgb = self._frames.rgb(frame)
        cfg = self._model.config
        image = prepare_frame(rgb, self._model.image_size, cfg.pixel_mean, cfg.pixel_std)
        feats = encode_frame(self._model, image)
        self._features[frame] = feats
        while len(self._features) > self._max_cached:
            self._features.popitem(last=False)
        return feats

    def _shared_pos(self, pos: torch.Tensor) -> torch.Tensor:
        """The memory position encoding is the same for every frame: keep one copy."""
        if self._pos_enc is None:
            self._pos_enc = pos[:1].clone()
        return self._pos_enc.expand(pos.shape[0], -1, -1, -1)

    def _result(self, frame: int, is_cond: bool | None) -> FrameResult:
        return frame_result(self._objects, frame, is_cond, self.video_size)

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as an ``(H, W, 3)`` uint8 RGB array at the video's resolution
        (re-read from disk for folders; a live stream keeps only its recent frames and
        raises :class:`~samkit.errors.FrameOutOfRange` for older ones)."""
        self._check_open()
        return self._frames.rgb(self._check_frame(index))

    def logits(self, frame: int, obj_id: int) -> torch.Tensor | None:
        """The latest ``(1, 1, H, W)`` mask logits of an object on ``frame`` at the
        video's resolution (hole-filled low-res logits upsampled), or None when the
        object has no output there. Raises :class:`~samkit.errors.FrameOutOfRange` for a
        frame outside the video (a stream is not read further to tell)."""
        track = self._track(obj_id)
        frame = self._check_frame(frame, read=False)
        out = track.output(frame)
        if out is None or out.low_res_logits.numel() == 0:
            return None
        return to_video_resolution(out.low_res_logits.float(), self.video_size)


__all__ = ["VideoSessionBase"]
