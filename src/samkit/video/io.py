"""Video files: random-access frame reading and MP4 writing with PyAV (``samkit[video]``).

PyAV (FFmpeg bindings) is used rather than a hand-written decoder or OpenCV: it decodes
every container and codec FFmpeg knows, exposes presentation timestamps (so frames can be
found exactly, also in variable-frame-rate files), seeks to keyframes, and its wheels
bundle FFmpeg with H.264 and MPEG-4 encoders.

:class:`VideoFileReader` gives frame ``i`` of a file as an ``(H, W, 3)`` uint8 RGB
array without decoding the whole video into memory: opening the file demuxes its packets
once (no decoding) to list the frames' timestamps; reading the next frame continues the
current decoder, reading any other frame seeks to the keyframe before it and decodes
forward. Memory is one decoder plus one frame, however long the video.

:class:`VideoFileWriter` encodes RGB frames into an MP4 (H.264 when FFmpeg has it, else
MPEG-4 part 2) in a temporary file next to the target, moved into place by
:meth:`~VideoFileWriter.close`, so an interrupted write never leaves a partial file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from samkit.errors import FrameOutOfRange, InvalidImage, InvalidVideo, OutputError
from samkit.fileio import chmod_as_created

__all__ = ["VIDEO_SUFFIXES", "VideoFileReader", "VideoFileWriter", "require_av"]

#: File suffixes treated as video files (anything else must be a folder of frames).
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


def require_av() -> Any:
    """Import PyAV, or raise :class:`InvalidVideo` saying how to install it."""
    try:
        import av
    except ImportError:
        raise InvalidVideo(
            "reading or writing video files needs PyAV: pip install 'samkit[video]' "
            "(or extract the frames to a folder of JPEG files)"
        ) from None
    return av


class VideoFileReader:
    """Random-access RGB frames of a video file (first video stream), decoded lazily.

    Args:
        path: the video file.

    Frames are numbered ``0 .. len(reader) - 1`` in presentation order. Raises
    :class:`InvalidVideo` when the file cannot be opened, has no video stream or no
    frames.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._av = require_av()
        self._container: Any = None
        self._decoder: Iterator[Any] | None = None
        self._next: int | None = None  # index of the frame the decoder yields next
        self._last: tuple[int, np.ndarray] | None = None
        self._pts: list[int] = []
        self._index_of: dict[int, int] = {}
        self._sequential_only = False
        self._open()
        try:
            self._index_frames()
        except BaseException:
            self.close()  # nothing left open when the file turns out unreadable
            raise

    def _index_frames(self) -> None:
        """Timestamps, rate and size of the opened file's video stream; decoding then
        starts from the first frame."""
        stream = self._stream
        try:
            pts = [p.pts for p in self._container.demux(stream) if p.size > 0]
        except self._av.error.FFmpegError as exc:
            raise InvalidVideo(f"cannot read {self.path}: {exc}") from None
        if any(p is None for p in pts):
            # no timestamps (raw streams): count frames by decoding once; random access
            # then re-decodes from the start, which is slow but correct
            self._sequential_only = True
            self._pts = list(range(self._count_by_decoding()))
        else:
            self._pts = sorted(pts)
        self._index_of = {p: i for i, p in enumerate(self._pts)}
        if not self._pts:
            raise InvalidVideo(f"{self.path}: the video has no frames")
        stream = self._stream  # the counting fallback reopened the file
        rate = stream.average_rate or stream.guessed_rate
        #: frames per second (``None`` when the file does not say)
        self.fps: float | None = float(rate) if rate else None
        #: ``(H, W)`` of the frames
        self.size = (int(stream.codec_context.height), int(stream.codec_context.width))
        self._restart()

    # -------------------------------------------------------------- container
    def _open(self) -> None:
        if self._container is not None:
            self._container.close()
        try:
            self._container = self._av.open(str(self.path))
        except (self._av.error.FFmpegError, OSError) as exc:
            raise InvalidVideo(f"cannot read {self.path}: {exc}") from None
        if not self._container.streams.video:
            self._container.close()
            self._container = None
            raise InvalidVideo(f"{self.path} has no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"

    def _restart(self) -> None:
        """Reopen the file and decode from its first frame."""
        self._open()
        self._decoder = self._container.decode(self._stream)
        self._next = 0

    def _count_by_decoding(self) -> int:
        self._open()
        return sum(1 for _ in self._container.decode(self._stream))

    def __len__(self) -> int:
        return len(self._pts)

    # ------------------------------------------------------------------ reads
    def _decode_next(self) -> tuple[int, np.ndarray] | None:
        """The next decoded frame with its index, or ``None`` at the end."""
        assert self._decoder is not None
        try:
            frame = next(self._decoder)
        except StopIteration:
            return None
        except self._av.error.FFmpegError as exc:
            raise InvalidVideo(f"cannot decode {self.path}: {exc}") from None
        if self._sequential_only or frame.pts is None:
            index = self._next if self._next is not None else 0
        else:
            index = self._index_of.get(frame.pts, -1)
        self._next = index + 1 if index >= 0 else None
        return index, frame.to_ndarray(format="rgb24")

    def _seek(self, index: int) -> None:
        if self._sequential_only or index == 0:
            self._restart()
            return
        self._container.seek(
            int(self._pts[index]), stream=self._stream, backward=True, any_frame=False
        )
        self._decoder = self._container.decode(self._stream)
        self._next = None

    def read(self, index: int) -> np.ndarray:
        """Frame ``index`` as an ``(H, W, 3)`` uint8 RGB array (a fresh array)."""
        if not 0 <= index < len(self._pts):
            raise FrameOutOfRange(f"frame {index} is outside the video ({len(self._pts)} frames)")
        if self._last is not None and self._last[0] == index:
            return self._last[1].copy()
        if self._container is None:
            raise InvalidVideo(f"{self.path} is closed")
        if self._next != index:
            self._seek(index)
        for attempt in range(2):
            while True:
                got = self._decode_next()
                if got is None:
                    break
                found, rgb = got
                if found == index:
                    self._last = (index, rgb)
                    return rgb.copy()
                if found > index:  # the seek landed after the frame: decode from the start
                    break
            if attempt == 0:
                self._restart()
        raise InvalidVideo(f"cannot decode frame {index} of {self.path}")

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self.read(i)

    def close(self) -> None:
        """Release the decoder and file."""
        if self._container is not None:
            self._container.close()
        self._container = None
        self._decoder = None
        self._last = None

    def __enter__(self) -> VideoFileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VideoFileWriter:
    """Encode ``(H, W, 3)`` uint8 RGB frames into a video file, atomically.

    Args:
        path: the target file (its suffix picks the container, e.g. ``.mp4``).
        fps: frames per second.
        codec: FFmpeg encoder; ``None`` picks ``libx264`` when available, else ``mpeg4``.

    Frames are written to a temporary file in the target's folder; :meth:`close` moves it
    onto ``path`` (so readers never see a partial video) and :meth:`abort` deletes it.
    Odd frame sizes are padded by one edge row/column (YUV 4:2:0 needs even sizes).
    """

    def __init__(self, path: str | os.PathLike, fps: float = 10.0, codec: str | None = None):
        self.path = Path(path)
        self._av = require_av()
        if codec is None:
            codec = "libx264" if "libx264" in self._av.codecs_available else "mpeg4"
        self.codec = codec
        self.fps = fps
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.path.stem}.", suffix=self.path.suffix, dir=self.path.parent
        )
        os.close(fd)
        self._tmp = Path(tmp)
        self._container: Any = None
        self._stream: Any = None
        self._size: tuple[int, int] | None = None
        self._rate = Fraction(1)
        self._count = 0
        try:
            self._container = self._av.open(str(self._tmp), mode="w")
        except (self._av.error.FFmpegError, OSError) as exc:
            self._tmp.unlink(missing_ok=True)
            raise OutputError(f"cannot write {self.path}: {exc}") from None

    def write(self, rgb: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame (all frames must have one size)."""
        arr = np.asarray(rgb)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise InvalidImage(f"expected an (H, W, 3) uint8 frame, got {arr.dtype} {arr.shape}")
        if self._stream is None:
            h, w = arr.shape[:2]
            self._size = (h, w)
            rate = Fraction(self.fps).limit_denominator(1001)
            self._stream = self._container.add_stream(self.codec, rate=rate)
            self._stream.width = w + w % 2
            self._stream.height = h + h % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.codec_context.time_base = 1 / rate
            self._rate = rate
        elif arr.shape[:2] != self._size:
            raise InvalidImage(f"frame size {arr.shape[:2]} differs from {self._size}")
        h, w = arr.shape[:2]
        if h % 2 or w % 2:
            arr = np.pad(arr, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
        frame.pts = self._count
        frame.time_base = 1 / self._rate
        self._count += 1
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> Path:
        """Flush the encoder and move the file onto ``path``; returns ``path``."""
        if self._container is None:
            return self.path
        try:
            if self._stream is None:
                raise OutputError(f"cannot write {self.path}: no frames")
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
            chmod_as_created(self._tmp)
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Discard what was written (the target is left untouched)."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - already failing; the file is deleted anyway
                pass
            self._container = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoFileWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
