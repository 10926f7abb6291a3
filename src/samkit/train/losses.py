"""Mask losses from the Segment Anything paper (Kirillov et al., 2023, §3 and App. A).

Recipe: the mask loss of one predicted mask is ``20 * focal + 1 * dice``; with several
candidate masks (``K > 1``, the ambiguity-aware output) only the candidate with the lowest
mask loss is back-propagated (multiple-choice learning); the IoU head is trained with the
mean squared error between its predictions and the actual IoU of every predicted mask with
the ground truth (the IoU target carries no gradient).

SAM 2 (Ravi et al., 2024, App. D) keeps the mask terms and weights 20 : 1 : 1 : 1 but uses
the mean absolute error for the IoU head (``iou_loss="l1"``) and adds a binary
cross-entropy on the object-score logit (is the object present?), which
:func:`sam_loss` adds when given ``object_score_logits``.

Shapes: logits ``(B, K, H, W)`` (unthresholded, ``> 0`` means foreground), targets
``(B, 1, H, W)`` or ``(B, H, W)`` with values in ``{0, 1}`` at the logits' resolution
(see :func:`resize_targets`). Per-mask losses are ``(B, K)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from samkit.errors import InvalidArgument, InvalidMask, TrainingDiverged

__all__ = [
    "LossOutput",
    "dice_loss",
    "mask_iou",
    "resize_targets",
    "sam_loss",
    "sigmoid_focal_loss",
]


def _as_target(targets: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Float ``(B, 1 or K, H, W)`` targets broadcastable against ``(B, K, H, W)`` logits."""
    if targets.dim() == logits.dim() - 1:
        targets = targets.unsqueeze(1)
    if targets.dim() != logits.dim():
        raise InvalidMask(
            f"targets of shape {tuple(targets.shape)} do not match logits {tuple(logits.shape)}"
        )
    if targets.shape[-2:] != logits.shape[-2:]:
        raise InvalidMask(
            f"targets are {tuple(targets.shape[-2:])} but logits are "
            f"{tuple(logits.shape[-2:])}: resize the targets first (resize_targets)"
        )
    return targets.to(dtype=logits.dtype)


def check_finite(loss: torch.Tensor, step: int) -> None:
    """Raise :class:`~samkit.errors.TrainingDiverged` if ``loss`` is NaN or infinite
    (before it is back-propagated, so no update is made from it)."""
    if not bool(torch.isfinite(loss.detach()).all()):
        raise TrainingDiverged(
            f"the loss is {float(loss.detach().float().sum())} at step {step}: training "
            "diverged (lower the learning rate or keep gradient clipping on); no update "
            "was made from this step"
        )


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Focal loss (Lin et al., 2017) per mask, averaged over pixels.

    Per pixel, with ``p = sigmoid(x)`` and ``p_t = p if t == 1 else 1 - p``:
    ``alpha_t * (1 - p_t) ** gamma * BCE(x, t)``, ``alpha_t = alpha`` for foreground and
    ``1 - alpha`` for background (``alpha < 0`` disables the weighting), as torchvision's
    ``sigmoid_focal_loss``.

    Args:
        logits: ``(B, K, H, W)`` mask logits.
        targets: ``(B, K or 1, H, W)`` or ``(B, H, W)`` ground truth in ``{0, 1}``.

    Returns:
        ``(B, K)`` mean over the ``H * W`` pixels of each mask.
    """
    t = _as_target(targets, logits)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, t.expand_as(logits), reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * t + (1 - alpha) * (1 - t)) * loss
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft dice loss per mask, DETR / official SAM training convention.

    ``1 - (2 * sum(p * t) + eps) / (sum(p) + sum(t) + eps)`` with ``p = sigmoid(logits)``
    and sums over the pixels of one mask. ``eps = 1.0`` (the DETR and SAM 2 value) is
    added to numerator and denominator alike, so an empty prediction of an empty target
    costs ~0 rather than 0/0.

    Args:
        logits: ``(B, K, H, W)`` mask logits.
        targets: ``(B, K or 1, H, W)`` or ``(B, H, W)`` ground truth in ``{0, 1}``.

    Returns:
        ``(B, K)``.
    """
    t = _as_target(targets, logits).expand_as(logits)
    p = torch.sigmoid(logits).flatten(-2)
    t = t.flatten(-2)
    numerator = 2 * (p * t).sum(-1) + eps
    denominator = p.sum(-1) + t.sum(-1) + eps
    return 1 - numerator / denominator


@torch.no_grad()
def mask_iou(logits_or_masks: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Actual IoU of thresholded predictions with the ground truth (no gradient).

    Args:
        logits_or_masks: ``(B, K, H, W)`` logits (foreground where ``> 0``) or bool masks.
        targets: ``(B, K or 1, H, W)`` or ``(B, H, W)``, bool or ``{0, 1}`` floats
            (foreground where ``> 0.5``).

    Returns:
        ``(B, K)`` float32 IoU; ``1.0`` where prediction and target are both empty.
    """
    if logits_or_masks.dtype == torch.bool:
        pred = logits_or_masks
    else:
        pred = logits_or_masks > 0
    if targets.dtype != torch.bool:
        targets = targets > 0.5
    t = _as_target(targets, pred).expand_as(pred)
    pred = pred.flatten(-2)
    t = t.flatten(-2)
    inter = (pred & t).sum(-1).float()
    union = (pred | t).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


@dataclass(frozen=True)
class LossOutput:
    """Result of :func:`sam_loss`; every field but ``best_index`` is a scalar tensor.

    ``total`` (back-propagate this) = ``mask + iou_weight * iou + score_weight * score``.
    ``mask`` is ``focal_weight * focal + dice_weight * dice`` of the selected candidates,
    averaged over the batch; ``focal`` and ``dice`` are the unweighted terms of the selected
    candidates; ``iou`` is the IoU-head loss (MSE, or L1 for SAM 2) over all ``B * K``
    outputs; ``score`` the object-score binary cross-entropy averaged over the batch (0
    without object scores). ``best_index`` ``(B,)`` int64: the candidate selected per
    sample (the lowest mask loss; always 0 when ``K == 1``).
    """

    total: torch.Tensor
    mask: torch.Tensor
    focal: torch.Tensor
    dice: torch.Tensor
    iou: torch.Tensor
    best_index: torch.Tensor
    score: torch.Tensor = field(default_factory=lambda: torch.zeros(()))


def sam_loss(
    mask_logits: torch.Tensor,
    iou_pred: torch.Tensor,
    target: torch.Tensor,
    focal_weight: float = 20.0,
    dice_weight: float = 1.0,
    iou_weight: float = 1.0,
    iou_loss: str = "mse",
    object_score_logits: torch.Tensor | None = None,
    score_weight: float = 1.0,
    object_present: torch.Tensor | None = None,
) -> LossOutput:
    """The SAM (or SAM 2) training loss for one round of prompting.

    Args:
        mask_logits: ``(B, K, H, W)`` low-res logits from :meth:`Sam.decode`.
        iou_pred: ``(B, K)`` predicted IoU from the same call.
        target: ``(B, 1, H, W)`` or ``(B, H, W)`` float ``{0, 1}`` (or bool) ground truth at
            the logits' resolution, in the same (padded model-input) frame.
        focal_weight, dice_weight, iou_weight: the paper uses 20 : 1 : 1.
        iou_loss: ``"mse"`` (SAM) or ``"l1"`` (SAM 2) between predicted and actual IoU.
        object_score_logits: ``(B, 1)`` or ``(B,)`` SAM 2 object-score logits; adds
            ``score_weight`` times their binary cross-entropy against ``object_present``,
            and, as SAM 2's loss, drops the mask and IoU terms of absent objects (the
            means still divide by ``B``).
        object_present: ``(B,)`` bool, whether each object is present. Default: whether
            its ``target`` has a foreground pixel; pass it when the target was
            downsampled from a mask that may vanish at this resolution (SAM 2 takes the
            presence from the full-resolution ground truth).

    Returns:
        A :class:`LossOutput`. For ``K > 1`` only the candidate with the lowest mask loss
        receives mask-loss gradient (the selection itself is not differentiated); the IoU
        head receives gradient for all ``K`` outputs, against detached true IoUs.
    """
    if mask_logits.dim() != 4:
        raise InvalidArgument(f"mask_logits must be (B, K, H, W), got {tuple(mask_logits.shape)}")
    b, k = mask_logits.shape[:2]
    if iou_pred.shape != (b, k):
        raise InvalidArgument(f"iou_pred must be {(b, k)}, got {tuple(iou_pred.shape)}")
    target = target.to(dtype=mask_logits.dtype) if target.dtype == torch.bool else target
    focal = sigmoid_focal_loss(mask_logits, target)  # (B, K)
    dice = dice_loss(mask_logits, target)  # (B, K)
    per_candidate = focal_weight * focal + dice_weight * dice  # (B, K)
    if k > 1:
        best = per_candidate.detach().argmin(dim=1)
    else:
        best = torch.zeros(b, dtype=torch.long, device=mask_logits.device)
    if iou_loss not in ("mse", "l1"):
        raise InvalidArgument(f"iou_loss must be 'mse' or 'l1', got {iou_loss!r}")
    rows = torch.arange(b, device=mask_logits.device)
    if object_present is None:
        object_present = (target.flatten(1) > 0.5).any(dim=1)
    present = object_present.reshape(b).to(device=mask_logits.device, dtype=mask_logits.dtype)
    # SAM 2 supervises masks and IoUs of present objects only; SAM 1 every target
    gate = present if object_score_logits is not None else torch.ones_like(present)
    mask_term = (per_candidate[rows, best] * gate).mean()
    focal_sel = focal[rows, best].mean()
    dice_sel = dice[rows, best].mean()
    true_iou = mask_iou(mask_logits.detach(), target).to(iou_pred.dtype)
    diff = iou_pred - true_iou
    per_iou = diff.square() if iou_loss == "mse" else diff.abs()  # (B, K)
    iou_term = (per_iou.mean(dim=1) * gate.to(per_iou.dtype)).mean()
    total = mask_term + iou_weight * iou_term
    score_term = mask_term.new_zeros(())
    if object_score_logits is not None:
        score = object_score_logits.reshape(b).float()
        score_term = F.binary_cross_entropy_with_logits(score, present.float())
        total = total + score_weight * score_term
    return LossOutput(
        total=total,
        mask=mask_term,
        focal=focal_sel,
        dice=dice_sel,
        iou=iou_term,
        best_index=best,
        score=score_term,
    )


def resize_targets(masks: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize ground-truth masks to the logits' resolution, returning float ``{0, 1}``.

    Downsampling (the usual case: a 1024-frame mask to the 256 low-res logits) uses
    ``area`` interpolation -- each output pixel is the foreground fraction of the input
    pixels it covers -- then thresholds at 0.5, so thin structures are kept or dropped by
    majority rather than by which single pixel nearest-neighbour happens to hit. Upsampling
    uses ``nearest`` (area would only replicate pixels anyway).

    The masks must already be in the frame the logits describe: for SAM's low-res logits
    that is the *padded square* model input (resize to the input size, zero-pad bottom and
    right to ``image_size``), not the original image.

    Args:
        masks: ``(B, H, W)`` or ``(B, 1, H, W)`` bool or ``{0, 1}`` float masks.
        size: output ``(h, w)`` or an int for a square.

    Returns:
        ``(B, 1, h, w)`` float32 in ``{0, 1}``.
    """
    if masks.dim() == 3:
        masks = masks.unsqueeze(1)
    if masks.dim() != 4 or masks.shape[1] != 1:
        raise InvalidMask(f"masks must be (B, H, W) or (B, 1, H, W), got {tuple(masks.shape)}")
    out_size = (size, size) if isinstance(size, int) else tuple(size)
    m = masks.float() if masks.dtype == torch.bool else (masks > 0.5).float()
    h, w = m.shape[-2:]
    if out_size == (h, w):
        return m
    if out_size[0] <= h and out_size[1] <= w:
        return (F.interpolate(m, size=out_size, mode="area") >= 0.5).float()
    return F.interpolate(m, size=out_size, mode="nearest")
