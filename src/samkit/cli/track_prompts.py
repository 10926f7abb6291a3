"""Prompts of ``samkit track``: ``--point``/``--negative`` ``FRAME:X,Y[:OBJ]`` clicks and
``--box`` ``FRAME:X0,Y0,X1,Y1[:OBJ]`` boxes parsed into one prompt per object and frame."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from samkit.cli.common import parse_numbers
from samkit.errors import InvalidPrompt

__all__ = ["ObjectPrompt", "parse_prompts"]


@dataclass
class ObjectPrompt:
    """The prompt of one object on one frame (video pixels)."""

    points: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: list[float] | None = None


def _parse_int(part: str, name: str, option: str, text: str) -> int:
    try:
        value = int(part.strip())
    except ValueError:
        raise InvalidPrompt(
            f"{option} {text!r}: {name}={part.strip()!r} is not an integer"
        ) from None
    return value


def _parse_spec(text: str, option: str, names: tuple[str, ...]) -> tuple[int, list[float], int]:
    """``FRAME:NUMBERS[:OBJ]`` -> ``(frame, numbers, obj)``."""
    form = f"FRAME:{','.join(names)}[:OBJ]"
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise InvalidPrompt(f"{option} expects {form}, got {text!r}")
    frame = _parse_int(parts[0], "FRAME", option, text)
    if frame < 0:
        raise InvalidPrompt(f"{option} {text!r}: FRAME must be >= 0")
    if len(parts[1].split(",")) != len(names):
        raise InvalidPrompt(
            f"{option} expects {form} ({len(names)} numbers after FRAME:), got {text!r}"
        )
    numbers = list(parse_numbers(parts[1], names, option, InvalidPrompt))
    obj = _parse_int(parts[2], "OBJ", option, text) if len(parts) == 3 else 1
    return frame, numbers, obj


def parse_prompts(
    points: list[str], negatives: list[str], boxes: list[str]
) -> dict[tuple[int, int], ObjectPrompt]:
    """Option strings -> ``{(frame, obj): ObjectPrompt}``; positive clicks come first.

    Raises :class:`InvalidPrompt` for a malformed spec, two boxes for one object on one
    frame, an inverted box, or no prompt at all.
    """
    prompts: dict[tuple[int, int], ObjectPrompt] = defaultdict(ObjectPrompt)
    for option, values, label in (("--point", points, 1), ("--negative", negatives, 0)):
        for text in values:
            frame, xy, obj = _parse_spec(text, option, ("X", "Y"))
            prompts[(frame, obj)].points.append(xy)
            prompts[(frame, obj)].labels.append(label)
    for text in boxes:
        frame, box, obj = _parse_spec(text, "--box", ("X0", "Y0", "X1", "Y1"))
        if box[2] < box[0] or box[3] < box[1]:
            raise InvalidPrompt(f"--box {text!r}: needs X0 <= X1 and Y0 <= Y1")
        entry = prompts[(frame, obj)]
        if entry.box is not None:
            raise InvalidPrompt(f"--box {text!r}: object {obj} already has a box on frame {frame}")
        entry.box = box
    if not prompts:
        raise InvalidPrompt(
            "no prompt: give at least one --point FRAME:X,Y, --negative FRAME:X,Y "
            "or --box FRAME:X0,Y0,X1,Y1"
        )
    return dict(sorted(prompts.items()))
