"""Result dataclasses of the prompted-segmentation protocols (:mod:`samkit.eval.protocols`).

Each result holds per-object arrays plus the aggregate numbers, and renders itself with
``summary()`` (the headline numbers) and ``to_dict()`` (summary plus per-object values,
JSON-ready). :mod:`samkit.eval.report` turns them into tables and JSON files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from samkit.errors import InvalidArgument

__all__ = [
    "BoxResult",
    "InteractiveResult",
    "NestedCoverageResult",
    "SinglePointResult",
]


class _ThresholdNotEvaluated(InvalidArgument, KeyError):
    """:meth:`InteractiveResult.noc_at` of a threshold that was not evaluated: an
    :class:`~samkit.errors.InvalidArgument` that is still the ``KeyError`` it always was."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True, eq=False)
class SinglePointResult:
    """Single-point protocol result.

    Attributes:
        miou_top: mean IoU of the top-scored of the three candidates.
        miou_oracle: mean IoU of the best of the three candidates.
        count: number of objects evaluated.
        iou_top: ``(count,)`` per-object IoU of the top-scored candidate.
        iou_oracle: ``(count,)`` per-object best-candidate IoU.
        image_ids: ``(count,)`` image id of each object.
        object_indices: ``(count,)`` index of each object's mask in its sample.
        ious: ``(count, K)`` IoU of every candidate, in the predictor's output order.
        scores: ``(count, K)`` the predicted IoU (``scores``) of every candidate.

    The properties below measure the IoU head, i.e. what the gap between ``miou_top`` and
    ``miou_oracle`` comes from: how often the top-scored candidate is the best one, how
    far the predicted IoUs are from the actual ones, and the mIoU of always keeping
    candidate ``k`` (a constant choice that a useful IoU head must beat).
    """

    miou_top: float
    miou_oracle: float
    count: int
    iou_top: NDArray[np.float64]
    iou_oracle: NDArray[np.float64]
    image_ids: tuple[str, ...]
    object_indices: NDArray[np.int64]
    ious: NDArray[np.float64]
    scores: NDArray[np.float64]

    protocol = "single-point"

    @property
    def top_is_best(self) -> float:
        """Fraction of objects whose top-scored candidate has the best IoU (ties count)."""
        return float(np.mean(self.iou_top >= self.iou_oracle))

    @property
    def score_mae(self) -> float:
        """Mean absolute error of the predicted IoU over all candidates."""
        return float(np.mean(np.abs(self.scores - self.ious)))

    @property
    def miou_per_candidate(self) -> tuple[float, ...]:
        """``(K,)`` mIoU of always keeping candidate ``k``."""
        return tuple(float(v) for v in self.ious.mean(axis=0))

    def summary(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "count": self.count,
            "miou_top": self.miou_top,
            "miou_oracle": self.miou_oracle,
            "top_is_best": self.top_is_best,
            "score_mae": self.score_mae,
            "miou_per_candidate": list(self.miou_per_candidate),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "per_object": {
                "image_id": list(self.image_ids),
                "object_index": [int(i) for i in self.object_indices],
                "iou_top": [float(v) for v in self.iou_top],
                "iou_oracle": [float(v) for v in self.iou_oracle],
                "ious": self.ious.tolist(),
                "scores": self.scores.tolist(),
            },
        }


@dataclass(frozen=True, eq=False)
class InteractiveResult:
    """Interactive protocol result.

    Attributes:
        thresholds: IoU thresholds, e.g. ``(0.85, 0.9)``.
        noc: mean number of clicks to reach each threshold (aligned with ``thresholds``;
            an object that never reaches it counts ``max_clicks``, as in RITM).
        max_clicks: click budget.
        count: number of objects evaluated.
        miou_per_click: ``(max_clicks,)`` mean IoU after click ``1..max_clicks``.
        ious: ``(count, max_clicks)`` per-object IoU after each click.
        image_ids: ``(count,)`` image id of each object.
        object_indices: ``(count,)`` index of each object's mask in its sample.
    """

    thresholds: tuple[float, ...]
    noc: tuple[float, ...]
    max_clicks: int
    count: int
    miou_per_click: NDArray[np.float64]
    ious: NDArray[np.float64]
    image_ids: tuple[str, ...]
    object_indices: NDArray[np.int64]

    protocol = "interactive"

    def noc_at(self, threshold: float) -> float:
        """Mean NoC at ``threshold`` (must be one of :attr:`thresholds`; otherwise an
        :class:`~samkit.errors.InvalidArgument` that is also a ``KeyError``)."""
        for t, v in zip(self.thresholds, self.noc, strict=True):
            if abs(t - threshold) < 1e-9:
                return v
        raise _ThresholdNotEvaluated(
            f"threshold {threshold} was not evaluated (have {self.thresholds})"
        )

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "protocol": self.protocol,
            "count": self.count,
            "max_clicks": self.max_clicks,
        }
        for t, v in zip(self.thresholds, self.noc, strict=True):
            out[f"noc@{round(t * 100):d}"] = v
        out["miou_per_click"] = [float(v) for v in self.miou_per_click]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "thresholds": list(self.thresholds),
            "per_object": {
                "image_id": list(self.image_ids),
                "object_index": [int(i) for i in self.object_indices],
                "ious": [[float(v) for v in row] for row in self.ious],
            },
        }


@dataclass(frozen=True, eq=False)
class BoxResult:
    """Box-prompt protocol result.

    Attributes:
        miou: mean IoU of the single-output mask.
        count: number of objects evaluated.
        ious: ``(count,)`` per-object IoU.
        image_ids: ``(count,)`` image id of each object.
        object_indices: ``(count,)`` index of each object's mask in its sample.
    """

    miou: float
    count: int
    ious: NDArray[np.float64]
    image_ids: tuple[str, ...]
    object_indices: NDArray[np.int64]

    protocol = "box"

    def summary(self) -> dict[str, Any]:
        return {"protocol": self.protocol, "count": self.count, "miou": self.miou}

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "per_object": {
                "image_id": list(self.image_ids),
                "object_index": [int(i) for i in self.object_indices],
                "iou": [float(v) for v in self.ious],
            },
        }


@dataclass(frozen=True, eq=False)
class NestedCoverageResult:
    """Do the three outputs of one ambiguous click cover subpart, part and whole?

    Attributes:
        threshold: IoU at which an output counts as matching a level.
        count: number of fully nested objects evaluated (whole, part and subpart present).
        whole, part, subpart: fraction of objects where some output matches that level.
        all_levels: fraction of objects where every level is matched (by any outputs).
        matched: ``(count, 3)`` bool, columns whole/part/subpart.
        image_ids: image id of each object.
    """

    threshold: float
    count: int
    whole: float
    part: float
    subpart: float
    all_levels: float
    matched: NDArray[np.bool_]
    image_ids: tuple[str, ...]

    protocol = "nested-coverage"

    def summary(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "count": self.count,
            "threshold": self.threshold,
            "whole": self.whole,
            "part": self.part,
            "subpart": self.subpart,
            "all_levels": self.all_levels,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "per_object": {
                "image_id": list(self.image_ids),
                "matched": [[bool(v) for v in row] for row in self.matched],
            },
        }
