"""``samkit eval``: prompted-segmentation benchmarks (single point, interactive, box) and
COCO mask AP from detector boxes (coco-ap)."""

from __future__ import annotations

import enum
import json
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
from samkit.errors import OutputError
from samkit.eval import coco_ap, protocols
from samkit.eval.report import EvalResult, print_results, write_json

__all__ = ["Protocol", "ScoreMode", "eval_command"]


class Protocol(str, enum.Enum):
    """Which evaluation protocol(s) to run."""

    single_point = "single-point"
    interactive = "interactive"
    box = "box"
    coco_ap = "coco-ap"
    all = "all"


class ScoreMode(str, enum.Enum):
    """Score of each coco-ap mask: the detector's, or the detector's times predicted IoU."""

    detector = "detector"
    detector_x_iou = "detector_x_iou"


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
    detections: Annotated[
        Path | None,
        typer.Option(
            "--detections",
            help="COCO results JSON of a detector (image_id, category_id, bbox [x, y, w, h], "
            "score): each box prompts one mask for --protocol coco-ap (also run by 'all' "
            "when given). Needs --coco-annotations.",
        ),
    ] = None,
    score_mode: Annotated[
        ScoreMode,
        typer.Option(
            "--score-mode",
            help="coco-ap mask score: the detector's, or detector score x predicted IoU.",
        ),
    ] = ScoreMode.detector,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write all results as JSON here.")
    ] = None,
    dtype: DTypeOption = DType.float32,
    device: DeviceOption = "cpu",
) -> None:
    """Evaluate a model on a dataset with SAM-paper prompting protocols.

    single-point: one click at the point farthest from the boundary, mIoU of the
    top-scored and of the best (oracle) of three masks. interactive: up to --max-clicks
    corrective clicks, NoC@85/90 and mIoU per click. box: tight ground-truth box.
    coco-ap: COCO mask AP (pycocotools) of masks prompted with the --detections boxes, on
    the images of --coco-annotations that have detections (--limit: the first N). Examples:

        samkit eval data/sa1b --model sam-vit-b --protocol all --limit 50 --json res.json

        samkit eval val2017 --coco-annotations instances_val2017.json
            --detections vitdet_val2017.json --protocol coco-ap --json ap.json
    """
    run_coco_ap = protocol is Protocol.coco_ap or (
        protocol is Protocol.all and detections is not None
    )
    if protocol is Protocol.coco_ap and detections is None:
        raise CliError(
            "--protocol coco-ap needs --detections DETS.json (COCO results of a detector)"
        )
    if detections is not None and not run_coco_ap:
        raise CliError(
            f"--detections is only used by --protocol coco-ap or all, not {protocol.value}"
        )
    if run_coco_ap and coco_annotations is None:
        raise CliError("--protocol coco-ap needs --coco-annotations GT.json (its ground truth)")
    dataset: Any = None
    if protocol is not Protocol.coco_ap:
        dataset = open_dataset(data, coco_annotations)
    elif not data.is_dir():
        raise CliError(f"image folder not found: {data}")
    coco_inputs: tuple[dict[str, Any], list[dict[str, Any]]] | None = None
    if run_coco_ap and coco_annotations is not None and detections is not None:
        coco_inputs = _coco_ap_inputs(coco_annotations, detections)
    if json_path is not None:
        inputs = {
            "--checkpoint": checkpoint,
            "--coco-annotations": coco_annotations,
            "--detections": detections,
        }
        check_outputs(inputs, {"--json": json_path})
        if json_path.exists() and _inside(json_path, data) and not _is_report(json_path):
            raise OutputError(
                f"--json {json_path} is a file in the dataset folder {data}; "
                "refusing to overwrite it (write the results elsewhere)"
            )
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
    if coco_inputs is not None:
        gt, dets = coco_inputs
        runs.append(
            (
                "coco-ap",
                lambda: coco_ap.coco_mask_ap(
                    predictor, gt, dets, data, limit=limit, score_mode=score_mode.value
                ),
            )
        )

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
        if detections is not None:
            meta["detections"] = str(detections)
            meta["score_mode"] = score_mode.value
        write_json(json_path, results, meta)
        typer.echo(f"wrote {json_path}")


def _is_report(path: Path) -> bool:
    """Whether ``path`` holds an earlier ``samkit eval --json`` report (a JSON object with
    a ``results`` object), which a new run may replace."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and isinstance(doc.get("results"), dict)


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies in ``folder`` or one of its subfolders (links resolved)."""
    return folder.resolve() in path.resolve().parents


def _coco_ap_inputs(
    annotations: Path, detections: Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read and cross-check the coco-ap ground truth and detections before any model is
    loaded; every problem becomes a one-line :class:`CliError`."""
    if not annotations.is_file():
        raise CliError(f"--coco-annotations file not found: {annotations}")
    if not detections.is_file():
        raise CliError(f"--detections file not found: {detections}")
    try:
        gt = coco_ap.load_coco_gt(annotations)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise CliError(f"cannot read --coco-annotations {annotations}: {exc}") from None
    try:
        dets = coco_ap.load_detections(detections)
    except (ValueError, OSError) as exc:
        raise CliError(f"cannot read --detections {detections}: {exc}") from None
    try:
        coco_ap.check_detections(gt, dets)
    except ValueError as exc:
        raise CliError(f"--detections {detections}: {exc}") from None
    return gt, dets
