"""``samkit.masks`` against the official ``segment_anything.utils.amg``, pycocotools and
OpenCV (``remove_small_regions``), and NMS against a brute-force greedy definition.

The official package is imported through ``reference_shims`` and the official
``remove_small_regions`` needs ``cv2`` (``opencv-python-headless``, test extra): when a
reference cannot be imported these tests fail, they never skip.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import reference_shims
import torch
from pycocotools import mask as mask_utils
from scipy import ndimage

import samkit.masks as M


@pytest.fixture(scope="module")
def amg():
    reference_shims.import_segment_anything()
    from segment_anything.utils import amg as official

    return official


# ---------------------------------------------------------------------------------------
# Mask fixtures
# ---------------------------------------------------------------------------------------

RLE_SIZES = [(1, 1), (1, 9), (9, 1), (5, 7), (7, 5), (16, 16), (37, 23), (48, 64)]


def _blobby(rng: np.random.Generator, n: int, h: int, w: int, sigma: float = 2.0) -> np.ndarray:
    """``(n, h, w)`` bool masks with blobs, holes and islands (smoothed noise)."""
    noise = rng.standard_normal((n, h, w))
    smooth = ndimage.gaussian_filter(noise, sigma=(0, sigma, sigma))
    return smooth > rng.uniform(-0.1, 0.1, size=(n, 1, 1))


def _random_masks(seed: int, h: int, w: int) -> np.ndarray:
    """Noise, sparse noise and blobby masks: ``(6, h, w)`` bool."""
    rng = np.random.default_rng(seed)
    dense = rng.random((2, h, w)) < 0.5
    sparse = rng.random((2, h, w)) < 0.05
    return np.concatenate([dense, sparse, _blobby(rng, 2, h, w, sigma=1.5)])


def _edge_masks(h: int, w: int) -> np.ndarray:
    """Empty, full, each corner pixel, first/last row, first/last column: ``(10, h, w)``."""
    masks = np.zeros((10, h, w), dtype=bool)
    masks[1] = True
    masks[2, 0, 0] = True
    masks[3, 0, w - 1] = True
    masks[4, h - 1, 0] = True
    masks[5, h - 1, w - 1] = True
    masks[6, 0, :] = True
    masks[7, h - 1, :] = True
    masks[8, :, 0] = True
    masks[9, :, w - 1] = True
    return masks


def _all_rle_cases() -> list[np.ndarray]:
    cases = [_random_masks(i, h, w) for i, (h, w) in enumerate(RLE_SIZES)]
    cases += [_edge_masks(h, w) for h, w in RLE_SIZES]
    return cases


def _coco_counts(mask: np.ndarray) -> str:
    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode()


# ---------------------------------------------------------------------------------------
# RLE
# ---------------------------------------------------------------------------------------


def test_rle_encode_equals_official(amg) -> None:
    for masks in _all_rle_cases():
        t = torch.from_numpy(masks)
        ours = M.rle_encode(t)
        ref = amg.mask_to_rle_pytorch(t)
        assert ours == ref, masks.shape
        for rle in ours:  # plain ints, JSON-ready
            assert all(type(c) is int for c in rle["counts"])


def test_rle_encode_hand_values() -> None:
    m = np.zeros((2, 3), dtype=bool)  # column-major: (0,0) (1,0) (0,1) (1,1) (0,2) (1,2)
    m[1, 0] = m[0, 1] = m[1, 2] = True  # -> 0 1 1 0 0 1
    full = np.ones((2, 3), dtype=bool)
    empty = np.zeros((2, 3), dtype=bool)
    out = M.rle_encode(torch.from_numpy(np.stack([m, full, empty])))
    assert out == [
        {"size": [2, 3], "counts": [1, 2, 2, 1]},
        {"size": [2, 3], "counts": [0, 6]},
        {"size": [2, 3], "counts": [6]},
    ]
    assert M.rle_encode(torch.zeros((0, 4, 5), dtype=torch.bool)) == []
    # non-bool input is treated as != 0
    assert M.rle_encode(torch.from_numpy(m[None].astype(np.uint8) * 7)) == out[:1]
    with pytest.raises(ValueError):
        M.rle_encode(torch.zeros((4, 5), dtype=torch.bool))


def test_rle_encode_many_masks_one_batch(amg) -> None:
    masks = torch.from_numpy(_blobby(np.random.default_rng(3), 40, 150, 200, sigma=4.0))
    assert M.rle_encode(masks) == amg.mask_to_rle_pytorch(masks)


def test_coco_rle_byte_identical_to_pycocotools(amg) -> None:
    for masks in _all_rle_cases():
        expected = [_coco_counts(m) for m in masks]
        h, w = masks.shape[1:]
        for src in (masks, torch.from_numpy(masks)):
            coco = M.masks_to_coco_rle(src)
            assert [c["counts"] for c in coco] == expected
            assert all(c["size"] == [h, w] for c in coco)
        for rle, exp in zip(M.rle_encode(torch.from_numpy(masks)), expected, strict=True):
            coco = M.rle_to_coco(rle)
            assert coco == {"size": [h, w], "counts": exp}
            assert coco == amg.coco_encode_rle(rle)
            # compressed input is passed through as str
            assert M.rle_to_coco({"size": [h, w], "counts": exp.encode()})["counts"] == exp
    assert M.masks_to_coco_rle(np.zeros((0, 3, 4), dtype=bool)) == []


def test_rle_decode_round_trips(amg) -> None:
    for masks in _all_rle_cases():
        for m, rle in zip(masks, M.rle_encode(torch.from_numpy(masks)), strict=True):
            dec = M.rle_decode(rle)
            assert dec.dtype == bool and dec.shape == m.shape and dec.flags.c_contiguous
            np.testing.assert_array_equal(dec, m)
            np.testing.assert_array_equal(dec, amg.rle_to_mask(rle))
            counts = _coco_counts(m)
            for c in (counts, counts.encode()):
                dec_c = M.rle_decode({"size": list(m.shape), "counts": c})
                assert dec_c.dtype == bool and dec_c.flags.c_contiguous
                np.testing.assert_array_equal(dec_c, m)


def test_rle_decode_rejects_bad_counts() -> None:
    with pytest.raises(ValueError):
        M.rle_decode({"size": [2, 3], "counts": [1, 2]})  # sums to 3, not 6
    with pytest.raises(ValueError):
        M.rle_decode({"size": [2, 3], "counts": [7, -1]})
    with pytest.raises(ValueError):
        M.rle_to_coco({"size": [2, 3], "counts": [1, 2]})


def test_coco_counts_parse_pycocotools_strings() -> None:
    """coco_counts reads pycocotools' strings back to the runs of the uncompressed RLE
    (masks of every kind, including runs long enough to need several 5-bit groups and
    negative differences), and refuses corrupt strings before pycocotools' C decoder,
    which trusts them, reads them."""
    rng = np.random.default_rng(0)
    cases = [m for masks in _all_rle_cases() for m in masks]
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        cases.append(rng.random((h, w)) < rng.random())
    big = np.zeros((1500, 2000), bool)
    big[3:1400, 10:1990] = True
    big[700, 11] = False
    cases.append(big)
    for m in cases:
        text = _coco_counts(m)
        expected = M.rle_encode(torch.from_numpy(np.ascontiguousarray(m))[None])[0]["counts"]
        assert M.coco_counts(text).tolist() == expected
        assert M.coco_counts(text.encode()).tolist() == expected
        assert M.check_coco_rle({"size": list(m.shape), "counts": text}) == m.shape
    good = _coco_counts(big)
    bad = {
        "zzzzzzzz": "characters outside",  # 'z' is not in the alphabet
        good[:-1] + "\x7f": "characters outside",
        good[:5] + "h": "ends inside a count",  # 'h' = 48 + 0x38: a continuation group
        good[: len(good) // 2]: "sum to H \\* W",  # truncated at a count boundary
        "o" * 13 + "0": "over 60 bits",
        "0D": "negative run length",  # "D" = 48 + 0x14: sign bit set, 20 - 32
    }
    for text, message in bad.items():
        with pytest.raises(ValueError, match=message):
            M.check_coco_rle({"size": [1500, 2000], "counts": text})
        with pytest.raises(ValueError):
            M.rle_decode({"size": [1500, 2000], "counts": text})
        with pytest.raises(ValueError):
            M.rle_to_coco({"size": [1500, 2000], "counts": text})
    with pytest.raises(ValueError, match="needs 'size'"):
        M.check_coco_rle({"counts": "0"})


def test_rle_area(amg) -> None:
    for masks in _all_rle_cases():
        for m, rle in zip(masks, M.rle_encode(torch.from_numpy(masks)), strict=True):
            counts = _coco_counts(m)
            ref = int(mask_utils.area({"size": list(m.shape), "counts": counts}))
            assert ref == int(m.sum())
            assert M.rle_area(rle) == ref == amg.area_from_rle(rle)
            assert M.rle_area({"size": list(m.shape), "counts": counts}) == ref
            assert M.rle_area({"size": list(m.shape), "counts": counts.encode()}) == ref


# ---------------------------------------------------------------------------------------
# Boxes from masks
# ---------------------------------------------------------------------------------------


def test_masks_to_boxes_equals_official(amg) -> None:
    rng = np.random.default_rng(11)
    cases = [torch.from_numpy(_random_masks(i, h, w)) for i, (h, w) in enumerate(RLE_SIZES)]
    cases += [torch.from_numpy(_edge_masks(h, w)) for h, w in RLE_SIZES]
    cases.append(torch.from_numpy(_blobby(rng, 6, 20, 30).reshape(2, 3, 20, 30)))  # (B, C, H, W)
    cases.append(torch.from_numpy(_blobby(rng, 1, 20, 30)[0]))  # (H, W)
    for masks in cases:
        ours = M.masks_to_boxes(masks)
        ref = amg.batched_mask_to_box(masks)
        assert ours.dtype == torch.int64 and ref.dtype == torch.int64
        assert torch.equal(ours, ref), masks.shape


def test_masks_to_boxes_hand_and_empty(amg) -> None:
    m = torch.zeros((3, 6, 8), dtype=torch.bool)
    m[0, 2:5, 3:8] = True
    m[1, 4, 1] = True
    m[1, 0, 6] = True
    expected = torch.tensor([[3, 2, 7, 4], [1, 0, 6, 4], [0, 0, 0, 0]])
    assert torch.equal(M.masks_to_boxes(m), expected)
    for shape in [(0, 6, 8), (2, 0, 8), (2, 3, 0, 8)]:
        ours = M.masks_to_boxes(torch.zeros(shape, dtype=torch.bool))
        ref = amg.batched_mask_to_box(torch.zeros(shape, dtype=torch.bool))
        assert ours.dtype == torch.int64  # the official gives float32 zeros here
        assert ours.shape == ref.shape == (*shape[:-2], 4)
        assert torch.equal(ours, ref.long())


def test_box_xyxy_to_xywh(amg) -> None:
    box = torch.tensor([3, 2, 7, 4])
    ours = M.box_xyxy_to_xywh(box)
    assert torch.equal(ours, amg.box_xyxy_to_xywh(box))
    assert torch.equal(ours, torch.tensor([3, 2, 4, 2]))
    assert torch.equal(box, torch.tensor([3, 2, 7, 4]))  # input untouched
    batch = torch.tensor([[0.5, 1.0, 2.0, 4.0], [1.0, 1.0, 1.0, 1.0]])
    assert torch.equal(M.box_xyxy_to_xywh(batch), torch.tensor([[0.5, 1, 1.5, 3], [1, 1, 0, 0]]))
    assert M.box_xyxy_to_xywh([3, 2, 7, 4]) == [3, 2, 4, 2]
    assert M.box_xyxy_to_xywh([[3, 2, 7, 4], (0, 0, 1, 1)]) == [[3, 2, 4, 2], [0, 0, 1, 1]]
    arr = np.array([[1, 2, 5, 9]])
    np.testing.assert_array_equal(M.box_xyxy_to_xywh(arr), [[1, 2, 4, 7]])
    np.testing.assert_array_equal(arr, [[1, 2, 5, 9]])


# ---------------------------------------------------------------------------------------
# Stability score
# ---------------------------------------------------------------------------------------


def _assert_same_float(ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert ours.dtype == ref.dtype == torch.float32 and ours.shape == ref.shape
    assert torch.equal(torch.isnan(ours), torch.isnan(ref))
    assert torch.equal(ours.nan_to_num(-7.0), ref.nan_to_num(-7.0))


def test_stability_score_equals_official(amg) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn((5, 33, 47), generator=g) * 3
    for thr, off in [(0.0, 1.0), (0.0, 0.5), (1.0, 2.0), (-0.5, 0.25), (0.1, 0.2)]:
        _assert_same_float(
            M.stability_score(logits, thr, off), amg.calculate_stability_score(logits, thr, off)
        )


def test_stability_score_exact_thresholds_and_nan(amg) -> None:
    # Values exactly at thr +/- offset are *not* counted (strict >); with thr=0.1, off=0.2
    # the Python sum 0.30000000000000004 is compared in float32, where it equals
    # float32(0.3).
    logits = torch.full((4, 3, 4), -5.0)
    logits[0, 0, :] = 1.0  # == 0 + 1: counted at -1 (low) but not at +1 (high)
    logits[0, 1, :2] = 2.0
    logits[1, 0, 0] = float(np.float32(0.3))
    logits[1, 0, 1] = float(np.float32(-0.1))  # == 0.1 - 0.2 in float32: not counted
    logits[1, 1, :] = 0.5
    logits[2] = -1.0  # all exactly at thr - offset: 0 / 0
    # logits[3] all negative: 0 / 0
    for thr, off in [(0.0, 1.0), (0.1, 0.2)]:
        ours = M.stability_score(logits, thr, off)
        _assert_same_float(ours, amg.calculate_stability_score(logits, thr, off))
    ours = M.stability_score(logits, 0.0, 1.0)
    assert ours[0].item() == pytest.approx(2 / 6)  # 2 above 1; 4 + 2 above -1
    assert torch.isnan(ours[2]) and torch.isnan(ours[3])
    ours = M.stability_score(logits, 0.1, 0.2)
    assert ours[1].item() == pytest.approx(4 / 5)  # 4 above 0.3; 0.3 itself excluded
    # above -0.1: the 0.3 and the four 0.5 (the -0.1 itself is excluded)
    assert ours[0].item() == 1.0


def test_stability_score_int16_row_sums(amg) -> None:
    # Rows wider than 32767 overflow the official int16 row sums; we reproduce that.
    logits = torch.full((2, 2, 40000), -1.0)
    logits[0, :, :35000] = 2.0
    logits[0, 0, 35000:] = 0.5
    logits[1, 0, :100] = 2.0
    logits[1, 1, :] = 0.5
    ours = M.stability_score(logits, 0.0, 1.0)
    ref = amg.calculate_stability_score(logits, 0.0, 1.0)
    _assert_same_float(ours, ref)
    # hand value: row counts wrap mod 2**16 into int16: 35000 -> -30536, 40000 -> -25536
    assert ours[0].item() == pytest.approx((2 * -30536) / (-25536 - 30536), rel=1e-6)


# ---------------------------------------------------------------------------------------
# Point grids and crops
# ---------------------------------------------------------------------------------------


def test_point_grids_equal_official(amg) -> None:
    for n in [1, 2, 3, 7, 16, 32, 64]:
        ours = M.build_point_grid(n)
        ref = amg.build_point_grid(n)
        assert ours.shape == (n * n, 2) and ours.dtype == ref.dtype
        np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(M.build_point_grid(2), [[0.25, 0.25], [0.75, 0.25],
                                                         [0.25, 0.75], [0.75, 0.75]])  # fmt: skip
    for args in [(32, 0, 1), (32, 2, 2), (16, 1, 2), (7, 2, 2), (32, 3, 3), (32, 5, 2), (4, 3, 1)]:
        ours = M.build_all_layer_point_grids(*args)
        ref = amg.build_all_layer_point_grids(*args)
        assert len(ours) == len(ref) == args[1] + 1
        for a, b in zip(ours, ref, strict=True):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        M.build_point_grid(0)
    # a layer without points is named (the official code fails with ZeroDivisionError),
    # at once even for an absurd number of layers
    with pytest.raises(ValueError, match=r"crop layer 2 would get no points \(7 / 3\^2 < 1\)"):
        M.build_all_layer_point_grids(7, 10**9, 3)
    assert M.layer_points_per_side(7, 2, 2) == [7, 3, 1]


def test_generate_crop_boxes_equals_official(amg) -> None:
    sizes = [(1500, 2000), (2000, 1500), (1024, 1024), (480, 640), (333, 777), (7, 5), (1, 1)]
    for size, n_layers, ratio in itertools.product(sizes, range(3), [512 / 1500, 0.0, 0.25]):
        ours = M.generate_crop_boxes(size, n_layers, ratio)
        ref = amg.generate_crop_boxes(size, n_layers, ratio)
        assert ours == ref, (size, n_layers, ratio)
        assert len(ours[0]) == sum(4**i for i in range(n_layers + 1))
        assert all(type(v) is int for box in ours[0] for v in box)


def test_generate_crop_boxes_hand() -> None:
    # 100 x 200 (H x W), one layer, overlap int(0.2 * 100 * 1) = 20:
    # crop_w = ceil((20 + 200) / 2) = 110, crop_h = ceil((20 + 100) / 2) = 60
    boxes, layers = M.generate_crop_boxes((100, 200), 1, 0.2)
    assert boxes == [[0, 0, 200, 100], [0, 0, 110, 60], [0, 40, 110, 100],
                     [90, 0, 200, 60], [90, 40, 200, 100]]  # fmt: skip
    assert layers == [0, 1, 1, 1, 1]


def test_uncrop_boxes_and_points_equal_official(amg) -> None:
    g = torch.Generator().manual_seed(1)
    crop = [96, 40, 500, 300]
    boxes_i = torch.randint(0, 300, (7, 4), generator=g)
    boxes_f = torch.rand((7, 4), generator=g) * 300
    for boxes in (boxes_i, boxes_f, boxes_i.reshape(1, 7, 4), boxes_f.reshape(7, 1, 4)):
        ours = M.uncrop_boxes_xyxy(boxes, crop)
        ref = amg.uncrop_boxes_xyxy(boxes, crop)
        assert ours.dtype == ref.dtype and torch.equal(ours, ref)
    assert torch.equal(M.uncrop_boxes_xyxy(torch.tensor([[1, 2, 3, 4]]), crop),
                       torch.tensor([[97, 42, 99, 44]]))  # fmt: skip
    points_f = torch.rand((9, 2), generator=g) * 100
    points_i = torch.randint(0, 100, (3, 5, 2), generator=g)
    for points in (points_f, points_i):
        ours = M.uncrop_points(points, crop)
        ref = amg.uncrop_points(points, crop)
        assert ours.dtype == ref.dtype and torch.equal(ours, ref)
    assert torch.equal(M.uncrop_points(torch.tensor([[0.5, 1.5]]), crop),
                       torch.tensor([[96.5, 41.5]]))  # fmt: skip


def test_uncrop_masks_equals_official(amg) -> None:
    rng = np.random.default_rng(5)
    orig_h, orig_w = 45, 70
    crop_boxes, _ = amg.generate_crop_boxes((orig_h, orig_w), 2, 512 / 1500)
    for crop in crop_boxes:
        x0, y0, x1, y1 = crop
        for dtype in (torch.bool, torch.float32):
            masks = torch.from_numpy(rng.random((3, y1 - y0, x1 - x0)) < 0.4).to(dtype)
            ours = M.uncrop_masks(masks, crop, orig_h, orig_w)
            ref = amg.uncrop_masks(masks, crop, orig_h, orig_w)
            assert ours.dtype == ref.dtype and torch.equal(ours, ref)
            if crop == [0, 0, orig_w, orig_h]:
                assert ours is masks
            else:
                assert ours[..., y0:y1, x0:x1].equal(masks) and ours.sum() == masks.sum()
    with pytest.raises(ValueError):
        M.uncrop_masks(torch.zeros((1, 5, 5), dtype=torch.bool), [0, 0, 4, 4], 10, 10)


def test_is_box_near_crop_edge_equals_official(amg) -> None:
    g = torch.Generator().manual_seed(2)
    orig = [0, 0, 640, 480]
    for crop in ([0, 0, 640, 480], [0, 0, 352, 272], [288, 208, 640, 480], [150, 100, 400, 300]):
        w, h = crop[2] - crop[0], crop[3] - crop[1]
        # boxes in crop frame, many within or at exactly 20 px of an edge
        x = torch.randint(-2, w + 2, (300, 2), generator=g)
        y = torch.randint(-2, h + 2, (300, 2), generator=g)
        boxes = torch.stack([x.min(1).values, y.min(1).values, x.max(1).values, y.max(1).values], 1)
        boxes = torch.cat(
            [boxes, torch.tensor([[20, 20, w - 20, h - 20], [21, 21, w - 21, h - 21]])]
        )
        for b in (boxes, boxes.float() + 0.5):
            ours = M.is_box_near_crop_edge(b, crop, orig)
            ref = amg.is_box_near_crop_edge(b, crop, orig)
            assert ours.dtype == torch.bool and torch.equal(ours, ref)
        for atol in (0.0, 5.0):
            assert torch.equal(
                M.is_box_near_crop_edge(boxes, crop, orig, atol=atol),
                amg.is_box_near_crop_edge(boxes, crop, orig, atol=atol),
            )
    crop = [150, 100, 400, 300]  # interior crop: every crop edge is not an image edge
    hand = torch.tensor([[20, 20, 230, 180], [21, 21, 229, 179], [100, 100, 120, 120]])
    assert M.is_box_near_crop_edge(hand, crop, orig).tolist() == [True, False, False]
    corner = [0, 0, 352, 272]  # left/top edges are image edges
    hand = torch.tensor([[0, 0, 100, 100], [0, 0, 340, 100]])
    assert M.is_box_near_crop_edge(hand, corner, orig).tolist() == [False, True]


# ---------------------------------------------------------------------------------------
# Small regions
# ---------------------------------------------------------------------------------------


def _check_small_regions(amg, mask: np.ndarray, thresh: float, mode: str) -> tuple:
    ours, changed = M.remove_small_regions(mask, thresh, mode)
    ref, ref_changed = amg.remove_small_regions(mask, thresh, mode)
    assert changed == ref_changed, (thresh, mode)
    assert ours.dtype == bool and ours.shape == mask.shape
    np.testing.assert_array_equal(ours, ref)
    if not changed:
        assert ours is mask
    return ours, changed


def test_remove_small_regions_equals_official(amg) -> None:
    rng = np.random.default_rng(21)
    masks = [*_blobby(rng, 6, 64, 64, sigma=2.0), *_blobby(rng, 6, 50, 70, sigma=1.0)]
    masks += list(rng.random((3, 40, 30)) < 0.3)
    n_changed = 0
    for mask, thresh, mode in itertools.product(masks, [0, 1, 2.5, 5, 20, 100, 1e9],
                                                ["holes", "islands"]):  # fmt: skip
        n_changed += _check_small_regions(amg, mask, thresh, mode)[1]
    assert n_changed > 50  # the comparison exercised the modifying branch


def test_remove_small_regions_ties_keep_opencvs_first(amg) -> None:
    """Every island small and several of the largest size: the official code keeps the
    one OpenCV labels first (2x2 blocks in raster order), not scipy's first in raster
    order: here the pixel at (1, 0) comes before (0, 2)."""
    mask = np.zeros((2, 3), dtype=bool)
    mask[0, 2] = mask[1, 0] = True
    out, _ = _check_small_regions(amg, mask, 5, "islands")
    assert out.tolist() == [[False, False, False], [True, False, False]]
    rng = np.random.default_rng(5)
    ties = 0
    for _ in range(1500):
        h, w = rng.integers(1, 12, 2)
        m = rng.random((h, w)) < rng.uniform(0.05, 0.4)
        sizes = M.component_sizes(m)[1][1:]
        ties += len(sizes) > 1 and (sizes == sizes.max()).sum() > 1
        _check_small_regions(amg, m, 1e9, "islands")  # all small
    assert ties > 100


def test_remove_small_regions_corner_cases(amg) -> None:
    empty = np.zeros((8, 9), dtype=bool)
    full = np.ones((8, 9), dtype=bool)
    assert _check_small_regions(amg, empty, 100, "islands")[1] is False  # no island
    assert _check_small_regions(amg, full, 100, "holes")[1] is False  # no hole
    out, changed = _check_small_regions(amg, empty, 100, "holes")  # 72 px background < 100
    assert changed and out.all()
    out, changed = _check_small_regions(amg, full, 100, "islands")  # all small: keep largest
    assert changed and out.all()
    assert _check_small_regions(amg, empty, 72, "holes")[1] is False  # 72 is not < 72

    # Every island small: the largest is kept (3 px beats 2 px and 1 px).
    islands = np.zeros((10, 10), dtype=bool)
    islands[0, 0:2] = True
    islands[5, 5:8] = True
    islands[9, 0] = True
    out, changed = _check_small_regions(amg, islands, 10, "islands")
    expected = np.zeros_like(islands)
    expected[5, 5:8] = True
    assert changed and np.array_equal(out, expected)

    # Tie for the largest: the first in raster order is kept.
    tie = np.zeros((10, 10), dtype=bool)
    tie[6, 1:3] = True
    tie[2, 7:9] = True
    out, _ = _check_small_regions(amg, tie, 10, "islands")
    expected = np.zeros_like(tie)
    expected[2, 7:9] = True
    assert np.array_equal(out, expected)

    # 8-connectivity: a diagonal chain is one island of 4 px.
    diag = np.zeros((6, 6), dtype=bool)
    diag[[0, 1, 2, 3], [0, 1, 2, 3]] = True
    diag[5, 5] = True
    out, _ = _check_small_regions(amg, diag, 3, "islands")
    assert np.array_equal(out, diag & ~(np.arange(6)[:, None] == 5))

    # Holes: a 1 px hole is filled, a 4 px hole kept at threshold 4 (strict <).
    ring = np.ones((8, 12), dtype=bool)
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = False  # outer background: 36 px
    ring[2, 2] = False
    ring[4:6, 6:8] = False
    out, changed = _check_small_regions(amg, ring, 4, "holes")
    expected = ring.copy()
    expected[2, 2] = True
    assert changed and np.array_equal(out, expected)
    # A small *outer* background is filled as a hole too.
    out, _ = _check_small_regions(amg, ring, 37, "holes")
    assert out.all()
    # Holes touching only diagonally are one region (8-connected background).
    holes = np.ones((6, 6), dtype=bool)
    holes[1, 1] = holes[2, 2] = False
    out, _ = _check_small_regions(amg, holes, 2, "holes")
    assert np.array_equal(out, holes)  # one 2 px region: not < 2
    out, _ = _check_small_regions(amg, holes, 3, "holes")
    assert out.all()

    with pytest.raises(ValueError):
        M.remove_small_regions(ring, 4, "both")


# ---------------------------------------------------------------------------------------
# Box IoU and NMS
# ---------------------------------------------------------------------------------------


def _brute_nms(boxes: list, scores: list, cats: list, thr: float) -> list[int]:
    """Greedy NMS by definition, with torchvision's CPU arithmetic: IoU in float32,
    compared with the threshold as a double; degenerate pairs (0/0) never suppress."""
    f32 = np.float32

    def iou(a, b):
        iw = max(f32(0), min(f32(a[2]), f32(b[2])) - max(f32(a[0]), f32(b[0])))
        ih = max(f32(0), min(f32(a[3]), f32(b[3])) - max(f32(a[1]), f32(b[1])))
        inter = f32(iw) * f32(ih)
        area_a = (f32(a[2]) - f32(a[0])) * (f32(a[3]) - f32(a[1]))
        area_b = (f32(b[2]) - f32(b[0])) * (f32(b[3]) - f32(b[1]))
        union = f32(area_a + area_b) - inter
        return None if union == 0 else float(f32(inter / union))

    order = sorted(range(len(boxes)), key=lambda i: (-scores[i], i))
    keep: list[int] = []
    for i in order:
        suppressed = False
        for k in keep:
            v = iou(boxes[k], boxes[i])
            if cats[k] == cats[i] and v is not None and v > thr:
                suppressed = True
                break
        if not suppressed:
            keep.append(i)
    return keep


def _random_nms_case(seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer-coordinate float boxes (many overlaps, duplicates) and tied scores."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.randint(0, 30, (n, 2), generator=g)
    wh = torch.randint(1, 12, (n, 2), generator=g)
    boxes = torch.cat([xy, xy + wh], 1).float()
    boxes[n // 3] = boxes[0]  # exact duplicate: IoU 1.0
    scores = torch.randint(0, 5, (n,), generator=g).float() / 4  # many ties
    cats = torch.randint(0, 3, (n,), generator=g)
    return boxes, scores, cats


def test_box_area_and_iou_hand() -> None:
    a = torch.tensor([[0, 0, 2, 2], [1, 1, 3, 3], [5, 5, 5, 9]])
    assert M.box_area(a).tolist() == [4, 4, 0]
    assert M.box_area(a).dtype == torch.int64
    iou = M.box_iou(a.float(), a.float())
    assert iou[0, 1].item() == pytest.approx(1 / 7)
    assert iou[0, 0].item() == 1.0 and iou[0, 2].item() == 0.0
    assert torch.isnan(iou[2, 2])  # 0 / 0 like torchvision
    assert M.box_iou(a, a).dtype == torch.float32
    assert M.box_area(a.half()).dtype == torch.float32


def test_nms_against_brute_force_and_shim(monkeypatch) -> None:
    for seed, n in [(0, 1), (1, 2), (2, 25), (3, 60), (4, 150)]:
        boxes, scores, cats = _random_nms_case(seed, n)
        bl, sl, cl = boxes.tolist(), scores.tolist(), cats.tolist()
        for thr in (0.0, 0.3, 0.5, 0.7, 1.0):
            expected = _brute_nms(bl, sl, [0] * n, thr)
            expected_b = _brute_nms(bl, sl, cl, thr)
            for block in (M.boxes._NMS_BLOCK, 5, 16):  # the blocked path must not change results
                monkeypatch.setattr(M.boxes, "_NMS_BLOCK", block)
                keep = M.nms(boxes, scores, thr)
                assert keep.dtype == torch.int64
                assert keep.tolist() == expected, (seed, thr, block)
                assert M.batched_nms(boxes, scores, cats, thr).tolist() == expected_b
                assert M.batched_nms(boxes, scores, cats.float(), thr).tolist() == expected_b
            monkeypatch.undo()
            zeros = torch.zeros(n, dtype=torch.long)
            assert M.batched_nms(boxes, scores, zeros, thr).tolist() == expected
            if thr == 0.3:
                continue  # the shim's float64 IoU differs at IoU == 3/10 (see below)
            assert torch.equal(M.nms(boxes, scores, thr), reference_shims.nms(boxes, scores, thr))
            assert torch.equal(
                M.batched_nms(boxes, scores, cats, thr),
                reference_shims.batched_nms(boxes, scores, cats, thr),
            )


def test_nms_hand_cases() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30]]).float()
    scores = torch.tensor([0.5, 0.5, 0.9, 0.5])
    # order by score, ties by index: 2, 0, 1, 3. IoU(2, 0) = 0.5, IoU(0, 1) = 1.
    assert M.nms(boxes, scores, 0.5).tolist() == [2, 0, 3]  # 0.5 is not > 0.5
    assert M.nms(boxes, scores, 0.49).tolist() == [2, 3]
    assert M.nms(boxes, scores, 1.0).tolist() == [2, 0, 1, 3]  # nothing is > 1
    assert M.nms(boxes, scores, 0.0).tolist() == [2, 3]
    # touching boxes have IoU 0: never suppressed, even at threshold 0
    touch = torch.tensor([[0.0, 0, 1, 1], [1, 0, 2, 1]])
    assert M.nms(touch, torch.tensor([1.0, 2.0]), 0.0).tolist() == [1, 0]
    # categories separate the duplicates
    idxs = torch.tensor([0, 1, 0, 0])
    assert M.batched_nms(boxes, scores, idxs, 0.49).tolist() == [2, 1, 3]
    # degenerate boxes: IoU 0/0 = nan never suppresses
    flat = torch.tensor([[1.0, 1, 1, 5], [1, 1, 1, 5]])
    assert M.nms(flat, torch.tensor([1.0, 1.0]), 0.1).tolist() == [0, 1]


def test_nms_threshold_compared_as_double() -> None:
    # IoU = 3 / 10 computed in float32 is 0.30000001192..., which is > 0.3 as a double
    # (torchvision's CPU kernel compares float IoU with a double threshold); comparing
    # with the threshold rounded to float32 (torchvision's CUDA kernel) or computing the
    # IoU in float64 (reference_shims.nms) would keep both boxes.
    boxes = torch.tensor([[0.0, 0, 10, 1], [0, 0, 3, 1]])
    assert M.box_iou(boxes, boxes)[0, 1].item() == float(np.float32(0.3))
    assert M.nms(boxes, torch.tensor([1.0, 0.9]), 0.3).tolist() == [0]
    # float32(0.7) < 0.7, so at AMG's 0.7 both conventions agree: 7/10 is not > 0.7
    boxes = torch.tensor([[0.0, 0, 10, 1], [0, 0, 7, 1]])
    assert M.nms(boxes, torch.tensor([1.0, 0.9]), 0.7).tolist() == [0, 1]


def test_nms_empty_and_validation() -> None:
    empty = torch.zeros((0, 4))
    for keep in (
        M.nms(empty, torch.zeros(0), 0.5),
        M.batched_nms(empty, torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5),
    ):
        assert keep.dtype == torch.int64 and keep.shape == (0,)
    assert reference_shims.batched_nms(empty, torch.zeros(0), torch.zeros(0), 0.5).numel() == 0
    with pytest.raises(ValueError):
        M.nms(torch.zeros((3, 4)), torch.zeros(2), 0.5)
    with pytest.raises(ValueError):
        M.nms(torch.zeros((3, 5)), torch.zeros(3), 0.5)
    with pytest.raises(ValueError):
        M.batched_nms(torch.zeros((3, 4)), torch.zeros(3), torch.zeros(2), 0.5)


def test_all_exports_exist() -> None:
    assert len(M.__all__) == len(set(M.__all__)) == 27
    for name in M.__all__:
        assert callable(getattr(M, name))


def test_component_sizes_eight_connected() -> None:
    """Diagonal neighbours join a component; labels follow raster order; sizes[0] counts
    the pixels outside the region."""
    region = np.array(
        [
            [1, 0, 0, 1],
            [0, 1, 0, 1],
            [0, 0, 0, 0],
            [1, 1, 0, 0],
        ],
        dtype=bool,
    )
    labels, sizes = M.component_sizes(region)
    assert sizes.tolist() == [10, 2, 2, 2]  # outside, {(0,0),(1,1)}, {(0,3),(1,3)}, bottom
    assert labels[0, 0] == labels[1, 1] == 1
    assert labels[0, 3] == labels[1, 3] == 2
    assert labels[3, 0] == labels[3, 1] == 3
    assert (labels[~region] == 0).all()
    empty_labels, empty_sizes = M.component_sizes(np.zeros((2, 3), dtype=bool))
    assert empty_sizes.tolist() == [6] and not empty_labels.any()


def test_small_components_by_size() -> None:
    """Pixels of components with at most ``max_area`` pixels, by hand: a 3-pixel
    L (diagonal joins), a 1-pixel dot and a 4-pixel bar."""
    region = np.array(
        [
            [1, 0, 0, 0, 1],
            [0, 1, 1, 0, 0],
            [0, 0, 0, 0, 0],
            [1, 1, 1, 1, 0],
        ],
        dtype=bool,
    )
    l_shape = np.zeros_like(region)
    l_shape[0, 0] = l_shape[1, 1] = l_shape[1, 2] = True
    dot = np.zeros_like(region)
    dot[0, 4] = True
    assert (M.small_components(region, 1) == dot).all()
    assert (M.small_components(region, 3) == (l_shape | dot)).all()
    assert (M.small_components(region, 4) == region).all()
    assert not M.small_components(region, 0).any()
    assert not M.small_components(np.zeros((2, 2), dtype=bool), 10).any()
