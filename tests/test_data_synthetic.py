"""Synthetic nested-object generator: determinism, nesting, occlusion, SA-1B round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from samkit.data import (
    SA1BDataset,
    SyntheticConfig,
    SyntheticDataset,
    generate_sample,
    write_synthetic_dataset,
)
from samkit.data.synthetic import SyntheticObject, compose

SMALL = SyntheticConfig(size=(96, 128), objects=(2, 4), scale=(0.35, 0.7))


def _objects(levels: np.ndarray) -> list[list[int]]:
    """Group mask indices per object: a level-0 mask starts a new object."""
    groups: list[list[int]] = []
    for i, lv in enumerate(levels):
        if lv == 0:
            groups.append([])
        groups[-1].append(i)
    return groups


def test_deterministic_under_seed() -> None:
    a = generate_sample(np.random.default_rng(3), SMALL)
    b = generate_sample(np.random.default_rng(3), SMALL)
    c = generate_sample(np.random.default_rng(4), SMALL)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.levels, b.levels)
    assert not np.array_equal(a.image, c.image)
    ds = SyntheticDataset(3, SMALL, seed=1)
    np.testing.assert_array_equal(ds[2].masks, SyntheticDataset(5, SMALL, seed=1)[2].masks)


def test_shapes_and_nesting() -> None:
    n_three_level = 0
    for seed in range(6):
        s = generate_sample(np.random.default_rng(seed), SMALL)
        m = s.masks.shape[0]
        assert s.image.shape == (96, 128, 3) and s.image.dtype == np.uint8
        assert s.masks.shape == (m, 96, 128) and s.masks.dtype == bool
        assert s.levels is not None and s.levels.shape == (m,)
        assert set(s.levels.tolist()) <= {0, 1, 2}
        assert (s.masks.sum(axis=(1, 2)) >= SMALL.min_mask_area).all()
        for group in _objects(s.levels):
            assert s.levels[group].tolist() == sorted(set(s.levels[group].tolist()))
            for outer, inner in zip(group, group[1:], strict=False):
                assert not (s.masks[inner] & ~s.masks[outer]).any()  # inner ⊂ outer
                assert s.masks[outer].sum() > s.masks[inner].sum()  # strictly
            n_three_level += len(group) == 3
        # each level is painted distinctly: the part's pixel colours differ from its rim's
        for group in _objects(s.levels):
            if len(group) >= 2:
                rim = s.masks[group[0]] & ~s.masks[group[1]]
                part = s.masks[group[1]] & ~(s.masks[group[2]] if len(group) == 3 else False)
                if rim.sum() > 20 and part.sum() > 20:
                    diff = s.image[rim].mean(0).astype(float) - s.image[part].mean(0)
                    assert np.abs(diff).max() > 10
    assert n_three_level >= 6  # most objects have all three levels


def _square(h: int, w: int, y0: int, x0: int, size: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0 : y0 + size, x0 : x0 + size] = True
    return m


def test_compose_occlusion_updates_masks() -> None:
    h, w = 40, 40
    tex = np.stack([np.full((h, w, 3), v, np.uint8) for v in (50, 100, 150)])
    first = SyntheticObject(
        masks=np.stack([_square(h, w, 0, 0, 20), _square(h, w, 2, 2, 12), _square(h, w, 4, 4, 4)]),
        textures=tex,
    )
    # The second object's whole covers the first's subpart and the corner of its part.
    second_whole = _square(h, w, 3, 3, 20)
    second = SyntheticObject(masks=second_whole[None], textures=tex[:1] + 5)
    bg = np.zeros((h, w, 3), np.uint8)
    s = compose(bg, [first, second], "occ", min_mask_area=20)

    assert s.levels.tolist() == [0, 1, 0]  # first's subpart (16 px) fully hidden: dropped
    np.testing.assert_array_equal(s.masks[0], first.masks[0] & ~second_whole)
    np.testing.assert_array_equal(s.masks[1], first.masks[1] & ~second_whole)
    assert s.masks[1].sum() == 12 * 12 - 11 * 11  # L-shaped rim of the part
    np.testing.assert_array_equal(s.masks[2], second_whole)
    assert not (s.masks[0] & s.masks[2]).any()
    # Painting follows the same order: occluder on top, nested levels inside.
    assert (s.image[second_whole] == 55).all()
    assert (s.image[s.masks[1]] == 100).all()
    assert (s.image[0, 39] == 0).all()

    # A part whose visible pixels equal its whole's is dropped as a duplicate.
    ring_cover = _square(h, w, 0, 0, 20) & ~_square(h, w, 2, 2, 12)
    cover = SyntheticObject(masks=ring_cover[None], textures=tex[:1])
    s2 = compose(bg, [first, cover], "dup", min_mask_area=1)
    assert s2.levels.tolist() == [0, 2, 0]
    np.testing.assert_array_equal(s2.masks[0], _square(h, w, 2, 2, 12))


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        SyntheticConfig(objects=(3, 2))
    with pytest.raises(ValueError):
        SyntheticConfig(size=(8, 8))


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_write_then_read_back(tmp_path: Path, fmt: str) -> None:
    paths = write_synthetic_dataset(tmp_path, 3, SMALL, seed=7, image_format=fmt)
    assert [p.name for p in paths] == [f"synth_{i:06d}.json" for i in range(3)]
    ds = SA1BDataset(tmp_path)
    ref = SyntheticDataset(3, SMALL, seed=7)
    assert len(ds) == 3
    for i in range(3):
        got, want = ds[i], ref[i]
        assert got.image_id == want.image_id == f"synth_{i:06d}"
        np.testing.assert_array_equal(got.masks, want.masks)
        np.testing.assert_array_equal(got.levels, want.levels)
        if fmt == "png":
            np.testing.assert_array_equal(got.image, want.image)
        else:
            assert np.abs(got.image.astype(int) - want.image).mean() < 8
