"""Unit tests for ``samkit.eval.metrics`` on hand-built masks with closed-form answers.

Points are ``(x, y)`` pixel coordinates (``mask[y, x]``); masks are ``(H, W)`` bool.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import ndimage

from samkit.eval import (
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


def rect(h: int, w: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """(h, w) mask with the inclusive rectangle x0..x1, y0..y1 set."""
    m = np.zeros((h, w), dtype=bool)
    m[y0 : y1 + 1, x0 : x1 + 1] = True
    return m


def brute_force_padded_dist(mask: np.ndarray) -> np.ndarray:
    """Distance of each pixel to the nearest background pixel of the 1-px padded mask."""
    padded = np.pad(mask, 1)
    by, bx = np.nonzero(~padded)
    out = np.zeros(mask.shape)
    for y, x in zip(*np.nonzero(mask), strict=True):
        out[y, x] = np.sqrt(((by - (y + 1)) ** 2 + (bx - (x + 1)) ** 2).min())
    return out


# ---------------------------------------------------------------------------- IoU
def test_iou_overlapping_rectangles():
    # A: 10x10 at (0..9, 0..9); B: 10x10 at (5..14, 5..14): inter 25, union 175.
    a = rect(20, 20, 0, 0, 9, 9)
    b = rect(20, 20, 5, 5, 14, 14)
    assert iou(a, b) == pytest.approx(25 / 175)
    assert iou(b, a) == pytest.approx(25 / 175)
    assert iou(a, a) == 1.0
    assert iou(a, rect(20, 20, 12, 12, 15, 15)) == 0.0


def test_iou_empty_conventions_and_dtypes():
    e = np.zeros((4, 5), dtype=bool)
    assert iou(e, e) == 1.0
    assert iou(e, rect(4, 5, 0, 0, 1, 1)) == 0.0
    # uint8 {0, 255} masks are accepted
    a = rect(8, 8, 0, 0, 3, 3).astype(np.uint8) * 255
    assert iou(a, a > 0) == 1.0


def test_iou_shape_errors():
    with pytest.raises(ValueError):
        iou(np.zeros((3, 3), bool), np.zeros((3, 4), bool))
    with pytest.raises(ValueError):
        iou(np.zeros((1, 3, 3), bool), np.zeros((1, 3, 3), bool))


def test_batch_iou_matches_single():
    a = rect(20, 20, 0, 0, 9, 9)
    b = rect(20, 20, 5, 5, 14, 14)
    e = np.zeros((20, 20), dtype=bool)
    preds = np.stack([a, a, e, e])
    gts = np.stack([b, a, e, a])
    out = batch_iou(preds, gts)
    assert out.shape == (4,)
    np.testing.assert_allclose(out, [25 / 175, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(out, [iou(p, g) for p, g in zip(preds, gts, strict=True)])
    with pytest.raises(ValueError):
        batch_iou(a, b)


def test_miou():
    assert miou([0.5, 1.0, 0.0]) == pytest.approx(0.5)
    assert miou(np.array([0.25])) == 0.25
    with pytest.raises(ValueError):
        miou([])


# ------------------------------------------------------------------ single click
@pytest.mark.parametrize("k", [0, 1, 2, 5])
def test_farthest_point_of_odd_square_is_centre(k):
    n = 2 * k + 1
    m = rect(30, 40, 7, 11, 7 + n - 1, 11 + n - 1)
    assert click_point_farthest_from_boundary(m) == (7 + k, 11 + k)


def test_farthest_point_of_l_shape():
    # Vertical arm x 3..9, y 3..25; horizontal arm x 3..25, y 19..25 (both 7 px thick).
    # Inside an arm the distance is at most 4. In the corner, (7, 21) is 5 from the left
    # background (x=2), 5 from the bottom (y=26) and sqrt(3^2 + 3^2) from the notch's
    # corner pixel (10, 18): sqrt(18) > 4, and every other pixel is lower.
    m = rect(30, 30, 3, 3, 9, 25) | rect(30, 30, 3, 19, 25, 25)
    assert click_point_farthest_from_boundary(m) == (7, 21)
    dist = brute_force_padded_dist(m)
    assert dist[21, 7] == pytest.approx(math.sqrt(18))
    assert np.count_nonzero(dist == dist.max()) == 1


def test_farthest_point_border_counts_as_boundary_and_ties_row_major():
    # Whole image is foreground: only the padding is background -> the centre.
    assert click_point_farthest_from_boundary(np.ones((5, 5), bool)) == (2, 2)
    # Band x 0..4 over all 7 rows: distance 3 at x=2 for rows 2, 3, 4 (left border is
    # boundary); the first in row-major order is (2, 2).
    m = rect(7, 10, 0, 0, 4, 6)
    assert click_point_farthest_from_boundary(m) == (2, 2)


def test_farthest_point_matches_brute_force_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = rng.random((12, 15)) < 0.7
        if not m.any():
            continue
        dist = brute_force_padded_dist(m)
        x, y = click_point_farthest_from_boundary(m)
        assert m[y, x]
        ys, xs = np.nonzero(np.isclose(dist, dist.max()))
        assert (x, y) == (int(xs[0]), int(ys[0]))  # first maximum, row-major


def test_farthest_point_empty_raises():
    with pytest.raises(ValueError):
        click_point_farthest_from_boundary(np.zeros((4, 4), bool))


# ------------------------------------------------------------------ next click
def test_next_click_none_when_perfect():
    m = rect(20, 20, 2, 2, 8, 8)
    assert next_click(m, m) is None
    e = np.zeros((20, 20), dtype=bool)
    assert next_click(e, e) is None


def test_next_click_first_click_is_object_centre():
    gt = rect(40, 40, 10, 10, 20, 20)  # 11x11, centre (15, 15)
    assert next_click(gt, np.zeros_like(gt)) == (15, 15, True)


def test_next_click_larger_fn_gives_positive_at_fn_centre():
    gt = rect(40, 40, 2, 2, 12, 12)  # 11x11 missed, centre (7, 7), max dist 6
    pred = rect(40, 40, 30, 30, 34, 34)  # 5x5 spurious, max dist 3
    assert next_click(gt, pred) == (7, 7, True)


def test_next_click_larger_fp_gives_negative_at_fp_centre():
    gt = rect(40, 40, 30, 30, 34, 34)  # 5x5 missed
    pred = rect(40, 40, 2, 2, 12, 12)  # 11x11 spurious, centre (7, 7)
    assert next_click(gt, pred) == (7, 7, False)


def test_next_click_fn_inside_prediction_hole():
    # Prediction is the object minus a 5x5 hole centred at (20, 20): FN = the hole.
    gt = rect(40, 40, 5, 5, 35, 35)
    pred = gt & ~rect(40, 40, 18, 18, 22, 22)
    assert next_click(gt, pred) == (20, 20, True)


def test_next_click_tie_is_negative():
    # Equal 3x3 FN and FP regions: RITM's strict ">" makes the click negative.
    gt = rect(20, 20, 1, 1, 3, 3)
    pred = rect(20, 20, 10, 10, 12, 12)
    assert next_click(gt, pred) == (11, 11, False)


def test_next_click_skips_pixels_already_clicked():
    """RITM's clicker zeroes the distance at clicked pixels: when the prediction did not
    change, the next click moves to the next-farthest error pixel instead of repeating.
    Hand-checked: the object is x 3..11, y 2..8, so a pixel's distance to the padded
    boundary is min(x - 2, 12 - x, y - 1, 9 - y); the maximum 4 is at (6, 5), (7, 5) and
    (8, 5), taken in row-major order."""
    gt = rect(20, 20, 3, 2, 11, 8)
    pred = np.zeros_like(gt)
    clicks: list[tuple[int, int]] = []
    for expected in [(6, 5), (7, 5), (8, 5)]:
        click = next_click(gt, pred, clicked=clicks)
        assert click == (*expected, True)
        clicks.append(click[:2])
    # then the distance-3 pixels, first in row-major order: (5, 4)
    assert next_click(gt, pred, clicked=clicks) == (5, 4, True)
    # clicks outside the image or on non-error pixels change nothing
    assert next_click(gt, pred, clicked=[(-3, 40), (0, 0)]) == (6, 5, True)


# ------------------------------------------------------------------------- NoC
def test_noc_counts():
    ious = [0.5, 0.7, 0.86, 0.88, 0.95]
    assert noc(ious, 0.85) == 3
    assert noc(ious, 0.9) == 5
    assert noc(ious, 0.5) == 1
    assert noc(ious, 0.86) == 3  # ">=" threshold
    # never reached -> max_clicks (default 20), even with fewer IoUs supplied
    assert noc(ious, 0.99) == 20
    assert noc(ious, 0.99, max_clicks=5) == 5
    # only the first max_clicks IoUs count
    assert noc(ious, 0.9, max_clicks=4) == 4
    assert noc(np.array(ious), 0.85, max_clicks=3) == 3
    with pytest.raises(ValueError):
        noc(ious, 0.85, max_clicks=0)


def test_mean_noc():
    objs = [[0.9, 0.95], [0.5, 0.91], [0.1, 0.2]]
    assert mean_noc(objs, 0.9, max_clicks=20) == pytest.approx((1 + 2 + 20) / 3)
    with pytest.raises(ValueError):
        mean_noc([], 0.9)


# ------------------------------------------------------------------- boundary F
def test_disk_matches_definition():
    d = disk(2)
    assert d.shape == (5, 5)
    assert d.sum() == 13
    assert disk(1).tolist() == [[False, True, False], [True, True, True], [False, True, False]]
    assert disk(0).tolist() == [[True]]


def test_seg2bmap_square():
    # 3x3 square at x,y 2..4 in a 7x7 image: boundary is half a pixel towards the origin,
    # i.e. the ring of pixels from (1, 1) to (4, 4) minus the interior 2..3 x 2..3.
    m = rect(7, 7, 2, 2, 4, 4)
    expected = rect(7, 7, 1, 1, 4, 4) & ~rect(7, 7, 2, 2, 3, 3)
    np.testing.assert_array_equal(seg2bmap(m), expected)
    # Full and empty masks have no boundary.
    assert not seg2bmap(np.ones((5, 6), bool)).any()
    assert not seg2bmap(np.zeros((5, 6), bool)).any()


def test_f_identical_is_one():
    m = rect(50, 60, 10, 12, 30, 40)
    assert boundary_f_measure(m, m) == 1.0
    assert boundary_f_measure(m, m, bound_th=1) == 1.0


def test_f_far_apart_is_zero():
    a = rect(100, 100, 5, 5, 15, 15)
    b = rect(100, 100, 70, 70, 85, 85)
    assert boundary_f_measure(a, b) == 0.0  # tolerance ceil(0.008 * 141.4) = 2 px
    assert boundary_f_measure(a, b, bound_th=3) == 0.0


def test_f_shift_within_tolerance():
    gt = rect(40, 40, 10, 10, 25, 25)
    right = rect(40, 40, 11, 10, 26, 25)  # shifted 1 px in x
    diag = rect(40, 40, 11, 11, 26, 26)  # shifted (1, 1): sqrt(2) px
    assert boundary_f_measure(right, gt, bound_th=1) == 1.0
    assert boundary_f_measure(right, gt, bound_th=0) < 1.0  # no tolerance
    assert boundary_f_measure(diag, gt, bound_th=1) < 1.0  # disk(1) misses the diagonal
    assert boundary_f_measure(diag, gt, bound_th=2) == 1.0
    # Fractional bound_th: 40x40 diagonal is 56.6 px, 0.008 -> ceil(0.45) = 1 px.
    assert boundary_f_measure(right, gt) == 1.0


def test_f_exact_value_without_tolerance():
    # 2x2 squares, one at x,y 2..3 and one at x 2..3, y 3..4 (1 px down), no tolerance.
    # Boundary of the first: ring (1,1)-(3,3) minus (2,2): 8 px. Second: the same ring 1 px
    # lower: 8 px. Rows y=2 and y=3 of the rings: first {(1,2),(3,2)} and {(1,3),(2,3),(3,3)},
    # second {(1,2),(2,2),(3,2)} and {(1,3),(3,3)}: 4 common pixels, so P = R = F = 4/8.
    a = rect(8, 8, 2, 2, 3, 3)
    b = rect(8, 8, 2, 3, 3, 4)
    assert seg2bmap(a).sum() == 8 and seg2bmap(b).sum() == 8
    assert boundary_f_measure(a, b, bound_th=0) == pytest.approx(4 / 8)


def _davis_f(pred: np.ndarray, gt: np.ndarray, radius: int) -> float:
    """DAVIS 2017's recipe written out: boundaries dilated by a disk, then matched."""
    pb, gb = seg2bmap(pred), seg2bmap(gt)
    pd = ndimage.binary_dilation(pb, structure=disk(radius))
    gd = ndimage.binary_dilation(gb, structure=disk(radius))
    precision = (pb & gd).sum() / pb.sum()
    recall = (gb & pd).sum() / gb.sum()
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def test_f_equals_the_disk_dilation_recipe():
    """The distance-transform form of the tolerance equals dilating by ``disk(r)``."""
    rng = np.random.default_rng(3)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(8, 70, 2))
        a = ndimage.gaussian_filter(rng.random((h, w)), 2) > 0.5
        b = ndimage.gaussian_filter(rng.random((h, w)), 2) > 0.5
        if not (seg2bmap(a).any() and seg2bmap(b).any()):
            continue
        for radius in (1, 2, 5):
            got = boundary_f_measure(a, b, bound_th=radius)
            assert got == pytest.approx(_davis_f(a, b, radius), abs=1e-12)


def test_f_empty_conventions():
    e = np.zeros((20, 20), dtype=bool)
    m = rect(20, 20, 5, 5, 10, 10)
    assert boundary_f_measure(e, e) == 1.0
    assert boundary_f_measure(e, m) == 0.0
    assert boundary_f_measure(m, e) == 0.0
    with pytest.raises(ValueError):
        boundary_f_measure(m, m, bound_th=-1)


# -------------------------------------------------------------------------- J&F
def test_j_and_f_identical_sequence():
    seq = np.stack([rect(30, 30, t, t, t + 10, t + 10) for t in range(5)])
    r = j_and_f(seq, seq)
    assert isinstance(r, JFResult)
    assert (r.j_mean, r.f_mean, r.jf_mean) == (1.0, 1.0, 1.0)
    assert r.j_per_frame == (1.0,) * 5 and r.f_per_frame == (1.0,) * 5
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.j_mean = 0.0  # type: ignore[misc]


def test_j_and_f_mixed_and_empty_frames():
    a = rect(20, 20, 0, 0, 9, 9)
    b = rect(20, 20, 5, 5, 14, 14)
    far = rect(20, 20, 16, 16, 18, 18)
    e = np.zeros((20, 20), dtype=bool)
    preds = np.stack([a, e, a, far])
    gts = np.stack([a, e, b, a])
    r = j_and_f(preds, gts, bound_th=1)
    assert r.j_per_frame == pytest.approx((1.0, 1.0, 25 / 175, 0.0))
    assert r.f_per_frame[:2] == (1.0, 1.0)  # identical, both empty
    assert r.f_per_frame[3] == 0.0
    assert 0.0 < r.f_per_frame[2] < 1.0
    assert r.j_mean == pytest.approx(np.mean(r.j_per_frame))
    assert r.f_mean == pytest.approx(np.mean(r.f_per_frame))
    assert r.jf_mean == pytest.approx((r.j_mean + r.f_mean) / 2)
    assert r.f_per_frame[2] == pytest.approx(boundary_f_measure(a, b, bound_th=1))


def test_j_and_f_exclude_first_last_and_errors():
    a = rect(20, 20, 0, 0, 9, 9)
    e = np.zeros((20, 20), dtype=bool)
    preds = np.stack([e, a, a, e])
    gts = np.stack([a, a, a, a])
    r = j_and_f(preds, gts, exclude_first_last=True)
    assert r.j_per_frame == (1.0, 1.0) and r.jf_mean == 1.0
    assert j_and_f(preds, gts).j_mean == 0.5
    with pytest.raises(ValueError):
        j_and_f(preds[:2], gts[:2], exclude_first_last=True)
    with pytest.raises(ValueError):
        j_and_f(preds, gts[:3])
    with pytest.raises(ValueError):
        j_and_f(a, a)
