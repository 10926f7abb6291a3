"""The synthetic video clip generator: determinism, mask bookkeeping, motion, occlusion."""

from __future__ import annotations

import numpy as np
import pytest

from samkit.data.synthetic_video import (
    SyntheticVideoConfig,
    SyntheticVideoDataset,
    generate_clip,
)

CFG = SyntheticVideoConfig(size=(96, 128), num_frames=10)


def test_clip_shapes_and_determinism():
    a = SyntheticVideoDataset(3, seed=5, config=CFG)
    b = SyntheticVideoDataset(3, seed=5, config=CFG)
    for i in range(3):
        ca, cb = a[i], b[i]
        assert ca.frames.shape == (10, 96, 128, 3) and ca.frames.dtype == np.uint8
        n = ca.num_objects
        assert ca.masks.shape == (n, 10, 96, 128) and ca.masks.dtype == bool
        assert ca.amodal.shape == ca.masks.shape
        assert ca.occluder == n - 1 and 2 <= n <= 3  # 1-2 objects + the occluder
        np.testing.assert_array_equal(ca.frames, cb.frames)
        np.testing.assert_array_equal(ca.masks, cb.masks)
    # different clips differ, and the index alone decides a clip
    assert not np.array_equal(a[0].frames, a[1].frames)
    np.testing.assert_array_equal(a[2].frames, SyntheticVideoDataset(3, 5, CFG)[2].frames)
    with pytest.raises(IndexError):
        a[3]


def test_visible_masks_are_amodal_minus_later_objects():
    clip = generate_clip(np.random.default_rng(0), CFG)
    n = clip.num_objects
    for i in range(n):
        later = clip.amodal[i + 1 :].any(axis=0) if i + 1 < n else np.zeros_like(clip.masks[i])
        np.testing.assert_array_equal(clip.masks[i], clip.amodal[i] & ~later)
    # visible masks of different objects never overlap
    assert (clip.masks.sum(axis=0) <= 1).all()
    # the last painted object is never occluded
    np.testing.assert_array_equal(clip.masks[-1], clip.amodal[-1])


def test_objects_move_and_object_0_is_occluded_mid_clip():
    ds = SyntheticVideoDataset(12, seed=1, config=CFG)
    occluded, moved = 0, 0
    for clip in ds:
        area = clip.masks[0].reshape(clip.num_frames, -1).sum(1)
        full = clip.amodal[0].reshape(clip.num_frames, -1).sum(1)
        mid = clip.num_frames // 2
        # around the middle frame the occluder hides a part of object 0
        if (area[mid - 1 : mid + 2] < 0.7 * full[mid - 1 : mid + 2]).any():
            occluded += 1
        ys0 = np.nonzero(clip.amodal[0, 0])
        ys1 = np.nonzero(clip.amodal[0, -1])
        if abs(ys0[0].mean() - ys1[0].mean()) + abs(ys0[1].mean() - ys1[1].mean()) > 3:
            moved += 1
    assert occluded >= 10, occluded
    assert moved >= 10, moved


def test_no_occluder_option_and_validation():
    clip = generate_clip(
        np.random.default_rng(0), SyntheticVideoConfig(size=(64, 64), occluder=False)
    )
    assert clip.occluder is None and clip.num_objects in (1, 2)
    assert clip.visible(0).shape == (8,)
    with pytest.raises(ValueError):
        SyntheticVideoConfig(num_frames=0)
    with pytest.raises(ValueError):
        SyntheticVideoConfig(objects=(0, 2))
