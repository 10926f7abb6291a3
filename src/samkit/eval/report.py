"""Show evaluation results as rich tables and save them as JSON (atomically)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from samkit.errors import InvalidArgumentType
from samkit.eval.coco_ap import COCO_STAT_NAMES, CocoAPResult
from samkit.eval.protocols import (
    BoxResult,
    InteractiveResult,
    NestedCoverageResult,
    SinglePointResult,
)
from samkit.fileio import atomic_write_bytes

__all__ = ["EvalResult", "result_table", "print_results", "results_to_dict", "write_json"]

EvalResult = SinglePointResult | InteractiveResult | BoxResult | CocoAPResult | NestedCoverageResult

#: Clicks shown in the mIoU-per-click row of the interactive table.
_SHOWN_CLICKS = (1, 2, 3, 5, 10, 20)


def result_table(result: EvalResult) -> Table:
    """One rich table summarising ``result``."""
    unit = "detections" if isinstance(result, CocoAPResult) else "objects"
    table = Table(title=f"{result.protocol} ({result.count} {unit})", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    if isinstance(result, SinglePointResult):
        table.add_row("mIoU (top-scored mask)", f"{result.miou_top:.4f}")
        table.add_row("mIoU (oracle, best of 3)", f"{result.miou_oracle:.4f}")
        table.add_row("top-scored is the best", f"{result.top_is_best:.4f}")
        table.add_row("predicted IoU, mean abs. error", f"{result.score_mae:.4f}")
        per = result.miou_per_candidate
        names = " / ".join(str(i + 1) for i in range(len(per)))
        table.add_row(f"mIoU, always candidate {names}", " / ".join(f"{v:.3f}" for v in per))
    elif isinstance(result, InteractiveResult):
        for t, v in zip(result.thresholds, result.noc, strict=True):
            table.add_row(f"NoC@{round(t * 100):d}", f"{v:.2f}")
        for c in _SHOWN_CLICKS:
            if c <= result.max_clicks:
                table.add_row(
                    f"mIoU @ {c} click{'s' if c > 1 else ''}", f"{result.miou_per_click[c - 1]:.4f}"
                )
        if result.max_clicks not in _SHOWN_CLICKS:
            c = result.max_clicks
            table.add_row(f"mIoU @ {c} clicks", f"{result.miou_per_click[c - 1]:.4f}")
    elif isinstance(result, BoxResult):
        table.add_row("mIoU (box prompt)", f"{result.miou:.4f}")
    elif isinstance(result, NestedCoverageResult):
        for level in ("whole", "part", "subpart", "all_levels"):
            label = "all three" if level == "all_levels" else level
            table.add_row(
                f"{label} matched (IoU >= {result.threshold:g})", f"{getattr(result, level):.4f}"
            )
    elif isinstance(result, CocoAPResult):
        table.add_row("images", str(result.images))
        table.add_row("score", result.score_mode)
        for attr, key in COCO_STAT_NAMES:
            value = float(getattr(result, attr))
            # pycocotools reports -1 when there is no ground truth for the stat.
            table.add_row(f"mask {key}", "n/a" if value < 0 else f"{value:.4f}")
    else:  # pragma: no cover - guarded by the type
        raise InvalidArgumentType(f"not an evaluation result: {type(result).__name__}")
    return table


def print_results(results: Sequence[EvalResult], console: Console | None = None) -> None:
    """Print one table per result to ``console`` (default: stdout)."""
    console = console or Console()
    for result in results:
        console.print(result_table(result))


def results_to_dict(
    results: Sequence[EvalResult], meta: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """JSON-ready dict: ``{**meta, "results": {protocol: result.to_dict()}}``."""
    return {**(meta or {}), "results": {r.protocol: r.to_dict() for r in results}}


def write_json(
    path: str | Path, results: Sequence[EvalResult], meta: Mapping[str, Any] | None = None
) -> None:
    """Write :func:`results_to_dict` to ``path`` atomically (raises ``OutputError``)."""
    data = json.dumps(results_to_dict(results, meta), indent=2) + "\n"
    atomic_write_bytes(Path(path), data.encode("utf-8"))
