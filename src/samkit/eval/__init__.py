"""Evaluation: pure-numpy metrics (IoU, clicks, NoC, DAVIS J&F) and the paper protocols."""

from __future__ import annotations

from samkit.eval.metrics import (
    JFResult,
    batch_iou,
    boundary_f_measure,
    click_point_farthest_from_boundary,
    disk,
    iou,
    j_and_f,
    mean_noc,
    miou,
    next_click,
    noc,
    seg2bmap,
)
from samkit.eval.protocols import (
    BoxResult,
    InteractiveResult,
    SinglePointResult,
    box_prompt,
    interactive,
    single_point,
)

__all__ = [
    "BoxResult",
    "InteractiveResult",
    "SinglePointResult",
    "box_prompt",
    "interactive",
    "single_point",
    "JFResult",
    "batch_iou",
    "boundary_f_measure",
    "click_point_farthest_from_boundary",
    "disk",
    "iou",
    "j_and_f",
    "mean_noc",
    "miou",
    "next_click",
    "noc",
    "seg2bmap",
]
