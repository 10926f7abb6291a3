"""Pure-numpy segmentation metrics for evaluating Segment Anything models.

Conventions used throughout this module:

* **Masks** are boolean arrays of shape ``(H, W)`` (row ``y``, column ``x``); batched or
  video masks are ``(N, H, W)`` / ``(T, H, W)``. Non-boolean arrays are accepted and
  converted with ``!= 0`` (so ``{0, 1}`` and ``{0, 255}`` masks work as expected).
* **Points** are returned as ``(x, y)`` integer *pixel* coordinates: ``x`` is the column
  index and ``y`` the row index, i.e. ``mask[y, x]`` is the clicked pixel. This is the
  order SAM prompts use (``point_coords`` are ``(x, y)``). Pixel ``(x, y)`` has its centre
  at ``(x, y)``; add ``0.5`` if a caller works in a pixel-corner frame.

What is implemented, and which protocol each follows:

* :func:`iou`, :func:`batch_iou`, :func:`miou`: region Jaccard (DAVIS ``J``). The IoU of
  two empty masks is defined as ``1.0`` (as in the DAVIS toolkit's ``db_eval_iou``).
* :func:`click_point_farthest_from_boundary`: the single-point protocol's click (RITM,
  SAM): the in-mask pixel farthest from the mask boundary.
* :func:`next_click`: the interactive protocol's next click (RITM ``Clicker``): the
  centre of the largest error region.
* :func:`noc`, :func:`mean_noc`: number of clicks to reach an IoU threshold (RITM).
* :func:`boundary_f_measure`, :func:`seg2bmap`: DAVIS boundary ``F``.
* :func:`j_and_f`: DAVIS ``J``, ``F`` and ``J&F`` over a video sequence of one object.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from samkit.errors import InvalidArgument, InvalidMask

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

BoolMask = NDArray[np.bool_]


# ------------------------------------------------------------------------- helpers
def _as_mask(a: ArrayLike, ndim: int, name: str) -> BoolMask:
    """Return ``a`` as a boolean array with exactly ``ndim`` dimensions (``!= 0``)."""
    arr = np.asarray(a)
    if arr.ndim != ndim:
        raise InvalidMask(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if arr.dtype != np.bool_:
        arr = arr != 0
    return arr


def _check_same_shape(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape != b.shape:
        raise InvalidMask(f"{names} must have the same shape, got {a.shape} and {b.shape}")


def _padded_edt(mask: BoolMask) -> NDArray[np.float64]:
    """Euclidean distance of every pixel of ``mask`` to the nearest background pixel.

    The mask is padded with one pixel of background on every side before the transform
    (and the padding is cropped off afterwards), so the image border counts as boundary:
    a foreground pixel touching the border has distance ``1``. Background pixels get ``0``.
    This is exactly RITM's ``np.pad(...)`` + ``cv2.distanceTransform(DIST_L2, 0)``.
    """
    padded = np.pad(mask, 1, mode="constant", constant_values=False)
    return ndimage.distance_transform_edt(padded)[1:-1, 1:-1]


def _argmax_xy(dist: NDArray[np.float64]) -> tuple[int, int]:
    """``(x, y)`` of the first maximum of ``dist`` in row-major order."""
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(x), int(y)


# ----------------------------------------------------------------------------- IoU
def iou(pred: ArrayLike, gt: ArrayLike) -> float:
    """Intersection over union of two ``(H, W)`` boolean masks.

    Returns ``|pred & gt| / |pred | gt|``. By convention the IoU of two *empty* masks is
    ``1.0`` (a correct prediction of "nothing"), matching DAVIS ``db_eval_iou``.

    Raises:
        InvalidMask: (a ``ValueError``) if the masks are not 2-D or differ in shape.
    """
    p = _as_mask(pred, 2, "pred")
    g = _as_mask(gt, 2, "gt")
    _check_same_shape(p, g, "pred and gt")
    union = int(np.count_nonzero(p | g))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(p & g)) / union


def batch_iou(preds: ArrayLike, gts: ArrayLike) -> NDArray[np.float64]:
    """Per-item IoU of two ``(N, H, W)`` boolean mask stacks; returns shape ``(N,)``.

    Same definition as :func:`iou` (two empty masks give ``1.0``).

    Raises:
        InvalidMask: (a ``ValueError``) if the stacks are not 3-D or differ in shape.
    """
    p = _as_mask(preds, 3, "preds")
    g = _as_mask(gts, 3, "gts")
    _check_same_shape(p, g, "preds and gts")
    inter = np.count_nonzero(p & g, axis=(1, 2)).astype(np.float64)
    union = np.count_nonzero(p | g, axis=(1, 2)).astype(np.float64)
    out = np.ones(p.shape[0], dtype=np.float64)
    nz = union > 0
    out[nz] = inter[nz] / union[nz]
    return out


def miou(ious: Sequence[float] | ArrayLike) -> float:
    """Mean of a collection of IoU values (e.g. one per object or per image).

    Raises:
        InvalidArgument: (a ``ValueError``) if ``ious`` is empty.
    """
    arr = np.asarray(ious, dtype=np.float64).ravel()
    if arr.size == 0:
        raise InvalidArgument("miou of an empty collection is undefined")
    return float(arr.mean())


# -------------------------------------------------------------------------- clicks
def click_point_farthest_from_boundary(mask: ArrayLike) -> tuple[int, int]:
    """Single-point protocol click: the in-mask pixel farthest from the mask boundary.

    The distance is the Euclidean distance transform
    (:func:`scipy.ndimage.distance_transform_edt`) of the mask padded with one pixel of
    background, so the *image border counts as boundary* (RITM / SAM convention): an
    object cut by the image border is clicked away from the border too. Ties are broken
    deterministically by taking the first maximum in row-major order (smallest ``y``, then
    smallest ``x``), as ``np.argmax`` / RITM's ``np.where(...)[0]`` do.

    Args:
        mask: ``(H, W)`` boolean mask of the object.

    Returns:
        ``(x, y)`` pixel coordinates (``mask[y, x]`` is ``True``).

    Raises:
        InvalidMask: (a ``ValueError``) if the mask is empty or not 2-D.
    """
    m = _as_mask(mask, 2, "mask")
    if not m.any():
        raise InvalidMask("cannot pick a click inside an empty mask")
    return _argmax_xy(_padded_edt(m))


def next_click(
    gt: ArrayLike, pred: ArrayLike, clicked: Iterable[Sequence[float]] | None = None
) -> tuple[int, int, bool] | None:
    """Interactive protocol: the next simulated click, at the centre of the largest error.

    Follows RITM's ``Clicker``: with ``FN = gt & ~pred`` (missed object) and
    ``FP = pred & ~gt`` (spurious prediction), take the padded Euclidean distance transform
    of each (image border counts as boundary, see
    :func:`click_point_farthest_from_boundary`). The click goes at the maximum-distance
    pixel of FN if FN's maximum distance is *strictly* larger than FP's (a positive click),
    otherwise at FP's maximum (a negative click); on a tie the click is negative, as in
    RITM (``is_positive = fn_max_dist > fp_max_dist``). Ties between pixels are broken by
    the first maximum in row-major order. As RITM's clicker, pixels already clicked
    (``clicked``) get distance 0, so a click the model ignored is not repeated.

    Args:
        gt: ``(H, W)`` boolean ground-truth mask.
        pred: ``(H, W)`` boolean predicted mask (e.g. after the previous click; all
            ``False`` before the first click).
        clicked: the ``(x, y)`` pixels clicked so far (positive and negative), e.g. the
            points given to the model; ``None``: no click yet.

    Returns:
        ``(x, y, is_positive)`` with ``(x, y)`` pixel coordinates, or ``None`` when
        ``pred == gt`` everywhere (no error left to correct).

    Raises:
        InvalidMask: (a ``ValueError``) if the masks are not 2-D or differ in shape.
    """
    g = _as_mask(gt, 2, "gt")
    p = _as_mask(pred, 2, "pred")
    _check_same_shape(g, p, "gt and pred")
    fn = g & ~p
    fp = p & ~g
    if not fn.any() and not fp.any():
        return None
    fn_dt = _padded_edt(fn)
    fp_dt = _padded_edt(fp)
    for point in clicked or ():
        x, y = (int(round(float(v))) for v in point)
        if 0 <= y < fn_dt.shape[0] and 0 <= x < fn_dt.shape[1]:
            fn_dt[y, x] = fp_dt[y, x] = 0.0
    is_positive = bool(fn_dt.max() > fp_dt.max())
    x, y = _argmax_xy(fn_dt if is_positive else fp_dt)
    return x, y, is_positive


# ----------------------------------------------------------------------------- NoC
def noc(ious_per_click: Sequence[float] | ArrayLike, threshold: float, max_clicks: int = 20) -> int:
    """Number of clicks needed to reach ``IoU >= threshold`` (NoC@threshold).

    ``ious_per_click[i]`` is the IoU after click ``i + 1``. Only the first ``max_clicks``
    entries are considered. Following RITM (``_get_noc``), if the threshold is never
    reached the result is ``max_clicks`` (not ``max_clicks + 1``, and not the number of
    IoUs supplied) — so an object that is never segmented well counts the same as one
    reaching the threshold exactly at the last click.

    Args:
        ious_per_click: IoU after clicks ``1..N``.
        threshold: IoU threshold, e.g. ``0.85`` or ``0.9``.
        max_clicks: click budget (RITM / SAM use 20).

    Returns:
        An integer in ``[1, max_clicks]``.

    Raises:
        InvalidArgument: (a ``ValueError``) if ``max_clicks < 1``.
    """
    if max_clicks < 1:
        raise InvalidArgument(f"max_clicks must be >= 1, got {max_clicks}")
    arr = np.asarray(ious_per_click, dtype=np.float64).ravel()[:max_clicks]
    reached = arr >= threshold
    if not reached.any():
        return max_clicks
    return int(np.argmax(reached)) + 1


def mean_noc(
    ious_per_object: Sequence[Sequence[float] | ArrayLike],
    threshold: float,
    max_clicks: int = 20,
) -> float:
    """Mean of :func:`noc` over objects (each entry: one object's IoU-after-each-click).

    Raises:
        InvalidArgument: (a ``ValueError``) if there are no objects.
    """
    if len(ious_per_object) == 0:
        raise InvalidArgument("mean_noc over zero objects is undefined")
    return float(np.mean([noc(o, threshold, max_clicks) for o in ious_per_object]))


# ------------------------------------------------------------------- boundary F
def seg2bmap(seg: ArrayLike) -> BoolMask:
    """DAVIS / BSDS one-pixel-wide boundary map of an ``(H, W)`` mask.

    Same semantics as ``seg2bmap`` of the DAVIS toolkit (D. Martin's BSDS code) at full
    resolution: a pixel is a boundary pixel if its value differs from its right (east),
    bottom (south) or bottom-right (south-east) neighbour. In the last row only the east
    neighbour is compared, in the last column only the south neighbour, and the
    bottom-right pixel is never a boundary. Boundaries thus sit half a pixel towards the
    origin, and foreground touching the image border does *not* create boundary there (a
    full mask has no boundary at all).
    """
    s = _as_mask(seg, 2, "seg")
    e = np.zeros_like(s)
    so = np.zeros_like(s)
    se = np.zeros_like(s)
    e[:, :-1] = s[:, 1:]
    so[:-1, :] = s[1:, :]
    se[:-1, :-1] = s[1:, 1:]
    b = (s ^ e) | (s ^ so) | (s ^ se)
    b[-1, :] = s[-1, :] ^ e[-1, :]
    b[:, -1] = s[:, -1] ^ so[:, -1]
    b[-1, -1] = False
    return b


def disk(radius: int) -> BoolMask:
    """Disk structuring element ``x**2 + y**2 <= radius**2`` of shape ``(2r+1, 2r+1)``.

    Identical to ``skimage.morphology.disk`` for integer radii.
    """
    r = int(radius)
    if r < 0:
        raise InvalidArgument(f"radius must be >= 0, got {radius}")
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx * xx + yy * yy) <= r * r


def _bound_pix(bound_th: float, shape: tuple[int, ...]) -> int:
    """Tolerance radius in pixels, DAVIS style."""
    if bound_th < 0:
        raise InvalidArgument(f"bound_th must be >= 0, got {bound_th}")
    if bound_th >= 1:
        return int(math.floor(bound_th))
    return int(math.ceil(bound_th * math.hypot(*shape)))


def boundary_f_measure(pred: ArrayLike, gt: ArrayLike, bound_th: float = 0.008) -> float:
    """DAVIS boundary F-measure between two ``(H, W)`` masks.

    Boundaries are computed with :func:`seg2bmap`. The matching tolerance in pixels is
    ``ceil(bound_th * sqrt(H**2 + W**2))`` if ``bound_th < 1`` (DAVIS default ``0.008`` of
    the image diagonal), else ``bound_th`` itself (taken as an integer radius; a
    fractional value ``>= 1`` is floored — the DAVIS toolkit does not define that case
    meaningfully). A predicted boundary pixel is matched if a ground-truth boundary pixel
    lies within the tolerance disk (:func:`disk`) and vice versa; precision and recall are
    the matched fractions and ``F = 2PR / (P + R)``.

    Empty-boundary conventions (DAVIS ``db_eval_boundary``): both boundaries empty gives
    ``P = R = 1`` hence ``F = 1``; only the prediction's empty gives ``P = 1, R = 0`` and
    only the ground truth's empty gives ``P = 0, R = 1``, hence ``F = 0`` in both cases;
    ``P + R == 0`` gives ``F = 0``. Note that "boundary empty" is not "mask empty": by the
    :func:`seg2bmap` definition a mask covering the whole image has no boundary either.

    Raises:
        InvalidMask: (a ``ValueError``) if the masks are not 2-D or differ in shape.
        InvalidArgument: (a ``ValueError``) if ``bound_th < 0``.
    """
    p = _as_mask(pred, 2, "pred")
    g = _as_mask(gt, 2, "gt")
    _check_same_shape(p, g, "pred and gt")
    radius = _bound_pix(bound_th, p.shape)

    pred_b = seg2bmap(p)
    gt_b = seg2bmap(g)
    n_pred = int(np.count_nonzero(pred_b))
    n_gt = int(np.count_nonzero(gt_b))

    if n_pred == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    elif n_pred == 0:
        precision, recall = 1.0, 0.0
    elif n_gt == 0:
        precision, recall = 0.0, 1.0
    else:
        if radius > 0:
            # Dilation by disk(radius) is "within Euclidean distance radius of a boundary
            # pixel": one exact distance transform (O(H W)) instead of a dilation with a
            # (2r+1)^2 element (4 s at 1080p, r = 18). sqrt(k) <= r exactly when k <= r^2.
            pred_dil = ndimage.distance_transform_edt(~pred_b) <= radius
            gt_dil = ndimage.distance_transform_edt(~gt_b) <= radius
        else:
            pred_dil, gt_dil = pred_b, gt_b
        precision = int(np.count_nonzero(pred_b & gt_dil)) / n_pred
        recall = int(np.count_nonzero(gt_b & pred_dil)) / n_gt

    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


# ---------------------------------------------------------------------------- J&F
@dataclass(frozen=True)
class JFResult:
    """DAVIS region (``J``) and boundary (``F``) scores of one object over a sequence.

    Attributes:
        j_mean: mean over frames of the per-frame IoU.
        f_mean: mean over frames of the per-frame boundary F-measure.
        jf_mean: ``(j_mean + f_mean) / 2``.
        j_per_frame: per-frame IoU, one entry per evaluated frame.
        f_per_frame: per-frame boundary F, one entry per evaluated frame.
    """

    j_mean: float
    f_mean: float
    jf_mean: float
    j_per_frame: tuple[float, ...]
    f_per_frame: tuple[float, ...]


def j_and_f(
    preds: ArrayLike,
    gts: ArrayLike,
    bound_th: float = 0.008,
    *,
    exclude_first_last: bool = False,
) -> JFResult:
    """DAVIS ``J``, ``F`` and ``J&F`` of one object over a video.

    Args:
        preds: ``(T, H, W)`` boolean predicted masks, one per frame.
        gts: ``(T, H, W)`` boolean ground-truth masks.
        bound_th: boundary tolerance, see :func:`boundary_f_measure`.
        exclude_first_last: drop the first and last frames before scoring, as the DAVIS
            2017 *semi-supervised* evaluation does (the first frame's mask is given to the
            method). Off by default: every frame passed in is scored. Requires ``T >= 3``.

    For several objects, call once per object and average the per-object means (DAVIS
    averages ``J`` and ``F`` over objects, then ``J&F = (J + F) / 2``).

    Raises:
        InvalidMask: (a ``ValueError``) if the stacks are not 3-D or differ in shape.
        InvalidArgument: (a ``ValueError``) if no frame is left.
    """
    p = _as_mask(preds, 3, "preds")
    g = _as_mask(gts, 3, "gts")
    _check_same_shape(p, g, "preds and gts")
    if exclude_first_last:
        p, g = p[1:-1], g[1:-1]
    if p.shape[0] == 0:
        raise InvalidArgument("no frames to evaluate")
    j = batch_iou(p, g)
    f = np.array([boundary_f_measure(pf, gf, bound_th) for pf, gf in zip(p, g, strict=True)])
    j_mean = float(j.mean())
    f_mean = float(f.mean())
    return JFResult(
        j_mean=j_mean,
        f_mean=f_mean,
        jf_mean=(j_mean + f_mean) / 2.0,
        j_per_frame=tuple(float(v) for v in j),
        f_per_frame=tuple(float(v) for v in f),
    )
