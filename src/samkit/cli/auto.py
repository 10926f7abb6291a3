"""``samkit auto``: automatic mask generation ("segment everything") over many images.

INPUT is an image file, a folder (its images, not recursive) or a quoted glob pattern.
For each image the command writes, into ``--out DIR``:

* ``--format sa1b`` (default): ``DIR/<stem>.json`` in the SA-1B layout
  (:func:`samkit.data.sa1b.write_amg_json`);
* ``--format coco``: the same per-image JSONs plus ``DIR/coco_annotations.json``, one COCO
  instances file exported from all of them at the end of the run;
* ``--format png``: ``DIR/<stem>/<i>.png`` (one 0/255 mask per record, in record order) and
  ``DIR/<stem>/metadata.csv`` (the columns of the official ``amg.py`` script), written
  into a temporary folder that is renamed into place;
* ``--overlay``: also ``DIR/<stem>.overlay.png``.

The run is resumable: an image whose main output (``<stem>.json``, or
``<stem>/metadata.csv``) exists is skipped unless ``--overwrite``. Its other outputs are
written first, so an existing main output means the image is complete.
"""

from __future__ import annotations

import contextlib
import enum
import glob
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer
from rich.markup import escape

import samkit
from samkit.cli.common import CliError, one_line
from samkit.cli.output import mask_png, png_bytes
from samkit.cli.segment import (
    DEFAULT_MODEL,
    CheckpointOption,
    DeviceOption,
    DType,
    DTypeOption,
    ModelOption,
    parse_device,
)
from samkit.errors import InvalidImage, OutputError
from samkit.fileio import atomic_write_bytes, current_umask
from samkit.inference.transforms import load_image
from samkit.viz import MaskOverlay, mask_colour

__all__ = [
    "COCO_FILE",
    "IMAGE_SUFFIXES",
    "METADATA_FILE",
    "METADATA_HEADER",
    "OVERLAY_SUFFIX",
    "OutputFormat",
    "auto_command",
    "collect_inputs",
    "metadata_csv",
]

#: Suffixes (any case) of the files taken from a folder or a glob pattern.
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: ``<stem>`` + this is the overlay of an image.
OVERLAY_SUFFIX = ".overlay.png"
#: Name of the COCO file of ``--format coco``, in ``--out``.
COCO_FILE = "coco_annotations.json"
#: Per-image metadata of ``--format png`` (also the marker that the folder is complete).
METADATA_FILE = "metadata.csv"
#: Columns of ``metadata.csv``, as written by the official ``scripts/amg.py``.
METADATA_HEADER = (
    "id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,predicted_iou,"
    "stability_score,crop_box_x0,crop_box_y0,crop_box_w,crop_box_h"
)


class OutputFormat(str, enum.Enum):
    """What ``samkit auto`` writes per image."""

    sa1b = "sa1b"
    coco = "coco"
    png = "png"


# ----------------------------------------------------------------------------- inputs
def _is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _drop_overlays(paths: list[Path]) -> list[Path]:
    """Leave out ``X.overlay.png`` when ``X.*`` is listed too: it is that image's overlay
    (from an earlier run writing into the input folder), not an input."""
    stems = {(p.parent, p.stem) for p in paths}
    return [
        p
        for p in paths
        if not (
            p.name.endswith(OVERLAY_SUFFIX) and (p.parent, p.name[: -len(OVERLAY_SUFFIX)]) in stems
        )
    ]


def collect_inputs(text: str) -> list[Path]:
    """INPUT -> the image files to process, sorted.

    A file is taken as is (whatever its suffix); a folder gives its files with an image
    suffix (:data:`IMAGE_SUFFIXES`, any case; not recursive); otherwise ``text`` is a glob
    pattern (``**`` recurses) and gives the matching files with an image suffix. Files
    named ``X.overlay.png`` next to an input ``X.*`` are overlays and are left out.

    Raises:
        CliError: nothing exists at ``text``, or the folder/pattern holds no image.
    """
    if not text.strip():
        raise CliError("INPUT is empty: give an image, a folder or a quoted glob pattern")
    path = Path(text)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and _is_image_name(p))
        found = _drop_overlays(found)
        if not found:
            raise CliError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
        return found
    if any(c in text for c in "*?["):
        matches = (Path(m) for m in glob.glob(text, recursive=True))
        found = _drop_overlays(sorted(p for p in matches if p.is_file() and _is_image_name(p)))
        if not found:
            raise CliError(f"no image files match {text!r}")
        return found
    raise CliError(f"input not found: {text}")


def _check_stems(paths: Sequence[Path]) -> None:
    """Two inputs whose stems differ only in case would write the same outputs."""
    seen: dict[str, Path] = {}
    for path in paths:
        key = path.stem.casefold()
        if key in seen:
            raise CliError(
                f"inputs {seen[key]} and {path} have the same name stem {path.stem!r}: "
                "their outputs would collide; rename one or run them separately"
            )
        seen[key] = path


# ----------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class _Job:
    """One image and where its outputs go."""

    image: Path
    target: Path  # <stem>.json (sa1b/coco) or the <stem>/ folder (png)
    main: Path  # the file whose existence means "done"
    overlay: Path | None


def _plan(
    images: Sequence[Path], out: Path, fmt: OutputFormat, overlay: bool
) -> tuple[list[_Job], Path | None]:
    jobs = []
    for image in images:
        if fmt is OutputFormat.png:
            target = out / image.stem
            main = target / METADATA_FILE
        else:
            target = main = out / f"{image.stem}.json"
        jobs.append(
            _Job(image, target, main, out / f"{image.stem}{OVERLAY_SUFFIX}" if overlay else None)
        )
    coco = out / COCO_FILE if fmt is OutputFormat.coco else None
    return jobs, coco


def _file_key(path: Path) -> str:
    return os.path.normcase(str(path.resolve()))


def _check_plan(jobs: Sequence[_Job], coco: Path | None, out: Path, overwrite: bool) -> None:
    """Refuse (one line) outputs that would overwrite an input, collide, or have the wrong
    kind (a folder where a file goes, or the reverse)."""
    inputs: dict[str, Path] = {}
    inodes: dict[tuple[int, int], Path] = {}
    for job in jobs:
        inputs[_file_key(job.image)] = job.image
        with contextlib.suppress(OSError):
            st = job.image.stat()
            inodes[(st.st_dev, st.st_ino)] = job.image

    def clobbered(path: Path) -> Path | None:
        hit = inputs.get(_file_key(path))
        if hit is None and path.exists():
            with contextlib.suppress(OSError):
                st = path.stat()
                hit = inodes.get((st.st_dev, st.st_ino))
        return hit

    files: list[Path] = [coco] if coco is not None else []
    folders: list[Path] = []
    for job in jobs:
        if job.overlay is not None:
            files.append(job.overlay)
        (folders if job.target != job.main else files).append(job.target)
    seen: dict[str, Path] = {}
    for path in [*files, *folders]:
        key = os.path.normcase(str(path)).casefold()
        if key in seen:
            raise CliError(f"two outputs would be written to {path}; rename the inputs")
        seen[key] = path
    for path in files:
        source = clobbered(path)
        if source is not None:
            raise CliError(
                f"--out {out}: writing {path} would overwrite the input {source}; "
                "choose another --out folder"
            )
        if path.is_dir():
            raise CliError(f"cannot write {path}: it is a folder")
    folder_keys = {_file_key(path): path for path in folders}
    for job in jobs:
        for parent in job.image.resolve().parents:
            target = folder_keys.get(os.path.normcase(str(parent)))
            if target is not None:
                raise CliError(
                    f"--out {out}: replacing {target} would delete the input {job.image}; "
                    "choose another --out folder"
                )
    for path in folders:
        if path.exists() and not path.is_dir():
            raise CliError(f"cannot write the masks folder {path}: a file of that name exists")
        if path.is_dir() and not (path / METADATA_FILE).is_file() and not overwrite:
            raise CliError(
                f"{path} exists but is not a samkit output (no {METADATA_FILE}); "
                "remove it or pass --overwrite to replace it"
            )


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} is a file; it must be a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"cannot create --out folder {out}: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise CliError(f"--out folder {out} is not writable")


def _check_options(values: Mapping[str, float | int | None]) -> None:
    """Range checks with one-line messages (Typer's own are multi-line boxes)."""
    at_least_one = ("--points-per-side", "--points-per-batch", "--crop-points-downscale")
    unit = ("--pred-iou-thresh", "--stability-score-thresh", "--box-nms-thresh")
    for option, value in values.items():
        if value is None:
            continue
        if not math.isfinite(value):
            raise CliError(f"{option} must be a finite number, got {value}")
        if option in at_least_one and value < 1:
            raise CliError(f"{option} must be at least 1, got {value}")
        if option in (*unit, "--crop-nms-thresh") and not 0.0 <= value <= 1.0:
            raise CliError(f"{option} must be between 0 and 1, got {value}")
        if option == "--stability-score-offset" and value < 0.0:
            raise CliError(f"{option} must be at least 0, got {value}")
        if option == "--crop-overlap-ratio" and not 0.0 <= value < 1.0:
            raise CliError(f"{option} must be in [0, 1), got {value}")
        if option in ("--crop-layers", "--min-region-area") and value < 0:
            raise CliError(f"{option} must be 0 or more, got {value}")


# ----------------------------------------------------------------------------- metadata
def metadata_csv(records: Sequence[Mapping[str, Any]]) -> str:
    """``metadata.csv`` of the official ``amg.py`` (header + one row per record, ``id`` =
    record index, values formatted with ``str``), newline-terminated."""
    rows = [METADATA_HEADER]
    for i, r in enumerate(records):
        values = [
            i,
            r["area"],
            *r["bbox"],
            *r["point_coords"][0],
            r["predicted_iou"],
            r["stability_score"],
            *r["crop_box"],
        ]
        rows.append(",".join(str(v) for v in values))
    return "\n".join(rows) + "\n"


# ----------------------------------------------------------------------------- writing
def _replace_folder(tmp: Path, target: Path) -> None:
    """Move the finished folder ``tmp`` to ``target``, replacing an existing one."""
    os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp creates 0700
    aside: Path | None = None
    try:
        if target.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.rename(target, aside / "old")
        os.rename(tmp, target)
    except OSError as exc:
        if aside is not None and (aside / "old").exists() and not target.exists():
            os.rename(aside / "old", target)
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


def _write_outputs(
    job: _Job, fmt: OutputFormat, out: Path, rgb: np.ndarray, records: Sequence[dict[str, Any]]
) -> None:
    """Overlay and PNG masks first, the main output last (it marks the image done)."""
    from samkit.data.sa1b import write_amg_json
    from samkit.masks import rle_decode

    canvas = MaskOverlay(rgb) if job.overlay is not None else None
    tmp: Path | None = None
    try:
        if fmt is OutputFormat.png:
            try:
                tmp = Path(tempfile.mkdtemp(prefix=f".{job.target.name}.", suffix=".tmp", dir=out))
            except OSError as exc:
                raise OutputError(f"cannot write {job.target}: {exc.strerror or exc}") from None
        if tmp is not None or canvas is not None:
            # Largest first, so that smaller masks stay visible on the overlay.
            for i in sorted(range(len(records)), key=lambda k: -records[k]["area"]):
                mask = rle_decode(records[i]["segmentation"])
                if tmp is not None:
                    atomic_write_bytes(tmp / f"{i}.png", mask_png(mask))
                if canvas is not None:
                    canvas.add(mask, mask_colour(i))
        if canvas is not None and job.overlay is not None:
            atomic_write_bytes(job.overlay, png_bytes(canvas.render()))
        if tmp is not None:
            atomic_write_bytes(tmp / METADATA_FILE, metadata_csv(records).encode("utf-8"))
            _replace_folder(tmp, job.target)
            tmp = None
        else:
            try:
                file_name = os.path.relpath(job.image.resolve(), out.resolve())
            except ValueError:  # another drive (Windows)
                file_name = str(job.image.resolve())
            info = {
                "image_id": job.image.stem,
                "file_name": Path(file_name).as_posix(),
                "width": int(rgb.shape[1]),
                "height": int(rgb.shape[0]),
            }
            write_amg_json(job.target, records, info)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------- progress
@contextlib.contextmanager
def _progress_bar(
    enabled: bool, total: int
) -> Iterator[tuple[Callable[..., None], Callable[[str], None]]]:
    """Yield ``(update, report)``: ``update(completed=..., description=..., rate=...)``
    moves the bar; ``report(line)`` prints a line on stderr above it (or plainly)."""
    if not enabled:
        yield (lambda **kwargs: None), (lambda line: typer.echo(line, err=True))
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

    bar = Progress(
        TextColumn("[bold]auto[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    with bar:
        task = bar.add_task("", total=total, rate="")

        def update(**fields: Any) -> None:
            bar.update(task, **fields)

        def report(line: str) -> None:
            bar.console.print(line, markup=False, highlight=False, soft_wrap=True)

        yield update, report


# ----------------------------------------------------------------------------- command
def auto_command(
    source: Annotated[
        str,
        typer.Argument(
            metavar="INPUT",
            help="An image, a folder of images (not recursive) or a quoted glob pattern "
            "such as 'photos/*.jpg'.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output folder (created if missing)."),
    ],
    model: ModelOption = DEFAULT_MODEL,
    checkpoint: CheckpointOption = None,
    dtype: DTypeOption = DType.float32,
    device: DeviceOption = "cpu",
    fmt: Annotated[
        OutputFormat,
        typer.Option(
            "--format",
            "-f",
            help="sa1b: <stem>.json per image (SA-1B layout, COCO RLE masks). coco: the same "
            f"plus one {COCO_FILE}. png: <stem>/<i>.png masks + {METADATA_FILE}.",
        ),
    ] = OutputFormat.sa1b,
    overlay: Annotated[
        bool,
        typer.Option(
            "--overlay", help=f"Also write <stem>{OVERLAY_SUFFIX}: every mask in its own colour."
        ),
    ] = False,
    points_per_side: Annotated[
        int, typer.Option("--points-per-side", help="Grid points along each side of the image.")
    ] = 32,
    points_per_batch: Annotated[
        int,
        typer.Option("--points-per-batch", help="Points decoded together (memory vs speed)."),
    ] = 64,
    pred_iou_thresh: Annotated[
        float | None,
        typer.Option(
            "--pred-iou-thresh",
            help="Keep masks whose predicted IoU is above this. Default: the value calibrated "
            "for the model (samkit-demo 0.4), else the family's official one (SAM 0.88, "
            "SAM 2 0.8).",
            show_default=False,
        ),
    ] = None,
    stability_score_thresh: Annotated[
        float | None,
        typer.Option(
            "--stability-score-thresh",
            help="Keep masks whose stability score is at least this. Default: the model's "
            "calibrated value, else 0.95.",
            show_default=False,
        ),
    ] = None,
    stability_score_offset: Annotated[
        float | None,
        typer.Option(
            "--stability-score-offset",
            help="Logit offset of the stability score. Default: the model's calibrated "
            "value, else 1.0.",
            show_default=False,
        ),
    ] = None,
    box_nms_thresh: Annotated[
        float,
        typer.Option("--box-nms-thresh", help="Box IoU above which duplicate masks are dropped."),
    ] = 0.7,
    crop_layers: Annotated[
        int,
        typer.Option("--crop-layers", help="Extra layers of zoomed-in crops (0: whole image)."),
    ] = 0,
    crop_nms_thresh: Annotated[
        float, typer.Option("--crop-nms-thresh", help="Box IoU of the NMS across crops.")
    ] = 0.7,
    crop_overlap_ratio: Annotated[
        float,
        typer.Option(
            "--crop-overlap-ratio",
            help="Overlap of neighbouring crops (fraction of the side).",
            show_default="512/1500",
        ),
    ] = 512 / 1500,
    crop_points_downscale: Annotated[
        int,
        typer.Option(
            "--crop-points-downscale", help="Points per side are divided by this per crop layer."
        ),
    ] = 1,
    min_region_area: Annotated[
        int,
        typer.Option(
            "--min-region-area",
            help="Remove holes and islands smaller than this many pixels (0: off).",
        ),
    ] = 0,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Redo images whose output already exists."),
    ] = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar on stderr.")
    ] = True,
) -> None:
    """Generate all masks of each image ("segment everything") and save them.

    Prompts a grid of points over each image and keeps the confident, stable, distinct
    masks (the official SamAutomaticMaskGenerator's results). Images already done in
    --out are skipped, so an interrupted run can simply be started again. An unreadable
    image is reported and skipped; the exit status is then 1. Examples:

        samkit auto photos/ --out masks/

        samkit auto 'data/*.jpg' --out masks/ --format coco --overlay
    """
    _check_options(
        {
            "--points-per-side": points_per_side,
            "--points-per-batch": points_per_batch,
            "--pred-iou-thresh": pred_iou_thresh,
            "--stability-score-thresh": stability_score_thresh,
            "--stability-score-offset": stability_score_offset,
            "--box-nms-thresh": box_nms_thresh,
            "--crop-layers": crop_layers,
            "--crop-nms-thresh": crop_nms_thresh,
            "--crop-overlap-ratio": crop_overlap_ratio,
            "--crop-points-downscale": crop_points_downscale,
            "--min-region-area": min_region_area,
        }
    )
    images = collect_inputs(source)
    _check_stems(images)
    preset = samkit.get_preset(model)
    dev = parse_device(device)
    if checkpoint is not None and not checkpoint.is_file():
        raise CliError(f"checkpoint not found: {checkpoint}")
    jobs, coco = _plan(images, out, fmt, overlay)
    _check_plan(jobs, coco, out, overwrite)
    _prepare_out(out)

    todo = [job for job in jobs if overwrite or not job.main.is_file()]
    skipped = len(jobs) - len(todo)
    if skipped:
        typer.echo(
            f"{skipped} of {len(jobs)} images already done in {out}: skipped (--overwrite redoes them)"
        )

    generator: Any = None
    if todo:
        from samkit.amg import MaskGenerator

        sam = samkit.load_model(
            preset.name, checkpoint=checkpoint, device=dev, dtype=dtype.torch_dtype
        )
        try:
            generator = MaskGenerator(
                sam,
                points_per_side=points_per_side,
                points_per_batch=points_per_batch,
                pred_iou_thresh=pred_iou_thresh,
                stability_score_thresh=stability_score_thresh,
                stability_score_offset=stability_score_offset,
                box_nms_thresh=box_nms_thresh,
                crop_n_layers=crop_layers,
                crop_nms_thresh=crop_nms_thresh,
                crop_overlap_ratio=crop_overlap_ratio,
                crop_n_points_downscale_factor=crop_points_downscale,
                min_mask_region_area=min_region_area,
                output_mode="coco_rle",
            )
        except ValueError as exc:
            raise CliError(str(exc)) from None

    done = failed = masks = 0
    start = time.perf_counter()
    with _progress_bar(progress and bool(todo), len(todo)) as (update, report):
        for index, job in enumerate(todo):
            update(description=escape(job.image.name))
            try:
                rgb = load_image(job.image)
                records: list[dict[str, Any]] | None = None
                for step in generator.stream(rgb):
                    within = (step.batch_index + 1) / step.num_batches
                    update(completed=index + (step.crop_index + within) / step.num_crops)
                    if step.records is not None:
                        records = [dict(r) for r in step.records]
            except (InvalidImage, torch.cuda.OutOfMemoryError) as exc:
                if isinstance(exc, torch.cuda.OutOfMemoryError):
                    torch.cuda.empty_cache()
                    reason = "out of GPU memory (try a smaller --points-per-batch)"
                else:
                    reason = one_line(exc)
                report(f"skipped {job.image}: {reason}")
                failed += 1
                update(completed=index + 1)
                continue
            assert records is not None
            _write_outputs(job, fmt, out, rgb, records)
            done += 1
            masks += len(records)
            rate = masks / max(time.perf_counter() - start, 1e-9)
            update(completed=index + 1, rate=f"{rate:.1f} masks/s")
        update(description="")
    seconds = time.perf_counter() - start

    if coco is not None and (done or overwrite or not coco.is_file()):
        from samkit.data.sa1b import export_coco

        finished = [job.target for job in jobs if job.target.is_file()]
        try:
            doc = export_coco(finished, coco)
        except (ValueError, OSError) as exc:
            raise CliError(f"cannot export {coco}: {one_line(exc)}") from None
        typer.echo(f"wrote {coco} ({len(doc['images'])} images, {len(doc['annotations'])} masks)")

    rate = f", {masks / seconds:.1f} masks/s" if done and seconds > 0 else ""
    typer.echo(
        f"{done} done, {skipped} skipped, {failed} failed of {len(jobs)} images; "
        f"{masks} masks in {seconds:.1f} s{rate}; output in {out}"
    )
    if failed:
        raise typer.Exit(1)
