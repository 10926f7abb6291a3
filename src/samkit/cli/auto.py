"""``samkit auto``: automatic mask generation ("segment everything") over many images.

INPUT is an image file, a folder (its images, not recursive) or a quoted glob pattern.
For each image the command writes, into ``--out DIR``:

* ``--format sa1b`` (default): ``DIR/<stem>.json`` in the SA-1B layout
  (:func:`samkit.data.amg_json.write_amg_json`);
* ``--format coco``: the same per-image JSONs plus ``DIR/coco_annotations.json``, one COCO
  instances file exported from all of them at the end of the run;
* ``--format png``: ``DIR/<stem>/<i>.png`` (one 0/255 mask per record, in record order) and
  ``DIR/<stem>/metadata.csv`` (the columns of the official ``amg.py`` script), written
  into a temporary folder that is renamed into place;
* ``--overlay``: also ``DIR/<stem>.overlay.png``.

The run is resumable: an image whose main output (``<stem>.json``, or
``<stem>/metadata.csv``) exists is skipped unless ``--overwrite``. Its other outputs are
written first, so an existing main output means the image is complete.
A ``<stem>.json`` or ``coco_annotations.json`` that samkit auto did not write (a user's
own annotations in the input folder, say) is never skipped as done nor replaced: the run
stops before loading the model with a one-line error.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.markup import escape

import samkit
from samkit.cli.auto_outputs import METADATA_HEADER, _write_outputs, metadata_csv
from samkit.cli.auto_plan import (
    COCO_FILE,
    IMAGE_SUFFIXES,
    METADATA_FILE,
    OVERLAY_SUFFIX,
    OutputFormat,
    _check_plan,
    _check_stems,
    _create_out,
    _plan,
    _prepare_out,
    collect_inputs,
)
from samkit.cli.common import CliError, one_line
from samkit.cli.segment import (
    DEFAULT_MODEL,
    CheckpointOption,
    CompileOption,
    DeviceOption,
    DType,
    DTypeOption,
    ModelOption,
    parse_device,
)
from samkit.errors import InvalidImage
from samkit.inference.transforms import load_image
from samkit.masks.crops import layer_points_per_side

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


# ----------------------------------------------------------------------------- options
#: The largest ``--points-per-side`` whose grid (``n * n`` points, two float64 each) can
#: be addressed at all: numpy fails on larger ones with messages that name no option.
_MAX_POINTS_PER_SIDE = math.isqrt(sys.maxsize // 16)


def _check_options(values: Mapping[str, float | int | None]) -> None:
    """Range checks with one-line messages (Typer's own are multi-line boxes)."""
    at_least_one = ("--points-per-side", "--points-per-batch", "--crop-points-downscale")
    unit = ("--pred-iou-thresh", "--stability-score-thresh", "--box-nms-thresh")
    for option, value in values.items():
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):  # ints: any size
            raise CliError(f"{option} must be a finite number, got {value}")
        if option in at_least_one and value < 1:
            raise CliError(f"{option} must be at least 1, got {value}")
        if option == "--points-per-side" and value > _MAX_POINTS_PER_SIDE:
            raise CliError(
                f"{option} {value} is too large: its point grid cannot be held in memory"
            )
        if option in (*unit, "--crop-nms-thresh") and not 0.0 <= value <= 1.0:
            raise CliError(f"{option} must be between 0 and 1, got {value}")
        if option == "--stability-score-offset" and value < 0.0:
            raise CliError(f"{option} must be at least 0, got {value}")
        if option == "--crop-overlap-ratio" and not 0.0 <= value < 1.0:
            raise CliError(f"{option} must be in [0, 1), got {value}")
        if option in ("--crop-layers", "--min-region-area") and value < 0:
            raise CliError(f"{option} must be 0 or more, got {value}")
        if option == "--crop-layers" and value > MAX_CROP_LAYERS:
            crops = sum(4**i for i in range(1, MAX_CROP_LAYERS + 1))
            raise CliError(
                f"--crop-layers must be at most {MAX_CROP_LAYERS} ({crops:,} crops, each "
                f"encoded like a whole image; layer i adds 4^i), got {value}"
            )


#: Most crop layers ``samkit auto`` takes (the official scripts use 0 or 1): each layer i
#: adds 4**i crops, so a typo such as 14 would run for days.
MAX_CROP_LAYERS = 5


def _check_crop_points(points_per_side: int, crop_layers: int, downscale: int) -> None:
    """Every crop layer needs at least one point per side (the generator's rule,
    :func:`samkit.masks.crops.layer_points_per_side`), checked before the model loads."""
    try:
        layer_points_per_side(points_per_side, crop_layers, downscale)
    except ValueError as exc:
        raise CliError(
            f"--crop-layers {crop_layers} with --crop-points-downscale {downscale}: {exc}; "
            "use fewer crop layers or more --points-per-side"
        ) from None


# ----------------------------------------------------------------------------- progress
@contextlib.contextmanager
def _progress_bar(
    enabled: bool, total: int
) -> Iterator[tuple[Callable[..., None], Callable[[str], None]]]:
    """Yield ``(update, report)``: ``update(completed=..., description=..., rate=...)``
    moves the bar; ``report(line)`` prints a line on stderr above it (or plainly, when
    disabled or when stderr is not a terminal)."""
    from rich.console import Console

    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield (lambda **kwargs: None), (lambda line: typer.echo(line, err=True))
        return
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
        console=console,
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
    compile_model: CompileOption = False,
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
    _check_crop_points(points_per_side, crop_layers, crop_points_downscale)
    images = collect_inputs(source)
    _check_stems(images)
    preset = samkit.get_preset(model)
    dev = parse_device(device)
    if checkpoint is not None and not checkpoint.is_file():
        raise CliError(f"checkpoint not found: {checkpoint}")
    jobs, coco = _plan(images, out, fmt, overlay)
    _check_plan(jobs, coco, out, overwrite)
    _prepare_out(out)

    # done: its outputs exist (a run without --overlay left the overlays to make)
    todo = [
        job
        for job in jobs
        if overwrite
        or not job.main.is_file()
        or (job.overlay is not None and not job.overlay.is_file())
    ]
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
        if compile_model:
            samkit.compile_model(sam)
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
        except MemoryError:
            raise CliError(
                f"not enough memory for the point grid of --points-per-side {points_per_side}"
            ) from None
    _create_out(out)  # only now: a failed model load leaves no empty folder behind

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
            except (InvalidImage, torch.cuda.OutOfMemoryError, MemoryError) as exc:
                if isinstance(exc, torch.cuda.OutOfMemoryError):
                    torch.cuda.empty_cache()
                    reason = "out of GPU memory (try a smaller --points-per-batch)"
                elif isinstance(exc, MemoryError):
                    reason = "out of memory (try a smaller --points-per-batch or --crop-layers)"
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
        from samkit.data.amg_json import export_coco

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
