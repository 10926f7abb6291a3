"""``samkit models`` and ``samkit download``: the model registry and its weights."""

from __future__ import annotations

import os
from typing import Annotated

import torch
import typer
from rich.console import Console
from rich.filesize import decimal
from rich.table import Table

import samkit
from samkit.build import build_model
from samkit.configs import ModelPreset
from samkit.weights import (
    bundled_path,
    cache_dir,
    cached_path,
    download,
    resolve_weights,
    verify_file,
)


def parameter_count(preset: ModelPreset) -> int | None:
    """Number of parameters of ``preset``'s architecture, of any family (SAM 1 or SAM 2),
    built on the meta device: no memory, no weights read.

    Returns ``None`` if the architecture cannot be built.
    """
    try:
        with torch.device("meta"):
            model = build_model(preset, device="meta")
    except Exception:  # a broken preset must not break the listing
        return None
    return sum(p.numel() for p in model.parameters())


def human_count(n: int | None) -> str:
    """``93735472`` -> ``"93.7M"``; ``None`` -> ``"?"``."""
    if n is None:
        return "?"
    for factor, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= factor:
            return f"{n / factor:.1f}{suffix}"
    return str(n)


def weights_status(preset: ModelPreset) -> str:
    """``"bundled"``, ``"yes"`` (in the cache), ``"bad size"`` (a cached file of the
    wrong size), ``"no"``, or ``"-"`` (no published weights)."""
    spec = preset.weights
    if spec is None:
        return "-"
    bundled = bundled_path(spec)
    if bundled is not None:
        return "bundled" if bundled.is_file() else "missing"
    path = cached_path(spec)
    if not path.is_file():
        return "no"
    if spec.size is not None and path.stat().st_size != spec.size:
        return "bad size"  # a partial or foreign file: samkit download says what to do
    return "yes"


def list_models_command() -> None:
    """List the registered models: aliases, size, official weights and whether they are cached.

    Reads nothing from the network; the cache folder is $SAMKIT_CACHE (default
    ~/.cache/samkit).
    """
    table = Table()
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("aliases")
    table.add_column("params", justify="right", no_wrap=True)
    table.add_column("weights file", overflow="fold")
    table.add_column("size", justify="right", no_wrap=True)
    table.add_column("cached", no_wrap=True)
    table.add_column("description", overflow="fold")
    for name in samkit.list_models():
        preset = samkit.get_preset(name)
        spec = preset.weights
        table.add_row(
            preset.name,
            ", ".join(preset.aliases) or "-",
            human_count(parameter_count(preset)),
            spec.filename if spec is not None else "-",
            decimal(spec.size) if spec is not None and spec.size is not None else "?",
            weights_status(preset),
            preset.description or "-",
        )
    # Created here so that redirected/captured stdout is honoured; when piped, do not
    # squeeze the table into rich's default 80 columns.
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=200)
    console.print(table)
    console.print(f"cache: {cache_dir()}", highlight=False, soft_wrap=True)


def download_command(
    name: Annotated[str, typer.Argument(help="Model name or alias (see `samkit models`).")],
    force: Annotated[
        bool,
        typer.Option("--force", "-f", help="Download again even if the file is already cached."),
    ] = False,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show a progress bar on stderr.")
    ] = True,
) -> None:
    """Download a model's official weights into the cache and print the file's path.

    The file is verified (size and sha256 when known) and moved into place atomically.
    The cache folder is $SAMKIT_CACHE (default ~/.cache/samkit). Without network, fetch the
    URL shown in the error message yourself and place the file at the path it names.
    """
    preset = samkit.get_preset(name)
    spec = preset.weights
    if spec is None:
        raise samkit.CheckpointError(f"model {preset.name!r} has no published weights")
    if force and bundled_path(spec) is None:
        path = download(spec, cached_path(spec), progress=progress)
    else:
        path = resolve_weights(spec, progress=progress)
        if bundled_path(spec) is None:
            verify_file(path, spec)  # a file already in the cache is hashed too
    typer.echo(str(path))
