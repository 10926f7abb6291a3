"""``samkit.viz``: colours, mask overlays and prompt drawing, checked pixel by pixel on
hand-built images."""

from __future__ import annotations

import numpy as np
import pytest

from samkit.errors import InvalidImage
from samkit.viz import (
    PROMPT_MASK_COLOUR,
    MaskOverlay,
    erode,
    mask_colour,
    overlay_masks,
    prompt_overlay,
)


def _box_mask(shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def test_mask_colours_are_distinct_and_deterministic() -> None:
    colours = [mask_colour(i) for i in range(12)]
    assert len(set(colours)) == 12
    assert colours == [mask_colour(i) for i in range(12)]
    assert all(0 <= c <= 255 for rgb in colours for c in rgb)


def test_erode_square_and_border() -> None:
    m = _box_mask((9, 9), 2, 7, 2, 7)  # 5x5 square
    assert np.array_equal(erode(m, 1), _box_mask((9, 9), 3, 6, 3, 6))
    assert not erode(m, 3).any()
    full = np.ones((4, 5), dtype=bool)  # beyond the border counts as inside
    assert erode(full, 2).all()


def test_mask_overlay_fill_and_outline() -> None:
    image = np.full((10, 12, 3), 100, dtype=np.uint8)
    big = _box_mask((10, 12), 2, 8, 2, 9)
    small = _box_mask((10, 12), 4, 6, 4, 6)
    canvas = MaskOverlay(image)
    canvas.add(big, (200, 0, 0))
    canvas.add(small, (0, 0, 200))
    out = canvas.render_array().astype(int)
    assert (out[0, 0] == 100).all()  # outside: untouched
    assert out[2, 5].tolist() == [200, 0, 0]  # 1-px outline in full colour
    assert out[3, 5].tolist() == [150, 50, 50]  # inside: 50% blend
    assert out[4, 4].tolist() == [0, 0, 200]  # the smaller mask, drawn later, on top
    assert np.array_equal(np.asarray(canvas.render()), canvas.render_array())
    assert (image == 100).all()  # the input is not modified


def test_mask_overlay_without_outline_and_alpha() -> None:
    image = np.zeros((6, 6, 3), dtype=np.uint8)
    canvas = MaskOverlay(image, alpha=0.25, outline=0)
    canvas.add(_box_mask((6, 6), 1, 5, 1, 5), (200, 100, 40))
    out = canvas.render_array().astype(int)
    assert out[1, 1].tolist() == [50, 25, 10]  # the edge is blended too, not outlined
    assert out[0, 0].tolist() == [0, 0, 0]


def test_mask_overlay_rejects_bad_shapes() -> None:
    with pytest.raises(InvalidImage, match="image"):
        MaskOverlay(np.zeros((4, 4, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="alpha"):
        MaskOverlay(np.zeros((4, 4, 3), dtype=np.uint8), alpha=1.5)
    canvas = MaskOverlay(np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="mask shape"):
        canvas.add(np.zeros((3, 4), dtype=bool), (1, 2, 3))


def test_overlay_masks_draws_large_masks_first() -> None:
    """Given in any order, the smaller mask ends on top, each in its index's colour."""
    image = np.zeros((12, 12, 3), dtype=np.uint8)
    small = _box_mask((12, 12), 5, 7, 5, 7)
    large = _box_mask((12, 12), 1, 11, 1, 11)
    out = np.asarray(overlay_masks(image, [small, large], outline=0)).astype(int)
    expect_small = [round(0.5 * c) for c in mask_colour(0)]
    expect_large = [round(0.5 * c) for c in mask_colour(1)]
    assert out[6, 6].tolist() == expect_small
    assert out[2, 2].tolist() == expect_large
    custom = overlay_masks(image, np.stack([small]), colours=[(100, 0, 0)], outline=0)
    assert np.asarray(custom)[6, 6].tolist() == [50, 0, 0]
    with pytest.raises(ValueError, match="colours"):
        overlay_masks(image, [small, large], colours=[(1, 2, 3)])


def test_prompt_overlay_draws_mask_and_prompt() -> None:
    rgb = np.zeros((40, 60, 3), np.uint8)
    mask = _box_mask((40, 60), 10, 30, 10, 50)
    picture = np.asarray(prompt_overlay(rgb, mask, [[20, 20]], [1], [5, 5, 55, 35]))
    assert tuple(picture[20, 30]) == tuple(round(0.45 * c) for c in PROMPT_MASK_COLOUR)
    assert tuple(picture[2, 2]) == (0, 0, 0)  # untouched outside
    assert tuple(picture[10, 30]) == PROMPT_MASK_COLOUR  # outline
    assert picture[20, 20, 1] > 150 and picture[20, 20, 0] < 50  # green positive click
    assert tuple(picture[5, 30]) == (255, 200, 0)  # the box, in yellow
    negative = np.asarray(prompt_overlay(rgb, mask, [[20, 20]], [0]))
    assert negative[20, 20, 0] > 150 and negative[20, 20, 1] < 50  # red negative click


def test_overlays_take_what_set_image_takes_and_logit_masks() -> None:
    """Float images in [0, 1], gray and RGBA arrays are read like set_image reads them
    (a float image came out black, gray / RGBA raised); float masks are logits,
    thresholded at 0 (return_logits=True masks tinted every pixel)."""
    rgb = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    mask = np.zeros((6, 8), bool)
    mask[1:4, 2:6] = True
    logits = np.where(mask, 3.0, -2.0)
    expected = np.asarray(overlay_masks(rgb, [mask]))
    assert np.array_equal(np.asarray(overlay_masks(rgb / 255.0, [mask])), expected)
    assert np.array_equal(np.asarray(overlay_masks(rgb, [logits])), expected)
    gray = rgb[..., 0]
    assert np.asarray(overlay_masks(gray, [mask])).shape == (6, 8, 3)
    rgba = np.concatenate([rgb, np.full((6, 8, 1), 255, np.uint8)], axis=2)
    assert np.array_equal(np.asarray(overlay_masks(rgba, [mask])), expected)
    assert np.array_equal(
        np.asarray(prompt_overlay(rgb, logits)), np.asarray(prompt_overlay(rgb, mask))
    )
