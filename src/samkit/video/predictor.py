"""The entry point of SAM 2 video tracking: :class:`VideoPredictor` holds a model and its
tracking options and opens :class:`~samkit.video.session.VideoSession` objects on videos
(see :mod:`samkit.video.session` for the semantics)."""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from samkit.errors import InvalidArgument, InvalidArgumentType
from samkit.modeling.sam2 import Sam2
from samkit.types import is_int
from samkit.video.io import VideoFileReader
from samkit.video.session import VideoSession
from samkit.video.state import TrackerOptions, options_for

#: What ``build_sam2_video_predictor`` sets: holes up to 8 low-res pixels are filled.
DEFAULT_FILL_HOLE_AREA = 8
#: Default size of the frame-feature LRU cache (frames).
DEFAULT_MAX_CACHED_FRAMES = 16


class VideoPredictor:
    """Video object tracking with a SAM 2 / 2.1 model (usage and semantics: :mod:`samkit.video.session`).

    Args:
        model: the :class:`~samkit.modeling.sam2.Sam2` model (put in eval mode).
        options: tracking flags (default: those of the official video predictor for
            this model, :func:`~samkit.video.state.options_for`).
        fill_hole_area: fill background holes of at most this many low-res pixels in
            every prediction (8, as ``build_sam2_video_predictor``; 0 disables).
    """

    def __init__(
        self,
        model: Sam2,
        *,
        options: TrackerOptions | None = None,
        fill_hole_area: int = DEFAULT_FILL_HOLE_AREA,
    ) -> None:
        if not isinstance(model, Sam2):
            raise InvalidArgumentType(
                f"VideoPredictor needs a SAM 2 model, got {type(model).__name__}"
            )
        self.model = model.eval()
        self.options = options or options_for(model)
        self.fill_hole_area = fill_hole_area

    def start(
        self,
        source: str | os.PathLike | VideoFileReader | Iterable[np.ndarray],
        *,
        keep_results: bool = True,
        max_cached_frames: int = DEFAULT_MAX_CACHED_FRAMES,
        num_frames: int | None = None,
    ) -> VideoSession:
        """Open a session on a video.

        Args:
            source: a folder of JPEG (else PNG) frames, sorted by their integer names;
                a video file (``.mp4``, ``.mov``, ``.avi``, ``.mkv``, ``.webm``,
                ``.m4v``; needs PyAV, ``samkit[video]``), decoded lazily with random
                access; an open :class:`~samkit.video.io.VideoFileReader` (used as is and
                left open: the caller closes it); a ``(T, H, W, 3)`` uint8 array or a list
                / tuple of frames (already in memory: random access); or any other
                iterable of ``(H, W, 3)`` uint8 RGB frames (a stream, pulled lazily).
            keep_results: keep every frame's output and memory (needed to correct or
                re-propagate old frames). False (streaming): keep only the conditioning
                memories, the memories of the last ``num_maskmem`` frames (times the
                memory stride) and the object pointers the tracker can still use.
            max_cached_frames: size of the frame-feature LRU cache (and of the frames
                kept from an iterable source).
            num_frames: length of an iterable source of unknown length (it bounds the
                object-pointer window as in the official predictor); without it a
                stream is taken as long (at least ``max_obj_ptrs_in_encoder`` frames).
        """
        if max_cached_frames < 1:
            raise InvalidArgument("max_cached_frames must be >= 1")
        if num_frames is not None and (not is_int(num_frames) or num_frames < 1):
            raise InvalidArgument(f"num_frames must be an int >= 1, got {num_frames!r}")
        return VideoSession(self, source, keep_results, max_cached_frames, num_frames)


__all__ = ["DEFAULT_FILL_HOLE_AREA", "DEFAULT_MAX_CACHED_FRAMES", "VideoPredictor"]
