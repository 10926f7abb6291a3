"""Writers of ``samkit track``: per-frame PNG masks or RLE JSON, the overlay MP4, and the
move of the finished outputs into ``--out``."""

from __future__ import annotations

import enum
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from samkit.cli.output import mask_png
from samkit.errors import OutputError
from samkit.fileio import atomic_write_bytes
from samkit.masks import masks_to_coco_rle
from samkit.viz import MaskOverlay, mask_colour

__all__ = ["OVERLAY_FILE", "OVERLAY_FPS", "TrackFormat"]

#: Name of the video written by ``--format overlay-mp4``, in ``--out``.
OVERLAY_FILE = "overlay.mp4"
#: Frames per second of the overlay video.
OVERLAY_FPS = 10.0


class TrackFormat(str, enum.Enum):
    """What ``samkit track`` writes."""

    png = "png"
    rle_json = "rle-json"
    overlay_mp4 = "overlay-mp4"


# ----------------------------------------------------------------------------- outputs
class _Overlay:
    """Frames with their masks tinted, written to an MP4 with PyAV (frames in index
    order, buffered on disk until the run ends since ``both`` yields them out of order)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.frames: dict[int, Path] = {}
        self.folder = Path(tempfile.mkdtemp(prefix=".overlay.", dir=path.parent))

    def add(self, index: int, rgb: np.ndarray, masks: dict[int, np.ndarray]) -> None:
        canvas = MaskOverlay(rgb)
        for obj_id, mask in masks.items():
            canvas.add(mask, mask_colour(obj_id))
        frame = canvas.render_array()
        path = self.folder / f"{index:05d}.npy"
        np.save(path, frame)
        self.frames[index] = path

    def close(self, fps: float) -> None:
        from samkit.video.io import VideoFileWriter

        try:
            if self.frames:
                with VideoFileWriter(self.path, fps=fps) as writer:
                    for index in sorted(self.frames):
                        writer.write(np.load(self.frames[index]))
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def _writer(
    fmt: TrackFormat, folder: Path, size: tuple[int, int], frame_name: Callable[[int], str | None]
) -> Callable[[Any], None]:
    """A function writing one :class:`~samkit.video.FrameResult` into ``folder``."""
    if fmt is TrackFormat.png:

        def write_png(result: Any) -> None:
            for obj_id, mask in result.masks.items():
                sub = folder / str(obj_id)
                sub.mkdir(exist_ok=True)
                atomic_write_bytes(sub / f"{result.frame_index:05d}.png", mask_png(mask))

        return write_png

    def write_json(result: Any) -> None:
        ids = list(result.masks)
        rles = masks_to_coco_rle(np.stack([result.masks[i] for i in ids])) if ids else []
        record = {
            "frame_index": result.frame_index,
            "frame": frame_name(result.frame_index),
            "size": list(size),
            "objects": [
                {
                    "id": obj_id,
                    "score": float(result.scores[obj_id]),
                    "visible": bool(result.visible[obj_id]),
                    "segmentation": rle,
                }
                for obj_id, rle in zip(ids, rles, strict=True)
            ],
        }
        data = (json.dumps(record, indent=2) + "\n").encode("utf-8")
        atomic_write_bytes(folder / f"{result.frame_index:05d}.json", data)

    return write_json


def _move_into(tmp: Path, out: Path) -> None:
    """Move the finished outputs of ``tmp`` into ``out`` (a rename when ``out`` is new)."""
    try:
        if not out.exists():
            os.replace(tmp, out)
            return
        for src in sorted(tmp.rglob("*")):
            dst = out / src.relative_to(tmp)
            if src.is_dir():
                if dst.exists() and not dst.is_dir():
                    raise OutputError(f"cannot write {dst}: a file is in the way of a folder")
                dst.mkdir(exist_ok=True)
            else:
                if dst.is_dir():
                    raise OutputError(f"cannot write {dst}: it is a folder")
                os.replace(src, dst)
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(f"cannot write into --out {out}: {exc.strerror or exc}") from None
