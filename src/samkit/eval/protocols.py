"""Prompted-segmentation evaluation protocols (SAM paper / RITM style).

Three protocols run a predictor over a dataset of :class:`~samkit.data.Sample` objects:

* :func:`single_point`: one click per object at the point farthest from the object's
  boundary (:func:`~samkit.eval.metrics.click_point_farthest_from_boundary`), three
  candidate masks (``multimask=True``). Two numbers are reported: the IoU of the mask the
  model ranks first (highest predicted IoU, "top") and the best IoU of the three
  candidates ("oracle", as in the SAM paper's ambiguity-aware evaluation).
* :func:`interactive`: the SAM paper's interactive evaluation (after RITM). Click 1 as
  above with ``multimask=True``, keeping the top-scored candidate; every further click is
  placed by :func:`~samkit.eval.metrics.next_click` at the centre of the largest error of
  the current prediction (positive on missed object, negative on spurious prediction),
  and decoded with *all* clicks so far, ``multimask=False`` and the previous chosen
  mask's low-resolution logits fed back as ``mask_input``. The IoU after each click is
  recorded; NoC@threshold and mIoU-per-click are derived from them. When the prediction
  matches the ground truth exactly (no error left to click on), the remaining clicks
  keep that IoU (``1.0``).
* :func:`box_prompt`: one box per object, the tight box of the ground-truth mask, single
  mask output.

Box convention: boxes are ``(x0, y0, x1, y1)`` in the *pixel-corner* frame with an
exclusive max, i.e. ``x0 = min column``, ``x1 = max column + 1`` (same for rows). Pixel
``(x, y)`` covers ``[x, x + 1) x [y, y + 1)``, so this is the box that exactly encloses
the mask's pixels — the same extent as an SA-1B / COCO ``bbox`` ``[x, y, w, h]`` with
``w = max - min + 1`` converted to XYXY. A mask touching the right edge yields
``x1 = W``, which the predictor accepts.

Every image is encoded once (``predictor.set_image``) and all its objects are evaluated
against that embedding. Objects whose mask has fewer than ``min_area`` pixels are skipped
(an empty mask cannot be clicked). ``max_objects`` caps the number of objects evaluated
*per image* (the first ones in dataset order); ``max_images`` caps the number of images.

The predictor only needs ``set_image(image)`` and ``predict(points=, labels=, box=,
mask_input=, multimask=)`` returning an object with ``masks (K, H, W)`` bool, ``scores
(K,)`` and ``low_res_logits (K, h, w)`` — :class:`samkit.ImagePredictor` or a test stub.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from samkit.data.types import Sample
from samkit.errors import InvalidArgument, InvalidDataset, InvalidMask
from samkit.eval.metrics import click_point_farthest_from_boundary, iou, mean_noc, next_click

# The result dataclasses live in :mod:`samkit.eval.results`; re-exported here so
# ``from samkit.eval.protocols import SinglePointResult`` (etc.) keeps working.
from samkit.eval.results import (
    BoxResult,
    InteractiveResult,
    NestedCoverageResult,
    SinglePointResult,
)

__all__ = [
    "BoxResult",
    "InteractiveResult",
    "NestedCoverageResult",
    "PredictorLike",
    "SinglePointResult",
    "box_prompt",
    "interactive",
    "mask_to_box",
    "nested_coverage",
    "single_point",
]


class PredictionLike(Protocol):
    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray


class PredictorLike(Protocol):
    """What the protocols need from a predictor (:class:`samkit.ImagePredictor` fits)."""

    def set_image(self, image: np.ndarray) -> Any: ...

    def predict(
        self,
        points: Any = None,
        labels: Any = None,
        box: Any = None,
        mask_input: Any = None,
        multimask: bool = True,
    ) -> PredictionLike: ...


# ------------------------------------------------------------------------ helpers
def mask_to_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight ``(x0, y0, x1, y1)`` box of a non-empty mask, exclusive max (see module doc).

    Raises:
        InvalidMask: (a ``ValueError``) if the mask is empty.
    """
    m = np.asarray(mask) != 0
    rows = np.flatnonzero(m.any(axis=1))
    cols = np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        raise InvalidMask("cannot take the box of an empty mask")
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _objects(
    dataset: Sequence[Sample],
    max_objects: int | None,
    min_area: int,
    max_images: int | None,
) -> Iterator[tuple[Sample, list[int]]]:
    """Yield each sample with the indices of the masks to evaluate (images without any
    evaluable object are skipped, so they are never encoded)."""
    if max_objects is not None and max_objects < 1:
        raise InvalidArgument(f"max_objects must be >= 1, got {max_objects}")
    if max_images is not None and max_images < 0:
        raise InvalidArgument(f"max_images must be >= 0, got {max_images}")
    n = len(dataset) if max_images is None else min(len(dataset), max_images)
    for i in range(n):
        sample = dataset[i]
        masks = np.asarray(sample.masks)
        if masks.ndim != 3:
            raise InvalidDataset(
                f"sample {sample.image_id}: masks must be (M, H, W), got {masks.shape}"
            )
        areas = np.count_nonzero(masks, axis=(1, 2))  # (M,), also for M = 0
        keep = [j for j in range(masks.shape[0]) if areas[j] >= max(min_area, 1)]
        if max_objects is not None:
            keep = keep[:max_objects]
        if keep:
            yield sample, keep


def _gt(sample: Sample, j: int) -> NDArray[np.bool_]:
    m = np.asarray(sample.masks[j])
    return m if m.dtype == np.bool_ else m != 0


def _empty_check(count: int) -> None:
    if count == 0:
        raise InvalidDataset("no object to evaluate (empty dataset or every mask below min_area)")


# ---------------------------------------------------------------------- protocols
def single_point(
    predictor: PredictorLike,
    dataset: Sequence[Sample],
    max_objects: int | None = None,
    min_area: int = 1,
    *,
    max_images: int | None = None,
) -> SinglePointResult:
    """Single-click mIoU, top-scored candidate and best-of-3 oracle (see module doc).

    Raises:
        InvalidDataset: (a ``ValueError``) if there is no object to evaluate.
    """
    all_ious: list[list[float]] = []
    all_scores: list[list[float]] = []
    ids: list[str] = []
    idx: list[int] = []
    for sample, keep in _objects(dataset, max_objects, min_area, max_images):
        predictor.set_image(sample.image)
        for j in keep:
            gt = _gt(sample, j)
            x, y = click_point_farthest_from_boundary(gt)
            pred = predictor.predict(points=[[x, y]], labels=[1], multimask=True)
            all_ious.append([iou(m, gt) for m in pred.masks])
            all_scores.append([float(s) for s in np.asarray(pred.scores).reshape(-1)])
            ids.append(sample.image_id)
            idx.append(j)
    _empty_check(len(all_ious))
    ious = np.asarray(all_ious, dtype=np.float64)
    scores = np.asarray(all_scores, dtype=np.float64)
    rows = np.arange(len(ious))
    top = ious[rows, scores.argmax(axis=1)]
    oracle = ious.max(axis=1)
    return SinglePointResult(
        miou_top=float(np.mean(top)),
        miou_oracle=float(np.mean(oracle)),
        count=len(top),
        iou_top=top,
        iou_oracle=oracle,
        image_ids=tuple(ids),
        object_indices=np.asarray(idx, dtype=np.int64),
        ious=ious,
        scores=scores,
    )


def _interactive_object(
    predictor: PredictorLike, gt: NDArray[np.bool_], max_clicks: int
) -> list[float]:
    """IoU after each of ``max_clicks`` simulated clicks on one object."""
    x, y = click_point_farthest_from_boundary(gt)
    points: list[list[float]] = [[x, y]]
    labels: list[int] = [1]
    pred = predictor.predict(points=points, labels=labels, multimask=True)
    k = int(np.argmax(pred.scores))
    mask = np.asarray(pred.masks[k]) != 0
    logits = np.asarray(pred.low_res_logits[k])
    ious = [iou(mask, gt)]
    while len(ious) < max_clicks:
        click = next_click(gt, mask, clicked=points)
        if click is None:  # perfect prediction: nothing left to correct
            ious.extend([ious[-1]] * (max_clicks - len(ious)))
            break
        cx, cy, positive = click
        points.append([cx, cy])
        labels.append(1 if positive else 0)
        pred = predictor.predict(
            points=points, labels=labels, mask_input=logits[None], multimask=False
        )
        mask = np.asarray(pred.masks[0]) != 0
        logits = np.asarray(pred.low_res_logits[0])
        ious.append(iou(mask, gt))
    return ious


def interactive(
    predictor: PredictorLike,
    dataset: Sequence[Sample],
    max_clicks: int = 20,
    thresholds: Sequence[float] = (0.85, 0.9),
    *,
    max_objects: int | None = None,
    min_area: int = 1,
    max_images: int | None = None,
) -> InteractiveResult:
    """Interactive NoC and mIoU-per-click (see module doc).

    Raises:
        InvalidArgument: (a ``ValueError``) if ``max_clicks < 1``.
        InvalidDataset: (a ``ValueError``) if there is no object to evaluate.
    """
    if max_clicks < 1:
        raise InvalidArgument(f"max_clicks must be >= 1, got {max_clicks}")
    rows: list[list[float]] = []
    ids: list[str] = []
    idx: list[int] = []
    for sample, keep in _objects(dataset, max_objects, min_area, max_images):
        predictor.set_image(sample.image)
        for j in keep:
            rows.append(_interactive_object(predictor, _gt(sample, j), max_clicks))
            ids.append(sample.image_id)
            idx.append(j)
    _empty_check(len(rows))
    ious = np.asarray(rows, dtype=np.float64).reshape(len(rows), max_clicks)
    ts = tuple(float(t) for t in thresholds)
    return InteractiveResult(
        thresholds=ts,
        noc=tuple(mean_noc(list(ious), t, max_clicks) for t in ts),
        max_clicks=max_clicks,
        count=len(rows),
        miou_per_click=ious.mean(axis=0),
        ious=ious,
        image_ids=tuple(ids),
        object_indices=np.asarray(idx, dtype=np.int64),
    )


def box_prompt(
    predictor: PredictorLike,
    dataset: Sequence[Sample],
    max_objects: int | None = None,
    min_area: int = 1,
    *,
    max_images: int | None = None,
) -> BoxResult:
    """mIoU from the tight ground-truth box, single-mask output (see module doc).

    Raises:
        InvalidDataset: (a ``ValueError``) if there is no object to evaluate.
    """
    vals: list[float] = []
    ids: list[str] = []
    idx: list[int] = []
    for sample, keep in _objects(dataset, max_objects, min_area, max_images):
        predictor.set_image(sample.image)
        for j in keep:
            gt = _gt(sample, j)
            pred = predictor.predict(box=list(mask_to_box(gt)), multimask=False)
            vals.append(iou(pred.masks[0], gt))
            ids.append(sample.image_id)
            idx.append(j)
    _empty_check(len(vals))
    return BoxResult(
        miou=float(np.mean(vals)),
        count=len(vals),
        ious=np.asarray(vals, dtype=np.float64),
        image_ids=tuple(ids),
        object_indices=np.asarray(idx, dtype=np.int64),
    )


# ------------------------------------------------------------- nested ambiguity
def nested_objects(sample: Sample) -> list[tuple[int, int, int]]:
    """Mask indices ``(whole, part, subpart)`` of each object of ``sample`` that has all
    three levels (``sample.levels``: 0 whole, 1 part, 2 subpart; a 0 starts an object)."""
    if sample.levels is None:
        return []
    out: list[tuple[int, int, int]] = []
    current: dict[int, int] = {}
    for i, level in enumerate(np.asarray(sample.levels).tolist()):
        if level == 0:
            current = {}
        current[int(level)] = i
        if level == 2 and 0 in current and 1 in current:
            out.append((current[0], current[1], i))
    return out


def nested_coverage(
    predictor: PredictorLike,
    dataset: Sequence[Sample],
    threshold: float = 0.8,
    *,
    max_images: int | None = None,
) -> NestedCoverageResult:
    """Click the point of the *subpart* farthest from its boundary (inside part and
    whole too, so the click is ambiguous between three valid masks), ask for the three
    outputs, and record which levels some output matches at IoU >= ``threshold``.

    Only objects with all three levels are evaluated (synthetic data with ``levels``).

    Raises:
        InvalidDataset: (a ``ValueError``) if no sample has a fully nested object.
    """
    rows: list[list[bool]] = []
    ids: list[str] = []
    for n, sample in enumerate(dataset):
        if max_images is not None and n >= max_images:
            break
        objects = nested_objects(sample)
        if not objects:
            continue
        predictor.set_image(sample.image)
        for levels in objects:
            gts = [_gt(sample, j) for j in levels]
            x, y = click_point_farthest_from_boundary(gts[2])
            pred = predictor.predict(points=[[x, y]], labels=[1], multimask=True)
            rows.append([any(iou(m, gt) >= threshold for m in pred.masks) for gt in gts])
            ids.append(sample.image_id)
    if not rows:
        raise InvalidDataset("no fully nested object (whole, part and subpart) to evaluate")
    matched = np.asarray(rows, dtype=bool)
    return NestedCoverageResult(
        threshold=float(threshold),
        count=len(rows),
        whole=float(matched[:, 0].mean()),
        part=float(matched[:, 1].mean()),
        subpart=float(matched[:, 2].mean()),
        all_levels=float(matched.all(axis=1).mean()),
        matched=matched,
        image_ids=tuple(ids),
    )
