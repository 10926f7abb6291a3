"""Augmentations: flips, resize alignment, colour jitter, seeded composition."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from samkit.data import Augment, Sample, color_jitter, hflip, resize_longest_side, vflip


def _sample(h: int = 32, w: int = 48, seed: int = 0) -> Sample:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    masks = np.zeros((2, h, w), bool)
    masks[0, 8:16, 8:16] = True
    masks[1, 2:5, 30:40] = True
    return Sample(image=image, masks=masks, image_id="s", levels=np.array([0, 1]))


@pytest.mark.parametrize("flip", [hflip, vflip])
def test_flips_are_involutions(flip: Callable[[Sample], Sample]) -> None:
    s = _sample()
    once = flip(s)
    assert not np.array_equal(once.masks, s.masks)
    twice = flip(once)
    np.testing.assert_array_equal(twice.image, s.image)
    np.testing.assert_array_equal(twice.masks, s.masks)
    assert once.image.flags.c_contiguous and once.masks.flags.c_contiguous
    np.testing.assert_array_equal(once.levels, s.levels)


def test_flip_geometry() -> None:
    s = _sample()
    np.testing.assert_array_equal(hflip(s).masks[0], s.masks[0][:, ::-1])
    assert hflip(s).masks[0][8, 48 - 1 - 8] and vflip(s).masks[0][32 - 1 - 8, 8]
    np.testing.assert_array_equal(hflip(s).image[:, 0], s.image[:, -1])


def test_resize_keeps_masks_aligned() -> None:
    s = _sample(32, 48)
    up = resize_longest_side(s, 96)  # x2
    assert up.image.shape == (64, 96, 3) and up.masks.shape == (2, 64, 96)
    expected = np.zeros((64, 96), bool)
    expected[16:32, 16:32] = True
    np.testing.assert_array_equal(up.masks[0], expected)
    down = resize_longest_side(s, 24)  # /2
    assert down.masks.shape == (2, 16, 24)
    expected = np.zeros((16, 24), bool)
    expected[4:8, 4:8] = True
    np.testing.assert_array_equal(down.masks[0], expected)
    # a bright square in the image stays where its mask is
    img = np.zeros((32, 48, 3), np.uint8)
    img[s.masks[0]] = 255
    r = resize_longest_side(Sample(img, s.masks, "sq"), 80)  # x5/3
    inside = r.image[r.masks[0]].mean()
    outside = r.image[~r.masks[0]].mean()
    assert inside > 200 and outside < 10
    assert r.masks.shape[1:] == (53, 80)  # int(32 * 5/3 + 0.5)


def test_color_jitter_changes_pixels_not_masks() -> None:
    s = _sample()
    a = color_jitter(s, np.random.default_rng(1))
    b = color_jitter(s, np.random.default_rng(1))
    c = color_jitter(s, np.random.default_rng(2))
    assert a.image.dtype == np.uint8 and a.image.shape == s.image.shape
    assert not np.array_equal(a.image, s.image)
    np.testing.assert_array_equal(a.masks, s.masks)
    np.testing.assert_array_equal(a.image, b.image)
    assert not np.array_equal(a.image, c.image)
    none = color_jitter(s, np.random.default_rng(1), 0.0, 0.0, 0.0)
    np.testing.assert_array_equal(none.image, s.image)


def test_augment_seeded_and_pure() -> None:
    s = _sample()
    image_before, masks_before = s.image.copy(), s.masks.copy()
    aug_a, aug_b = Augment(long_side=64, seed=3), Augment(long_side=64, seed=3)
    for _ in range(4):
        x, y = aug_a(s), aug_b(s)
        np.testing.assert_array_equal(x.image, y.image)
        np.testing.assert_array_equal(x.masks, y.masks)
        assert x.image.shape == (43, 64, 3) and x.masks.shape == (2, 43, 64)
    np.testing.assert_array_equal(s.image, image_before)
    np.testing.assert_array_equal(s.masks, masks_before)
    assert x.image_id == "s"
    np.testing.assert_array_equal(x.levels, s.levels)
    # with flips forced, masks equal the flipped resized masks
    forced = Augment(hflip_p=1.0, vflip_p=1.0, brightness=0, contrast=0, saturation=0)(s)
    np.testing.assert_array_equal(forced.masks, s.masks[:, ::-1, ::-1])
    np.testing.assert_array_equal(forced.image, s.image[::-1, ::-1])
