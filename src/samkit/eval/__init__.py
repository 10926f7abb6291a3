"""Evaluation: pure-numpy metrics (IoU, clicks, NoC, DAVIS J&F), the paper protocols,
COCO mask AP from detector boxes, and the video protocol (:mod:`samkit.eval.video`)."""

from __future__ import annotations

from samkit.eval.coco_ap import CocoAPResult, coco_mask_ap
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
    NestedCoverageResult,
    SinglePointResult,
    box_prompt,
    interactive,
    nested_coverage,
    nested_objects,
    single_point,
)
from samkit.eval.video import VideoEvalResult, evaluate_video

__all__ = [
    "BoxResult",
    "CocoAPResult",
    "InteractiveResult",
    "NestedCoverageResult",
    "SinglePointResult",
    "box_prompt",
    "coco_mask_ap",
    "interactive",
    "nested_coverage",
    "nested_objects",
    "single_point",
    "VideoEvalResult",
    "evaluate_video",
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
