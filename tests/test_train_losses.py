"""SAM training losses against closed-form values on tiny masks."""

from __future__ import annotations

import math

import pytest
import torch

from samkit.train.losses import (
    LossOutput,
    dice_loss,
    mask_iou,
    resize_targets,
    sam_loss,
    sigmoid_focal_loss,
)

LN3 = math.log(3.0)  # sigmoid(ln 3) = 0.75


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_focal_known_values() -> None:
    # pixel a: logit 0, target 1 -> p=0.5, ce=ln2, (1-p_t)^2=0.25, alpha_t=0.25
    # pixel b: logit ln3, target 0 -> p=0.75, ce=ln4, p_t=0.25, (0.75)^2, alpha_t=0.75
    logits = torch.tensor([0.0, LN3]).view(1, 1, 1, 2)
    targets = torch.tensor([1.0, 0.0]).view(1, 1, 2)
    a = 0.25 * 0.25 * math.log(2.0)
    b = 0.75 * 0.5625 * math.log(4.0)
    out = sigmoid_focal_loss(logits, targets)
    assert out.shape == (1, 1)
    assert out.item() == pytest.approx((a + b) / 2, rel=1e-6)
    # 1x1 masks, per-mask output shape (B, K)
    single = sigmoid_focal_loss(torch.zeros(2, 3, 1, 1), torch.ones(2, 1, 1, 1))
    assert single.shape == (2, 3)
    assert torch.allclose(single, torch.full((2, 3), a))


def test_focal_without_alpha_and_gamma_is_bce() -> None:
    logits = torch.tensor([0.0, LN3]).view(1, 1, 1, 2)
    targets = torch.tensor([1.0, 0.0]).view(1, 1, 1, 2)
    out = sigmoid_focal_loss(logits, targets, alpha=-1, gamma=0.0)
    assert out.item() == pytest.approx((math.log(2.0) + math.log(4.0)) / 2, rel=1e-6)


def test_dice_known_values() -> None:
    # p = [.5, .75, .25, .5], t = [1, 1, 0, 0]: sum(pt)=1.25, sum(p)=2, sum(t)=2
    # 1 - (2*1.25 + 1) / (2 + 2 + 1) = 1 - 3.5/5 = 0.3
    logits = torch.tensor([[0.0, LN3], [-LN3, 0.0]]).view(1, 1, 2, 2)
    targets = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    out = dice_loss(logits, targets)
    assert out.shape == (1, 1)
    assert out.item() == pytest.approx(0.3, rel=1e-6)
    # smoothing constant: empty target, p=0.5 single pixel -> 1 - 1/(0.5 + 0 + 1) = 1/3
    assert dice_loss(torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1)).item() == pytest.approx(
        1 / 3, rel=1e-6
    )


def test_mask_iou_thresholds_and_empty() -> None:
    target = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).view(1, 2, 2)
    logits = torch.stack(
        [
            torch.tensor([[1.0, 1.0], [1.0, -1.0]]),  # inter 2, union 3
            torch.tensor([[1.0, -1.0], [-1.0, -1.0]]),  # inter 1, union 2
            torch.tensor([[0.0, 0.0], [0.0, 0.0]]),  # 0 is not foreground: IoU 0
        ]
    )[None].requires_grad_(True)
    iou = mask_iou(logits, target)
    assert not iou.requires_grad
    assert torch.allclose(iou, torch.tensor([[2 / 3, 0.5, 0.0]]))
    empty = mask_iou(torch.full((1, 1, 2, 2), -1.0), torch.zeros(1, 1, 2, 2))
    assert empty.item() == 1.0
    assert mask_iou(torch.ones(1, 1, 2, 2, dtype=torch.bool), target).item() == 0.5


def _three_candidates() -> tuple[torch.Tensor, torch.Tensor]:
    # float64: (1 - sigmoid(5)) ** 2 is too small for float32 to match math to 1e-5
    target = torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=torch.float64).view(1, 1, 2, 2)
    logits = torch.stack(
        [
            torch.full((2, 2), -5.0),  # misses the object: IoU 0
            torch.tensor([[5.0, 5.0], [-5.0, -5.0]]),  # perfect: IoU 1
            torch.full((2, 2), 5.0),  # everything: IoU 0.5
        ]
    )[None].double()
    return logits, target


def test_min_over_three_selects_best_and_values() -> None:
    logits, target = _three_candidates()
    logits.requires_grad_(True)
    iou_pred = torch.full((1, 3), 0.3, dtype=torch.float64, requires_grad=True)
    out = sam_loss(logits, iou_pred, target)
    assert isinstance(out, LossOutput)
    assert out.best_index.tolist() == [1]

    # candidate 1: every pixel has p_t = sigmoid(5), ce = log(1 + e^-5), mean alpha_t = 0.5
    p = _sig(5.0)
    ce = math.log1p(math.exp(-5.0))
    focal = 0.5 * ce * (1 - p) ** 2
    dice = 1 - (2 * 2 * p + 1) / (2 * p + 2 * (1 - p) + 2 + 1)
    iou_mse = ((0.3 - 0.0) ** 2 + (0.3 - 1.0) ** 2 + (0.3 - 0.5) ** 2) / 3
    assert out.focal.item() == pytest.approx(focal, rel=1e-5)
    assert out.dice.item() == pytest.approx(dice, rel=1e-5)
    assert out.mask.item() == pytest.approx(20 * focal + dice, rel=1e-5)
    assert out.iou.item() == pytest.approx(iou_mse, rel=1e-5)
    assert out.total.item() == pytest.approx(20 * focal + dice + iou_mse, rel=1e-5)
    for name in ("total", "mask", "focal", "dice", "iou"):
        assert getattr(out, name).dim() == 0


def test_gradient_only_reaches_chosen_candidate() -> None:
    logits, target = _three_candidates()
    logits.requires_grad_(True)
    iou_pred = torch.full((1, 3), 0.3, dtype=torch.float64, requires_grad=True)
    sam_loss(logits, iou_pred, target).total.backward()
    assert logits.grad is not None
    assert torch.count_nonzero(logits.grad[0, 0]) == 0
    assert torch.count_nonzero(logits.grad[0, 2]) == 0
    assert torch.all(logits.grad[0, 1] != 0)
    # IoU head: d/dx mean((x - y)^2) = 2 (x - y) / 3 for every candidate
    expected = 2 * (0.3 - torch.tensor([[0.0, 1.0, 0.5]], dtype=torch.float64)) / 3
    assert iou_pred.grad is not None
    assert torch.allclose(iou_pred.grad, expected, atol=1e-6)


def test_selection_is_per_sample() -> None:
    logits, target = _three_candidates()
    swapped = logits[:, [1, 0, 2]]
    batch = torch.cat([logits, swapped]).requires_grad_(True)
    out = sam_loss(batch, torch.zeros(2, 3, dtype=torch.float64), torch.cat([target, target])[:, 0])
    assert out.best_index.tolist() == [1, 0]


def test_single_output_path() -> None:
    logits = torch.tensor([[0.0, LN3], [-LN3, 0.0]]).view(1, 1, 2, 2).requires_grad_(True)
    target = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).view(1, 2, 2)
    iou_pred = torch.tensor([[0.5]], requires_grad=True)
    out = sam_loss(logits, iou_pred, target)
    assert out.best_index.tolist() == [0]
    # p = [.5, .75, .25, .5], t = [1, 1, 0, 0]
    focal = (
        0.25 * 0.25 * math.log(2)  # p=.5, t=1
        + 0.25 * 0.0625 * math.log(4 / 3)  # p=.75, t=1: ce=-ln .75, (1-p_t)^2=1/16
        + 0.75 * 0.0625 * math.log(4 / 3)  # p=.25, t=0: ce=-ln .75
        + 0.75 * 0.25 * math.log(2)  # p=.5, t=0
    ) / 4
    # predicted mask (logit > 0): only the (0, 1) pixel -> IoU 1/2
    iou_mse = (0.5 - 0.5) ** 2
    assert out.focal.item() == pytest.approx(focal, rel=1e-5)
    assert out.dice.item() == pytest.approx(0.3, rel=1e-5)
    assert out.total.item() == pytest.approx(20 * focal + 0.3 + iou_mse, rel=1e-5)
    out.total.backward()
    assert logits.grad is not None and torch.all(logits.grad != 0)


def test_iou_target_is_true_iou() -> None:
    target = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    logits = torch.stack(
        [
            torch.tensor([[1.0, 1.0], [1.0, -1.0]]),  # IoU 2/3
            torch.tensor([[1.0, -1.0], [-1.0, -1.0]]),  # IoU 1/2
        ]
    )[None]
    exact = sam_loss(logits, torch.tensor([[2 / 3, 0.5]]), target)
    assert exact.iou.item() == pytest.approx(0.0, abs=1e-12)
    off = sam_loss(logits, torch.tensor([[2 / 3, 0.0]]), target, iou_weight=2.0)
    assert off.iou.item() == pytest.approx(0.25 / 2, rel=1e-6)
    assert off.total.item() == pytest.approx(off.mask.item() + 2 * 0.125, rel=1e-6)


def test_sam2_iou_l1_and_object_score_terms() -> None:
    """SAM 2's variant: mean absolute IoU error and the object-score BCE, by hand."""
    target = torch.tensor([[1.0, 1.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    logits = torch.stack(
        [
            torch.tensor([[1.0, 1.0], [1.0, -1.0]]),  # IoU 2/3
            torch.tensor([[1.0, -1.0], [-1.0, -1.0]]),  # IoU 1/2
        ]
    )[None]
    iou_pred = torch.tensor([[2 / 3 - 0.3, 0.5 + 0.1]])
    base = sam_loss(logits, iou_pred, target)  # SAM: MSE, no score term
    assert base.iou.item() == pytest.approx((0.09 + 0.01) / 2, rel=1e-5)
    assert base.score.item() == 0.0
    score = torch.tensor([[LN3]], requires_grad=True)  # sigmoid = 0.75, target present
    out = sam_loss(
        logits, iou_pred, target, iou_loss="l1", object_score_logits=score, score_weight=2.0
    )
    assert out.iou.item() == pytest.approx((0.3 + 0.1) / 2, rel=1e-5)
    assert out.score.item() == pytest.approx(-math.log(0.75), rel=1e-6)
    expected = base.mask.item() + out.iou.item() + 2 * -math.log(0.75)
    assert out.total.item() == pytest.approx(expected, rel=1e-6)
    out.total.backward()
    assert score.grad.item() == pytest.approx(2 * (0.75 - 1.0), rel=1e-6)  # d BCE = p - t
    # an absent object (by default: an empty target) pushes the score down and, as in
    # SAM 2's loss, gets no mask or IoU loss
    for absent in (
        sam_loss(logits, iou_pred, torch.zeros(1, 1, 2, 2), object_score_logits=score),
        sam_loss(
            logits, iou_pred, target, object_score_logits=score, object_present=torch.tensor([0])
        ),
    ):
        assert absent.score.item() == pytest.approx(-math.log(0.25), rel=1e-6)
        assert absent.mask.item() == 0.0 and absent.iou.item() == 0.0
    # told present although the (downsampled) target is empty: trained as present
    kept = sam_loss(
        logits,
        iou_pred,
        torch.zeros(1, 1, 2, 2),
        object_score_logits=score,
        object_present=torch.tensor([True]),
    )
    assert kept.score.item() == pytest.approx(-math.log(0.75), rel=1e-6)
    assert kept.mask.item() > 0
    # without object scores (SAM 1) every target is supervised, empty or not
    assert sam_loss(logits, iou_pred, torch.zeros(1, 1, 2, 2)).mask.item() > 0
    with pytest.raises(ValueError, match="iou_loss"):
        sam_loss(logits, iou_pred, target, iou_loss="huber")


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="resize"):
        sam_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3), torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="iou_pred"):
        sam_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 1), torch.zeros(1, 4, 4))


def test_resize_targets() -> None:
    m = torch.zeros(1, 4, 4, dtype=torch.bool)
    m[0, 0, 0:2] = True  # top-left 2x2 block is half covered -> kept (>= 0.5)
    m[0, 2, 2] = True  # bottom-right block a quarter covered -> dropped
    out = resize_targets(m, 2)
    assert out.shape == (1, 1, 2, 2) and out.dtype == torch.float32
    assert out[0, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]
    up = resize_targets(out, (4, 4))
    assert up.shape == (1, 1, 4, 4)
    assert up[0, 0, :2, :2].eq(1).all() and up.sum().item() == 4
    same = resize_targets(torch.ones(2, 1, 3, 3), 3)
    assert same.shape == (2, 1, 3, 3)
