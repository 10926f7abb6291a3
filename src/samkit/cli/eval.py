"""``samkit eval``: prompted-segmentation benchmarks (single point, interactive, box)."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

import samkit
from samkit.cli.common import CliError, check_outputs, open_dataset
from samkit.cli.segment import (
    DEFAULT_MODEL,
    CheckpointOption,
    DeviceOption,
    DType,
    DTypeOption,
    ModelOption,
    parse_device,
)
from samkit.eval import protocols
from samkit.eval.report import EvalResult, print_results, write_json

__all__ = ["Protocol", "eval_command"]


class Protocol(str, enum.Enum):
    """Which evaluation protocol(s) to run."""

    single_point = "single-point"
    interactive = "interactive"
    box = "box"
    all = "all"


def eval_command(
    data: Annotated[
        Path,
        typer.Argument(
            help="Folder in SA-1B layout (image + JSON of the same name), or the images "
            "folder when --coco-annotations is given."
        ),
    ],
    model: ModelOption = DEFAULT_MODEL,
    checkpoint: CheckpointOption = None,
    protocol: Annotated[
        Protocol, typer.Option("--protocol", help="Evaluation protocol to run.")
    ] = Protocol.all,
    max_clicks: Annotated[
        int, typer.Option("--max-clicks", min=1, help="Click budget of the interactive protocol.")
    ] = 20,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Evaluate only the first N images.")
    ] = None,
    max_objects: Annotated[
        int | None,
        typer.Option("--max-objects", min=1, help="Evaluate at most N objects per image."),
    ] = None,
    coco_annotations: Annotated[
        Path | None,
        typer.Option(
            "--coco-annotations",
            help="COCO instances JSON; DATA is then the folder holding its images.",
        ),
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write all results as JSON here.")
    ] = None,
    dtype: DTypeOption = DType.float32,
    device: DeviceOption = "cpu",
) -> None:
    """Evaluate a model on a dataset with SAM-paper prompting protocols.

    single-point: one click at the point farthest from the boundary, mIoU of the
    top-scored and of the best (oracle) of three masks. interactive: up to --max-clicks
    corrective clicks, NoC@85/90 and mIoU per click. box: tight ground-truth box. Example:

        samkit eval data/sa1b --model sam-vit-b --protocol all --limit 50 --json res.json
    """
    dataset = open_dataset(data, coco_annotations)
    if json_path is not None:
        check_outputs({}, {"--json": json_path})
    preset = samkit.get_preset(model)
    dev = parse_device(device)
    sam = samkit.load_model(preset.name, checkpoint=checkpoint, device=dev, dtype=dtype.torch_dtype)
    predictor = samkit.ImagePredictor(sam)

    runs: list[tuple[str, Callable[[], EvalResult]]] = []
    kw: dict[str, Any] = {"max_objects": max_objects, "max_images": limit}
    if protocol in (Protocol.single_point, Protocol.all):
        runs.append(("single-point", lambda: protocols.single_point(predictor, dataset, **kw)))
    if protocol in (Protocol.interactive, Protocol.all):
        runs.append(
            (
                "interactive",
                lambda: protocols.interactive(predictor, dataset, max_clicks=max_clicks, **kw),
            )
        )
    if protocol in (Protocol.box, Protocol.all):
        runs.append(("box", lambda: protocols.box_prompt(predictor, dataset, **kw)))

    results: list[EvalResult] = []
    seconds: dict[str, float] = {}
    for name, fn in runs:
        start = time.perf_counter()
        try:
            results.append(fn())
        except (ValueError, OSError) as exc:
            raise CliError(f"{name} evaluation failed: {exc}") from None
        seconds[name] = round(time.perf_counter() - start, 3)

    print_results(results)
    if json_path is not None:
        meta = {
            "data": str(data),
            "coco_annotations": None if coco_annotations is None else str(coco_annotations),
            "model": preset.name,
            "checkpoint": None if checkpoint is None else str(checkpoint),
            "limit": limit,
            "max_objects": max_objects,
            "seconds": seconds,
        }
        write_json(json_path, results, meta)
        typer.echo(f"wrote {json_path}")
