"""Helpers shared by the CLI command modules: errors, number parsing, output checks."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from samkit.errors import OutputError, SamkitError

#: Exit status of every error the CLI reports as ``samkit: error: ...`` (same as usage errors).
EXIT_ERROR = 2

#: Set this environment variable to ``1`` to get the full traceback instead of one line.
DEBUG_ENV = "SAMKIT_DEBUG"


class CliError(SamkitError):
    """A command-line mistake the library itself cannot see (e.g. an unusable ``--device``)."""


def debug_enabled() -> bool:
    """Whether ``$SAMKIT_DEBUG`` asks for tracebacks (anything but empty/0/false/no/off)."""
    value = os.environ.get(DEBUG_ENV, "").strip().lower()
    return value not in ("", "0", "false", "no", "off")


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` folded onto a single line (class name if it has none)."""
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return text or type(exc).__name__


def parse_numbers(
    text: str, names: tuple[str, ...], option: str, error: type[SamkitError] = CliError
) -> tuple[float, ...]:
    """Parse ``"10,20"``-style option values into finite floats.

    Args:
        text: the raw option value.
        names: one name per expected number, used in messages (``("X", "Y")``).
        option: the option spelling, e.g. ``"--point"``, used in messages.
        error: the exception class to raise.

    Raises:
        ``error`` when the count is wrong or a part is not a finite number.
    """
    form = ",".join(names)
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != len(names):
        raise error(
            f"{option} expects {form} ({len(names)} numbers separated by commas), got {text!r}"
        )
    values = []
    for name, part in zip(names, parts, strict=True):
        try:
            value = float(part)
        except ValueError:
            raise error(f"{option} {text!r}: {name}={part!r} is not a number") from None
        if not math.isfinite(value):
            raise error(f"{option} {text!r}: {name} must be a finite number")
        values.append(value)
    return tuple(values)


def same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name the same file (after resolving links, or hard links)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(inputs: dict[str, Path | None], outputs: dict[str, Path | None]) -> None:
    """Refuse output paths that would clobber an input, collide, or cannot be written.

    Args:
        inputs: label -> path of each input file (e.g. ``{"IMAGE": image, "--checkpoint":
            checkpoint}``; ``None`` entries are skipped).
        outputs: option -> path of each requested output (``None`` entries are skipped).

    Raises:
        OutputError: an output is an input file, two outputs are the same file, the
            output is a directory or another file that is not a regular one (a device
            such as ``/dev/null``, a pipe), or its folder is missing or not writable.
    """
    seen: dict[str, Path] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        for label, source in inputs.items():
            if source is not None and same_file(path, source):
                raise OutputError(f"{option} {path} is the input {label}; refusing to overwrite it")
        for other_option, other in seen.items():
            if same_file(path, other):
                raise OutputError(f"{option} and {other_option} both name {path}")
        if path.is_dir():
            raise OutputError(f"cannot write {option} {path}: it is a directory")
        if path.exists() and not path.is_file():
            raise OutputError(f"cannot write {option} {path}: it is not a regular file")
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            raise OutputError(f"cannot write {option} {path}: folder {folder} does not exist")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write {option} {path}: folder {folder} is not writable")
        seen[option] = path


def open_dataset(data: Path, coco_annotations: Path | None) -> Any:
    """SA-1B folder (or COCO images folder + annotations file) -> a sequence of samples.

    Shared by ``samkit train`` and ``samkit eval``; raises :class:`CliError` with one clear
    line when the folder or file is missing, unreadable or holds no sample.
    """
    from samkit.data import CocoInstancesDataset, SA1BDataset

    if not data.exists():
        raise CliError(f"dataset folder not found: {data}")
    if not data.is_dir():
        raise CliError(f"DATA must be a folder, got the file {data}")
    if coco_annotations is None:
        dataset: Any = SA1BDataset(data)
        if len(dataset) == 0:
            raise CliError(
                f"empty dataset: no SA-1B samples (image + JSON of the same name) in {data}"
            )
        return dataset
    if not coco_annotations.is_file():
        raise CliError(f"--coco-annotations file not found: {coco_annotations}")
    try:
        dataset = CocoInstancesDataset(data, coco_annotations)
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise CliError(f"cannot read --coco-annotations {coco_annotations}: {exc}") from None
    if len(dataset) == 0:
        raise CliError(f"empty dataset: no annotated images in {coco_annotations}")
    return dataset
