"""Simulated interactive prompting (SAM training recipe)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samkit.train.prompts import (
    BOX_NOISE_MAX_PX,
    InteractiveSimulator,
    Prompt,
    make_schedule,
    run_interaction,
)


def _blob(h: int = 40, w: int = 50) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[5:20, 10:30] = True
    m[20:25, 12:14] = True
    return m


def _trace(seed: int) -> list:
    sim = InteractiveSimulator(rng=seed)
    gt = _blob()
    pred = np.zeros_like(gt)
    pred[0:3, 0:3] = True
    out: list = [sim.schedule()]
    for _ in range(10):
        p = sim.first_prompt(gt)
        out.append(
            (p.points.tolist(), p.labels.tolist(), None if p.box is None else p.box.tolist())
        )
        out.append(sim.next_point(gt, pred))
    return out


def test_determinism_under_seed() -> None:
    assert _trace(0) == _trace(0)
    assert _trace(0) != _trace(1)
    gen_a = InteractiveSimulator(rng=np.random.default_rng(7))
    gen_b = InteractiveSimulator(rng=7)
    assert gen_a.schedule() == gen_b.schedule()


def test_first_prompt_point_inside_mask_and_both_kinds() -> None:
    sim = InteractiveSimulator(rng=3)
    gt = _blob()
    n_points = 0
    for _ in range(400):
        p = sim.first_prompt(gt)
        assert p.mask_input is None
        if p.box is None:
            assert p.points.shape == (1, 2) and p.points.dtype == np.float32
            assert p.labels.tolist() == [1]
            x, y = p.points[0]
            assert x == int(x) and y == int(y)
            assert gt[int(y), int(x)]
            n_points += 1
        else:
            assert p.num_points == 0 and p.box.shape == (4,)
            assert p.box[0] <= p.box[2] and p.box[1] <= p.box[3]
    assert 140 < n_points < 260  # Bernoulli(0.5) over 400 draws


def _box_noise(lo: int, hi: int, size: int, n: int, seed: int) -> np.ndarray:
    gt = np.zeros((size, size), bool)
    gt[lo : hi + 1, lo : hi + 1] = True
    sim = InteractiveSimulator(rng=seed)
    boxes = [p.box for p in (sim.first_prompt(gt) for _ in range(n)) if p.box is not None]
    return np.stack(boxes) - np.array([lo, lo, hi, hi], np.float32)


def test_box_noise_std_is_ten_percent_of_side() -> None:
    # side 50 -> std 5 px; the 20 px cap is 4 sigma away, the image border further
    noise = _box_noise(100, 149, 300, 3000, seed=0)
    assert len(noise) > 1200
    assert np.abs(noise.mean(axis=0)).max() < 0.5
    assert np.all(np.abs(noise.std(axis=0) - 5.0) < 0.5)


def test_box_noise_capped_at_20px() -> None:
    # side 250 -> std 25 px, so the cap binds often; the border (0..299) is not reached
    noise = _box_noise(25, 274, 300, 1000, seed=1)
    assert np.abs(noise).max() <= BOX_NOISE_MAX_PX + 1e-4
    assert np.mean(np.isclose(np.abs(noise), BOX_NOISE_MAX_PX)) > 0.3  # P(|N(0,25)|>20)=0.42


def test_box_clipped_to_image() -> None:
    gt = np.zeros((30, 30), bool)
    gt[0:30, 0:30] = True
    sim = InteractiveSimulator(rng=5)
    for _ in range(200):
        p = sim.first_prompt(gt)
        if p.box is not None:
            assert p.box.min() >= 0 and p.box.max() <= 29


def test_next_point_false_negatives_only() -> None:
    gt = _blob()
    pred = gt.copy()
    pred[5:20, 10:20] = False  # only false negatives
    sim = InteractiveSimulator(rng=0)
    for _ in range(100):
        x, y, label = sim.next_point(gt, pred)
        assert label == 1 and gt[int(y), int(x)] and not pred[int(y), int(x)]


def test_next_point_false_positives_only() -> None:
    gt = _blob()
    pred = gt.copy()
    pred[30:35, 40:45] = True  # only false positives
    sim = InteractiveSimulator(rng=0)
    for _ in range(100):
        x, y, label = sim.next_point(gt, pred)
        assert label == 0 and pred[int(y), int(x)] and not gt[int(y), int(x)]


def test_next_point_mixed_is_area_proportional_and_none_when_perfect() -> None:
    gt = np.zeros((10, 10), bool)
    gt[0, 0] = True  # 1 FN pixel
    pred = np.zeros((10, 10), bool)
    pred[5:8, 5:8] = True  # 9 FP pixels
    sim = InteractiveSimulator(rng=0)
    labels = [sim.next_point(gt, pred)[2] for _ in range(2000)]
    assert 0.07 < np.mean(labels) < 0.13  # expected 1/10
    assert sim.next_point(gt, gt.copy()) is None


def test_schedule() -> None:
    seen = set()
    for seed in range(50):
        plan = InteractiveSimulator(rng=seed).schedule()
        assert len(plan) == 11
        assert plan[0] is True  # round 0: the first prompt
        no_point = [r for r in range(1, 11) if not plan[r]]
        assert len(no_point) == 2 and no_point[-1] == 10
        assert 1 <= no_point[0] <= 9
        seen.add(no_point[0])
    assert len(seen) > 3  # the intermediate round is random
    assert make_schedule(11, np.random.default_rng(4)) == make_schedule(
        11, np.random.default_rng(4)
    )
    with pytest.raises(ValueError):
        make_schedule(2, np.random.default_rng(0))


def test_empty_and_bad_masks_raise() -> None:
    sim = InteractiveSimulator(rng=0)
    with pytest.raises(ValueError, match="empty mask"):
        sim.first_prompt(np.zeros((8, 8), bool))
    with pytest.raises(ValueError, match="2-D"):
        sim.first_prompt(np.ones((1, 8, 8), bool))
    with pytest.raises(ValueError, match="shape"):
        sim.next_point(np.ones((4, 4), bool), np.ones((4, 5), bool))


def test_prompt_is_immutable_and_appends() -> None:
    p = Prompt(points=[[1, 2]], labels=[1])
    q = p.add_point(3.5, 4.0, 0)
    assert p.num_points == 1 and q.num_points == 2
    assert q.points.tolist() == [[1.0, 2.0], [3.5, 4.0]] and q.labels.tolist() == [1, 0]
    with pytest.raises(ValueError):
        q.points[0, 0] = 9.0
    with pytest.raises(AttributeError):
        q.box = None  # type: ignore[misc]
    with pytest.raises(ValueError):
        Prompt(points=[[1, 2]], labels=[1, 0])
    m = q.with_mask_input(torch.zeros(256, 256))
    assert m.mask_input.shape == (1, 256, 256) and q.mask_input is None


def test_to_input_frame_and_model_inputs() -> None:
    p = Prompt(points=[[10, 20]], labels=[1], box=[0, 0, 100, 50]).with_mask_input(
        np.ones((1, 256, 256), np.float32)
    )
    # original (H, W) = (100, 200) -> input (512, 1024): x * 1024/200, y * 512/100
    s = p.to_input_frame((100, 200), (512, 1024))
    assert np.allclose(s.points, [[51.2, 102.4]])
    assert np.allclose(s.box, [0, 0, 512, 256])
    assert s.points.dtype == np.float32 and s.box.dtype == np.float32
    points, boxes, mask = s.as_model_inputs()
    assert points[0].shape == (1, 1, 2) and points[1].tolist() == [[1]]
    assert boxes.shape == (1, 4) and mask.shape == (1, 1, 256, 256)
    assert Prompt(box=[0, 0, 1, 1]).as_model_inputs()[0] is None


def test_run_interaction_with_fake_model() -> None:
    gt = _blob()
    seen: list[Prompt] = []

    def step(prompt: Prompt):
        seen.append(prompt)
        logits = torch.randn(3, 256, 256)
        iou = torch.tensor([0.1, 0.9, 0.2])
        pred = np.zeros_like(gt)
        pred[5:20, 10:30] = True  # the blob's stem is always missed (FN)
        return logits, iou, lambda k: pred

    sim = InteractiveSimulator(rng=0)
    plan = InteractiveSimulator(rng=0).schedule()
    records = run_interaction(step, gt, sim)
    assert len(records) == 11 and all(r.chosen == 1 for r in records)
    assert [r.added_prompt for r in records] == plan
    assert seen[0].mask_input is None and all(p.mask_input is not None for p in seen[1:])
    assert torch.equal(seen[1].mask_input, records[0].low_res_logits[1:2])
    first = seen[0].num_points
    assert seen[-1].num_points == first + 8
    assert all(lbl == 1 for lbl in seen[-1].labels[first:])  # only FNs to correct
