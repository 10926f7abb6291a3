"""``samkit synth``: write a seeded synthetic dataset in SA-1B layout (for trying training),
or with ``--video T`` synthetic clips of moving shapes with an occluder (for trying
``samkit track``)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from samkit.cli.common import CliError, parse_numbers
from samkit.errors import OutputError


class ImageFormat(str, enum.Enum):
    """Image file format of the synthetic images."""

    png = "png"
    jpg = "jpg"


def parse_size(text: str) -> tuple[int, int]:
    """``"H,W"`` -> ``(H, W)``, both integers >= 16."""
    h, w = parse_numbers(text, ("H", "W"), "--size")
    if h != int(h) or w != int(w):
        raise CliError(f"--size {text!r}: H and W must be whole numbers of pixels")
    if min(h, w) < 16:
        raise CliError(f"--size {text!r}: H and W must both be >= 16")
    return int(h), int(w)


def synth_command(
    out_text: Annotated[
        str,  # not Path: Typer turns "" into Path("."), the current folder
        typer.Argument(
            metavar="OUT_DIR", help="Folder to write synth_XXXXXX.{png,jpg} + .json into."
        ),
    ],
    n: Annotated[int, typer.Option("--n", "-n", help="Number of images to write (>= 1).")],
    seed: Annotated[
        int | None, typer.Option("--seed", help="Generator seed (same seed, same images).")
    ] = None,
    size: Annotated[
        str, typer.Option("--size", metavar="H,W", help="Image height and width in pixels.")
    ] = "256,256",
    image_format: Annotated[
        ImageFormat,
        typer.Option(
            "--format", help="png (exact pixels) or jpg (quality 95); images or video frames."
        ),
    ] = ImageFormat.png,
    video: Annotated[
        int | None,
        typer.Option(
            "--video",
            metavar="T",
            help="Write N clips of T frames instead (clip_XXXXXX/ frames + .json with "
            "per-frame RLE masks and a suggested first click per object).",
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Write into a non-empty OUT_DIR (files of the same names are replaced).",
        ),
    ] = False,
) -> None:
    """Write N synthetic images with nested (whole/part/subpart) masks as an SA-1B dataset,
    or N synthetic video clips (--video)."""
    from samkit.data.synthetic import SyntheticConfig, write_synthetic_dataset

    if not out_text.strip():
        raise CliError("OUT_DIR is empty: give the folder to write into")
    out_dir = Path(out_text)
    if n < 1:
        raise CliError(f"--n must be >= 1, got {n}")
    if seed is not None and seed < 0:
        raise CliError(f"--seed must be >= 0, got {seed}")
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"cannot write into {out_dir}: it is a file, not a folder")
    if out_dir.is_dir() and not overwrite and any(out_dir.iterdir()):
        # another dataset's files would be replaced or mixed with these (another seed,
        # size or format)
        raise OutputError(
            f"{out_dir} is not empty: choose a new folder, or pass --overwrite to write "
            "into it (files of the same names are replaced)"
        )
    hw = parse_size(size)
    try:
        if video is not None:
            _write_clips(out_dir, n, seed, hw, video, image_format.value)
            return
        cfg = SyntheticConfig(size=hw)
        try:
            paths = write_synthetic_dataset(
                out_dir, n, cfg, seed=seed, image_format=image_format.value
            )
        except OSError as exc:
            raise OutputError(f"cannot write the dataset to {out_dir}: {exc}") from exc
    except MemoryError:
        what = f"--video {video} --size {size}" if video is not None else f"--size {size}"
        raise CliError(f"{what}: not enough memory for these frames or images") from None
    noun = "image" if len(paths) == 1 else "images"
    typer.echo(f"wrote {len(paths)} {noun} + SA-1B JSONs to {out_dir}")


def _write_clips(
    out_dir: Path, n: int, seed: int | None, size: tuple[int, int], t: int, image_format: str
) -> None:
    from samkit.data.synthetic_video import SyntheticVideoConfig, write_synthetic_clips

    if t < 2:
        raise CliError(f"--video must be >= 2 frames, got {t}")
    cfg = SyntheticVideoConfig(size=size, num_frames=t)
    try:
        paths = write_synthetic_clips(out_dir, n, cfg, seed=seed or 0, image_format=image_format)
    except OSError as exc:
        raise OutputError(f"cannot write the clips to {out_dir}: {exc}") from exc
    noun = "clip" if len(paths) == 1 else "clips"
    kind = image_format.upper().replace("JPG", "JPEG")
    typer.echo(f"wrote {len(paths)} {noun} of {t} frames ({kind} folders + JSON) to {out_dir}")
