"""Evaluation utilities: pure-numpy metrics (IoU, clicks, NoC, DAVIS J&F)."""

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

__all__ = [
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
