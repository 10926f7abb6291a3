"""``samkit segment``: one image, one prompt (clicks and/or a box) -> mask files."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

import samkit
from samkit.cli.common import CliError, check_outputs, parse_numbers
from samkit.cli.output import mask_png, png_bytes
from samkit.errors import InvalidPrompt
from samkit.fileio import atomic_write_bytes
from samkit.inference.prompts import prepare_prompts
from samkit.inference.transforms import load_image
from samkit.masks import masks_to_coco_rle
from samkit.viz import prompt_overlay

#: Model used when ``--model`` is not given.
DEFAULT_MODEL = "samkit-demo"  # bundled: works offline


class DType(str, enum.Enum):
    """Precision of the heavy parts: the image encoder and SAM 2's memory attention (the
    prompt encoder, mask decoder and memory encoder always run in float32)."""

    float32 = "float32"
    bfloat16 = "bfloat16"

    @property
    def torch_dtype(self) -> torch.dtype:
        return {DType.float32: torch.float32, DType.bfloat16: torch.bfloat16}[self]


ModelOption = Annotated[
    str, typer.Option("--model", "-m", help="Model name or alias (see `samkit models`).")
]
CheckpointOption = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint",
        "-c",
        help="Weights file for --model (.pth/.pt or HF model.safetensors). "
        "Default: bundled or cached weights, downloaded if needed.",
    ),
]
DTypeOption = Annotated[
    DType,
    typer.Option(
        "--dtype",
        help="Precision of the image encoder (and of SAM 2's memory attention when "
        "tracking); bfloat16 is about twice as fast on CPUs with native bf16.",
    ),
]
DeviceOption = Annotated[
    str, typer.Option("--device", help="Where the model runs: cpu, cuda, cuda:1, mps.")
]
CompileOption = Annotated[
    bool,
    typer.Option(
        "--compile",
        help="torch.compile the model's heavy parts (samkit.compile_model): for GPUs and "
        "long jobs; the first image or frame then takes up to a few minutes longer.",
    ),
]


def parse_prompt(
    points: list[str], negatives: list[str], box: str | None
) -> tuple[list[list[float]], list[int], list[float] | None]:
    """Option strings -> ``(points, labels, box)`` in image pixels; positives first.

    Raises :class:`InvalidPrompt` for malformed numbers or when there is no prompt at all.
    """
    coords: list[list[float]] = []
    labels: list[int] = []
    for option, values, label in (("--point", points, 1), ("--negative", negatives, 0)):
        for text in values:
            coords.append(list(parse_numbers(text, ("X", "Y"), option, InvalidPrompt)))
            labels.append(label)
    parsed_box = None
    if box is not None:
        parsed_box = list(parse_numbers(box, ("X0", "Y0", "X1", "Y1"), "--box", InvalidPrompt))
    if not coords and parsed_box is None:
        raise InvalidPrompt("no prompt: give at least one --point X,Y, --negative X,Y or --box")
    return coords, labels, parsed_box


def parse_device(device: str) -> torch.device:
    """``--device`` string -> :class:`torch.device`, checking that it is usable."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise CliError(f"--device {device!r} is not a device (try cpu, cuda or cuda:1)") from None
    if dev.type == "meta":
        raise CliError(f"--device {device}: the meta device holds no data (try cpu or cuda)")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CliError(f"--device {device}: CUDA is not available in this installation")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise CliError(f"--device {device}: only {torch.cuda.device_count()} GPU(s) found")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise CliError(f"--device {device}: MPS is not available on this machine")
    elif dev.type not in ("cpu", "cuda", "mps"):
        try:  # another backend (xpu, xla, ...): usable only if this PyTorch build has it
            torch.empty(0, device=dev)
        except Exception:  # NotImplementedError, AssertionError, ImportError, ... by backend
            raise CliError(
                f"--device {device}: this PyTorch cannot use {dev.type} devices (try cpu or cuda)"
            ) from None
    return dev


#: Image suffixes that would misname the PNG files ``segment`` writes.
_OTHER_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def segment_command(
    image: Annotated[
        Path, typer.Argument(help="Input image (any format Pillow reads; EXIF rotation applied).")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Write the chosen mask here as a PNG (255 inside, 0 outside)."
        ),
    ],
    point: Annotated[
        list[str] | None,
        typer.Option(
            "--point",
            "-p",
            metavar="X,Y",
            help="Foreground click in image pixels (x right, y down). Repeatable.",
        ),
    ] = None,
    negative: Annotated[
        list[str] | None,
        typer.Option(
            "--negative",
            "-n",
            metavar="X,Y",
            help="Background click: exclude this spot from the mask. Repeatable.",
        ),
    ] = None,
    box: Annotated[
        list[str] | None,  # a list, so that a second --box is refused rather than kept
        typer.Option(
            "--box",
            "-b",
            metavar="X0,Y0,X1,Y1",
            help="Box around the object, in image pixels (one box per prompt).",
        ),
    ] = None,
    model: ModelOption = DEFAULT_MODEL,
    checkpoint: CheckpointOption = None,
    single: Annotated[
        bool,
        typer.Option(
            "--single",
            help="Ask for one mask instead of three candidates (better for a box or several "
            "clicks; a single click is ambiguous and benefits from three).",
        ),
    ] = False,
    overlay: Annotated[
        Path | None,
        typer.Option(
            "--overlay", help="Also write a PNG of the image with the mask and prompt drawn on it."
        ),
    ] = None,
    json_path: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="Also write scores, prompt and all candidate masks (COCO RLE) as JSON.",
        ),
    ] = None,
    dtype: DTypeOption = DType.float32,
    device: DeviceOption = "cpu",
) -> None:
    """Segment the object at the given clicks and/or box and write its mask.

    The model predicts three candidate masks (one with --single); the one with the
    highest predicted IoU is written to --out. Example:

        samkit segment photo.jpg --point 500,375 --out mask.png
    """
    if box is not None and len(box) > 1:
        raise InvalidPrompt(
            f"--box given {len(box)} times: a prompt takes one box (segment each object "
            "in its own run, or use samkit.ImagePredictor.predict_batch)"
        )
    coords, labels, parsed_box = parse_prompt(point or [], negative or [], box[0] if box else None)
    for option, path in (("--out", out), ("--overlay", overlay)):
        if path is not None and path.suffix.lower() in _OTHER_IMAGE_SUFFIXES:
            raise CliError(
                f"{option} {path}: samkit writes PNG files; name it {path.stem}.png "
                f"(a {path.suffix} name would hold PNG data)"
            )
    check_outputs(
        {"IMAGE": image, "--checkpoint": checkpoint},
        {"--out": out, "--overlay": overlay, "--json": json_path},
    )
    preset = samkit.get_preset(model)
    dev = parse_device(device)

    rgb = load_image(image)
    height, width = int(rgb.shape[0]), int(rgb.shape[1])
    # Validate the prompt against the image now, before the (slow) model load and encode.
    prepare_prompts(
        points=coords or None,
        labels=labels or None,
        boxes=parsed_box,
        mask_input=None,
        original_size=(height, width),
        input_size=(height, width),
        mask_size=(1, 1),
        device=torch.device("cpu"),
        batched=False,
    )

    sam = samkit.load_model(preset.name, checkpoint=checkpoint, device=dev, dtype=dtype.torch_dtype)
    predictor = samkit.ImagePredictor(sam)
    predictor.set_image(rgb)
    result = predictor.predict(
        points=coords or None,
        labels=labels or None,
        box=parsed_box,
        multimask=not single,
    )
    chosen = result.best_index
    mask = result.masks[chosen]
    scores = [float(s) for s in result.scores]

    outputs: list[tuple[Path, bytes]] = [(out, mask_png(mask))]
    if overlay is not None:
        picture = prompt_overlay(rgb, mask, coords, labels, parsed_box)
        outputs.append((overlay, png_bytes(picture)))
    if json_path is not None:
        record = {
            "image": str(image),
            "size": [height, width],
            "model": preset.name,
            "checkpoint": None if checkpoint is None else str(checkpoint),
            "chosen": chosen,
            "scores": scores,
            "masks": masks_to_coco_rle(result.masks),
            "prompt": {
                "points": coords,
                "labels": labels,
                "box": parsed_box,
                "multimask": not single,
            },
        }
        outputs.append((json_path, (json.dumps(record, indent=2) + "\n").encode("utf-8")))
    for path, data in outputs:
        atomic_write_bytes(path, data)

    shown = " ".join(f"{s:.3f}" for s in scores)
    area = int(np.count_nonzero(mask))
    written = ", ".join(str(path) for path, _ in outputs)
    typer.echo(
        f"scores [{shown}] -> chose mask {chosen} ({area} px, "
        f"{100.0 * area / (height * width):.1f}% of {width}x{height}); wrote {written}"
    )
