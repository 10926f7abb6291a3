"""Frame sources of a video session: a folder of frames, a video file or a live iterable,
decoded lazily with a bounded buffer."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from samkit.errors import FrameOutOfRange, InvalidVideo
from samkit.video.frames import list_video_frames
from samkit.video.io import VIDEO_SUFFIXES, VideoFileReader


def _check_rgb(frame: object, index: int) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise InvalidVideo(
            f"frame {index}: expected an (H, W, 3) uint8 RGB array, "
            f"got {arr.dtype} {tuple(arr.shape)}"
        )
    return arr


class FrameSource:
    """Lazy frames of a video: a folder of images or a video file (random access), or
    an iterator (sequential; only the latest ``keep`` frames are retained)."""

    def __init__(self, source: object, keep: int, num_frames: int | None) -> None:
        self.paths: list[Path] | None = None
        self.reader: VideoFileReader | None = None
        self.iterator: Iterator[object] | None = None
        self.recent: OrderedDict[int, np.ndarray] = OrderedDict()
        self.keep = keep
        self.pulled = 0
        self.exhausted = False
        self.video_size: tuple[int, int] | None = None
        self.length: int | None = num_frames
        self.owns_reader = True
        #: the first frame a stream's session has not tracked yet (``None``: no object
        #: to track): reading ``keep`` or more frames past it would drop frames that
        #: still have to be tracked, so it is refused (see :meth:`_pull_until`)
        self.floor: int | None = None
        self.in_memory: np.ndarray | list[object] | tuple[object, ...] | None = None
        if isinstance(source, VideoFileReader):
            # an open reader (e.g. the CLI's, which already demuxed the file to check it)
            self.reader = source
            self.length = len(source)
            self.exhausted = True
            self.owns_reader = False
        elif isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if path.is_dir():
                self.paths = list_video_frames(path)
                self.length = len(self.paths)
                self.exhausted = True
            elif path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
                self.reader = VideoFileReader(path)
                self.length = len(self.reader)
                self.exhausted = True
            else:
                raise InvalidVideo(f"{source}: not a folder of frames or a video file")
        elif (isinstance(source, np.ndarray) and source.ndim == 4) or isinstance(
            source, list | tuple
        ):
            # already in memory: random access, like a folder (nothing to buffer)
            self.in_memory = source
            self.length = len(source)
            self.exhausted = True
        elif isinstance(source, Iterable):
            if self.length is None and hasattr(source, "__len__"):
                self.length = len(source)  # type: ignore[arg-type]
            self.iterator = iter(source)
        else:
            raise InvalidVideo(f"unsupported video source {type(source).__name__}")
        # the first frame gives the video's size
        try:
            if not self.has(0):
                raise InvalidVideo("the video has no frames")
            self.rgb(0)
        except BaseException:
            self.close()  # a reader opened here is not left open
            raise

    @property
    def num_frames(self) -> int | None:
        """The number of frames when known (a folder, a sized iterable, or a stream
        read to its end)."""
        return self.length

    def _pull_until(self, index: int) -> None:
        assert self.iterator is not None
        if index >= self.pulled and self.floor is not None and index - self.floor >= self.keep:
            lost = (
                f"{self.floor}"
                if index - self.keep == self.floor
                else (f"{self.floor}-{index - self.keep}")
            )
            raise FrameOutOfRange(
                f"frame {index} is too far ahead of the stream: frames from {self.floor} "
                f"on are not tracked yet and only the latest {self.keep} frames are kept, "
                f"so frame(s) {lost} would be lost; propagate first, or start the session "
                f"with max_cached_frames >= {index - self.floor + 1}"
            )
        while self.pulled <= index and not self.exhausted:
            if self.length is not None and self.pulled >= self.length:
                self.exhausted = True  # num_frames given: the stream ends there
                break
            try:
                frame = next(self.iterator)
            except StopIteration:
                self.exhausted = True
                self.length = self.pulled
                break
            arr = _check_rgb(frame, self.pulled)
            self._check_size(arr.shape[:2], self.pulled)
            self.recent[self.pulled] = arr
            self.pulled += 1
            while len(self.recent) > self.keep:
                self.recent.popitem(last=False)

    def _check_size(self, size: tuple[int, int], index: int) -> None:
        size = (int(size[0]), int(size[1]))
        if self.video_size is None:
            self.video_size = size
        elif size != self.video_size:
            raise InvalidVideo(f"frame {index} is {size}, the video is {self.video_size}")

    def has(self, index: int) -> bool:
        """Whether frame ``index`` exists (reads a stream up to it)."""
        if index < 0:
            return False
        if self.paths is not None:
            return index < len(self.paths)
        if self.reader is not None:
            return index < len(self.reader)
        if self.in_memory is not None:
            return index < len(self.in_memory)
        if self.iterator is None:  # closed
            return False
        self._pull_until(index)
        return index < self.pulled

    def rgb(self, index: int) -> np.ndarray:
        """Frame ``index`` as an ``(H, W, 3)`` uint8 array."""
        if not self.has(index):
            raise FrameOutOfRange(f"frame {index} is outside the video")
        if self.paths is not None:
            from PIL import Image

            from samkit.inference.transforms import DAMAGED_IMAGE_ERRORS, pil_to_rgb

            try:
                with Image.open(self.paths[index]) as img:
                    arr = pil_to_rgb(img)  # stored pixels, as the official loader
            except DAMAGED_IMAGE_ERRORS as exc:  # incl. a mode pil_to_rgb refuses
                reason = exc or type(exc).__name__
                raise InvalidVideo(f"cannot read {self.paths[index]}: {reason}") from exc
            self._check_size(arr.shape[:2], index)
            return arr
        if self.reader is not None:
            arr = self.reader.read(index)
            self._check_size(arr.shape[:2], index)
            return arr
        if self.in_memory is not None:
            arr = _check_rgb(self.in_memory[index], index)
            self._check_size(arr.shape[:2], index)
            return arr
        arr = self.recent.get(index)
        if arr is None:
            raise InvalidVideo(
                f"frame {index} of the stream is no longer available "
                f"(only the latest {self.keep} frames are kept)"
            )
        return arr

    def close(self) -> None:
        self.recent.clear()
        close = getattr(self.iterator, "close", None)
        if callable(close):
            close()
        self.iterator = None
        self.paths = None
        self.in_memory = None
        if self.reader is not None and self.owns_reader:
            self.reader.close()
        self.reader = None


__all__ = ["FrameSource"]
