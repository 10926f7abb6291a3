"""``samkit track``: prompt objects on frames of a video, track them through it (SAM 2).

VIDEO is a folder of JPEG (else PNG) frames sorted by their integer names, or a video
file (needs PyAV: ``pip install 'samkit[video]'``), decoded lazily with random access. Prompts are ``FRAME:X,Y[:OBJ]`` clicks and
``FRAME:X0,Y0,X1,Y1[:OBJ]`` boxes in video pixels; OBJ (the object id) defaults to 1.
Into ``--out DIR`` the command writes, per tracked frame:

* ``--format png`` (default): ``DIR/<obj>/<frame:05d>.png``, one 0/255 mask per object;
* ``--format rle-json``: ``DIR/<frame:05d>.json`` with, per object, its COCO RLE mask,
  object score logit and visibility;
* ``--format overlay-mp4``: ``DIR/overlay.mp4``, the frames with the masks tinted, at the
  input video's frame rate (10 frames/s for a folder; needs PyAV, ``samkit[video]``).

Every file is written into a temporary folder next to DIR and moved into place when the
run has finished, so an interrupted run leaves DIR as it was.
"""

from __future__ import annotations

import contextlib
import enum
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

import samkit
from samkit.cli.common import CliError
from samkit.cli.segment import (
    CheckpointOption,
    CompileOption,
    DeviceOption,
    DType,
    DTypeOption,
    ModelOption,
    parse_device,
)
from samkit.cli.track_outputs import (
    OVERLAY_FILE,
    OVERLAY_FPS,
    TrackFormat,
    _move_into,
    _Overlay,
    _writer,
)
from samkit.cli.track_prompts import ObjectPrompt, parse_prompts
from samkit.configs.base import Sam2Config
from samkit.errors import FrameOutOfRange, InvalidPrompt, InvalidVideo, OutputError
from samkit.fileio import chmod_as_created

if TYPE_CHECKING:
    from samkit.video.io import VideoFileReader

__all__ = [
    "OVERLAY_FILE",
    "Direction",
    "ObjectPrompt",
    "TrackFormat",
    "parse_prompts",
    "track_command",
]


class Direction(str, enum.Enum):
    """Which way propagation runs from the prompted frames."""

    forward = "forward"
    backward = "backward"
    both = "both"


# ----------------------------------------------------------------------------- checks
def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies under it (after resolving links)."""
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _check_video(video: Path) -> tuple[int, float | None, VideoFileReader | None]:
    """Refuse a missing or unusable VIDEO; its number of frames, frame rate (``None``
    for a folder) and, for a video file, the open reader (demuxed once, then handed to
    the session; the caller closes it)."""
    if not video.exists():
        raise InvalidVideo(f"video not found: {video}")
    if video.is_dir():
        from samkit.video import list_video_frames

        try:
            return len(list_video_frames(video)), None, None
        except OSError as exc:
            raise InvalidVideo(f"cannot read folder {video}: {exc.strerror or exc}") from None
    if not os.access(video, os.R_OK):
        raise InvalidVideo(f"cannot read {video}: permission denied")
    from samkit.video.io import VIDEO_SUFFIXES, VideoFileReader

    if video.suffix.lower() not in VIDEO_SUFFIXES:
        raise InvalidVideo(
            f"{video}: not a folder of frames or a video file ({', '.join(VIDEO_SUFFIXES)})"
        )
    reader = VideoFileReader(video)
    return len(reader), reader.fps, reader


def _check_out(out: Path, video: Path, overwrite: bool) -> None:
    """Refuse an output folder that overlaps the input, is a file, or is not empty."""
    if video.is_dir():
        if _inside(out, video):
            raise OutputError(f"--out {out} is inside the input folder {video}; choose another")
        if _inside(video, out):
            raise OutputError(f"--out {out} holds the input folder {video}; choose another")
    elif out.exists() and out.resolve() == video.resolve():
        raise OutputError(f"--out {out} is the input video; refusing to overwrite it")
    elif _inside(video, out):
        # with --overwrite an output (e.g. overlay.mp4) could replace the input
        raise OutputError(f"--out {out} holds the input video {video}; choose another")
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise OutputError(f"--out {out} is not empty (--overwrite writes into it)")
    if out.is_dir() and not os.access(out, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write into --out {out}: it is not writable")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"cannot write --out {out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write --out {out}: folder {parent} is not writable")


def _check_frames(prompts: dict[tuple[int, int], ObjectPrompt], num_frames: int | None) -> None:
    if num_frames is None:
        return
    for frame, obj in prompts:
        if frame >= num_frames:
            raise FrameOutOfRange(
                f"prompt for object {obj} on frame {frame}: the video has {num_frames} frames "
                f"(0 to {num_frames - 1})"
            )


def _video_size(video: Path, reader: VideoFileReader | None) -> tuple[int, int]:
    """``(H, W)`` of the video: the stream's (a file) or its first frame's (a folder)."""
    if reader is not None:
        return reader.size
    from PIL import Image

    from samkit.video import list_video_frames

    first = list_video_frames(video)[0]
    try:
        with Image.open(first) as im:
            return im.height, im.width
    except (OSError, Image.DecompressionBombError) as exc:
        raise InvalidVideo(f"cannot read {first}: {exc}") from None


def _check_inside(prompts: dict[tuple[int, int], ObjectPrompt], size: tuple[int, int]) -> None:
    """Refuse clicks and boxes outside the frames (the session would take them as they
    are), with the same bounds as ``samkit segment``: ``0 <= x <= W``, ``0 <= y <= H``."""
    h, w = size
    for (frame, obj), prompt in prompts.items():
        spots = [(x, y, "point") for x, y in prompt.points]
        if prompt.box is not None:
            x0, y0, x1, y1 = prompt.box
            spots += [(x0, y0, "box corner"), (x1, y1, "box corner")]
        for x, y, what in spots:
            if not (0 <= x <= w and 0 <= y <= h):
                raise InvalidPrompt(
                    f"prompt for object {obj} on frame {frame}: {what} ({x:g}, {y:g}) lies "
                    f"outside the {w}x{h} video"
                )


# ----------------------------------------------------------------------------- progress
@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int | None) -> Iterator[Callable[..., None]]:
    """Yield ``update(advance=..., rate=...)`` moving a rich bar on stderr (a no-op when
    disabled or when stderr is not a terminal)."""
    if not enabled:
        yield lambda **kwargs: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda **kwargs: None
        return
    bar = Progress(
        TextColumn("[bold]track[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )
    with bar:
        task = bar.add_task("", total=total, rate="")

        def update(**fields: Any) -> None:
            bar.update(task, **fields)

        yield update


def _frames_to_run(direction: Direction, start: int, num_frames: int | None) -> int | None:
    if num_frames is None:
        return None
    if direction is Direction.forward:
        return num_frames - start
    if direction is Direction.backward:
        return start + 1
    return num_frames


# ----------------------------------------------------------------------------- command
def track_command(
    video: Annotated[
        Path,
        typer.Argument(
            metavar="VIDEO_OR_FOLDER",
            help="A folder of JPEG (else PNG) frames named by their index, or a video file "
            "(needs PyAV: pip install 'samkit\\[video]').",  # \\[: not Rich markup
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output folder (created if missing; must be empty)."),
    ],
    model: ModelOption,
    checkpoint: CheckpointOption = None,
    point: Annotated[
        list[str] | None,
        typer.Option(
            "--point",
            "-p",
            metavar="FRAME:X,Y[:OBJ]",
            help="Foreground click on frame FRAME, in video pixels, for object OBJ "
            "(default 1). Repeatable.",
        ),
    ] = None,
    negative: Annotated[
        list[str] | None,
        typer.Option(
            "--negative",
            "-n",
            metavar="FRAME:X,Y[:OBJ]",
            help="Background click on frame FRAME for object OBJ (default 1). Repeatable.",
        ),
    ] = None,
    box: Annotated[
        list[str] | None,
        typer.Option(
            "--box",
            "-b",
            metavar="FRAME:X0,Y0,X1,Y1[:OBJ]",
            help="Box around object OBJ (default 1) on frame FRAME. Repeatable "
            "(one per object and frame).",
        ),
    ] = None,
    fmt: Annotated[
        TrackFormat,
        typer.Option(
            "--format",
            "-f",
            help="png: DIR/<obj>/<frame>.png masks; rle-json: DIR/<frame>.json with COCO RLE, "
            "score and visibility per object; overlay-mp4: DIR/overlay.mp4 (needs PyAV).",
        ),
    ] = TrackFormat.png,
    direction: Annotated[
        Direction,
        typer.Option(
            "--direction",
            help="forward from the earliest prompted frame, backward from the latest, "
            "or both ways from the earliest.",
        ),
    ] = Direction.forward,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Write into a non-empty --out folder: files of the same names are "
            "replaced, others (e.g. frames or objects of an earlier run) are kept.",
        ),
    ] = False,
    device: DeviceOption = "cpu",
    dtype: DTypeOption = DType.float32,
    compile_model: CompileOption = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar on stderr.")
    ] = True,
) -> None:
    """Track prompted objects through a video with a SAM 2 model and write their masks.

    Example (object 1 clicked on frame 0, object 2 boxed on frame 10):

        samkit track frames/ --model sam2.1-hiera-tiny --point 0:210,350
        --box 10:300,0,500,400:2 --direction both --out masks/
    """
    prompts = parse_prompts(point or [], negative or [], box or [])
    preset = samkit.get_preset(model)
    if not isinstance(preset.config, Sam2Config):
        raise CliError(f"samkit track needs a SAM 2 model; {preset.name} is not one")
    num_frames, fps, reader = _check_video(video)
    try:
        _track(
            video,
            reader,
            num_frames,
            fps,
            prompts,
            preset.name,
            checkpoint,
            out,
            fmt,
            direction,
            overwrite,
            device,
            dtype,
            compile_model,
            progress,
        )
    finally:
        if reader is not None:
            reader.close()


def _track(
    video: Path,
    reader: VideoFileReader | None,
    num_frames: int,
    fps: float | None,
    prompts: dict[tuple[int, int], ObjectPrompt],
    model: str,
    checkpoint: Path | None,
    out: Path,
    fmt: TrackFormat,
    direction: Direction,
    overwrite: bool,
    device: str,
    dtype: DType,
    compile_model: bool,
    progress: bool,
) -> None:
    """The body of :func:`track_command` once VIDEO is open (``reader`` for a file)."""
    _check_frames(prompts, num_frames)
    _check_inside(prompts, _video_size(video, reader))
    _check_out(out, video, overwrite)
    if fmt is TrackFormat.overlay_mp4:
        try:
            import av  # noqa: F401
        except ImportError:
            raise CliError(
                "--format overlay-mp4 needs PyAV (pip install 'samkit[video]'); use png or rle-json"
            ) from None
    if checkpoint is not None and not checkpoint.is_file():
        raise CliError(f"checkpoint not found: {checkpoint}")
    dev = parse_device(device)

    from samkit.video import VideoPredictor, list_video_frames

    names = [p.name for p in list_video_frames(video)] if video.is_dir() else None
    sam = samkit.load_model(model, checkpoint=checkpoint, device=dev, dtype=dtype.torch_dtype)
    if compile_model:
        samkit.compile_model(sam)
    predictor = VideoPredictor(sam)
    frames = [f for f, _ in prompts]
    start = max(frames) if direction is Direction.backward else min(frames)
    objects = sorted({obj for _, obj in prompts})

    parent = out.parent if str(out.parent) else Path(".")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    chmod_as_created(tmp)
    count = 0
    began = time.perf_counter()
    try:
        with predictor.start(video if reader is None else reader) as session:
            for (frame, obj), prompt in prompts.items():
                session.add_prompt(
                    frame,
                    obj,
                    points=prompt.points or None,
                    labels=prompt.labels or None,
                    box=prompt.box,
                )
            size = session.video_size
            write = _writer(fmt, tmp, size, lambda i: None if names is None else names[i])
            overlay = _Overlay(tmp / OVERLAY_FILE) if fmt is TrackFormat.overlay_mp4 else None
            total = _frames_to_run(direction, start, session.num_frames)
            try:
                with _progress_bar(progress, total) as update:
                    for result in session.propagate(direction=direction.value, start=start):
                        if overlay is not None:
                            # the session's own frame reader: also serves a video file
                            rgb = session.frame(result.frame_index)
                            overlay.add(result.frame_index, rgb, result.masks)
                        else:
                            write(result)
                        count += 1
                        rate = count / max(time.perf_counter() - began, 1e-9)
                        update(advance=1, rate=f"{rate:.1f} frames/s")
            finally:
                if overlay is not None:
                    overlay.close(fps or OVERLAY_FPS)
        seconds = time.perf_counter() - began
        _move_into(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    rate = count / seconds if seconds > 0 else 0.0
    shown = ", ".join(str(o) for o in objects)
    typer.echo(
        f"tracked {len(objects)} object(s) [{shown}] over {count} frames in {seconds:.1f} s "
        f"({rate:.1f} frames/s); wrote {fmt.value} to {out}"
    )
