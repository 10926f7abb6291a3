"""Simulated interactive prompting for training (SAM paper, App. A "Training algorithm").

Each mask is trained over ``num_rounds = 11`` rounds: round 0 gives the first prompt (a
random foreground point or a noisy box, 50/50); then 8 rounds each add one point sampled
from the error region of the previous prediction, and 2 rounds add nothing -- one at a
random intermediate position and the last round -- and only feed the previous low-res
logits back as ``mask_input``. From round 1 on, the previous round's low-res logits are
always supplied as ``mask_input``.

The core (:class:`Prompt`, :class:`InteractiveSimulator`) is numpy-only and works in the
*mask's* pixel frame: x is the column, y the row, a point ``(x, y)`` names the pixel
``mask[y, x]`` (the prompt encoder adds the half-pixel shift itself), boxes are
``(x0, y0, x1, y1)`` with inclusive max corner like the official ``batched_mask_to_box``.
:meth:`Prompt.to_input_frame` scales to the model input frame like
:func:`samkit.inference.transforms.coords_to_input`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from samkit.errors import InvalidArgument, InvalidMask, InvalidPrompt
from samkit.inference.transforms import coords_to_input

__all__ = [
    "InteractiveSimulator",
    "Prompt",
    "RoundRecord",
    "make_schedule",
    "run_interaction",
]

#: Box-noise standard deviation as a fraction of the box side (SAM paper: 10%).
BOX_NOISE_FRACTION = 0.1
#: Cap on the magnitude of the noise added to each box coordinate, in pixels (paper: 20).
BOX_NOISE_MAX_PX = 20.0

MaskInput = np.ndarray | torch.Tensor


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Prompt:
    """An immutable prompt for one mask.

    Attributes:
        points: ``(P, 2)`` float32 (x, y) pixel coordinates (``P`` may be 0).
        labels: ``(P,)`` int64, 1 foreground / 0 background.
        box: ``(4,)`` float32 ``(x0, y0, x1, y1)`` or None.
        mask_input: ``(1, 256, 256)`` low-res logits (numpy or torch, stored as given) from
            the previous round, or None.

    Coordinates are in the mask's frame until :meth:`to_input_frame` is applied.
    """

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    box: np.ndarray | None = None
    mask_input: MaskInput | None = None

    def __post_init__(self) -> None:
        pts = np.asarray(self.points, dtype=np.float32).reshape(-1, 2)
        lbl = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(pts) != len(lbl):
            raise InvalidPrompt(f"{len(pts)} points but {len(lbl)} labels")
        object.__setattr__(self, "points", _readonly(pts))
        object.__setattr__(self, "labels", _readonly(lbl))
        if self.box is not None:
            object.__setattr__(self, "box", _readonly(np.asarray(self.box, np.float32).reshape(4)))
        if self.mask_input is not None:
            m = self.mask_input
            if m.ndim == 2:
                m = m[None]
            if m.ndim != 3 or m.shape[0] != 1:
                raise InvalidPrompt(f"mask_input must be (1, h, w), got {tuple(m.shape)}")
            object.__setattr__(self, "mask_input", m)

    @property
    def num_points(self) -> int:
        return int(len(self.points))

    def add_point(self, x: float, y: float, label: int) -> Prompt:
        """A new prompt with the point ``(x, y)`` and ``label`` appended."""
        return replace(
            self,
            points=np.concatenate([self.points, np.array([[x, y]], np.float32)]),
            labels=np.concatenate([self.labels, np.array([label], np.int64)]),
        )

    def with_mask_input(self, mask_input: MaskInput | None) -> Prompt:
        """A new prompt whose ``mask_input`` is ``(1, h, w)`` (or ``(h, w)``) logits."""
        return replace(self, mask_input=mask_input)

    def to_input_frame(self, original_size: tuple[int, int], input_size: tuple[int, int]) -> Prompt:
        """Scale points and box from the ``(H, W)`` mask frame to the ``(H', W')`` input frame.

        Same scaling as :func:`samkit.inference.transforms.coords_to_input` (x by W'/W, y by
        H'/H); ``mask_input`` is already in the model's low-res frame and is kept.
        """
        pts = coords_to_input(self.points, original_size, input_size).astype(np.float32)
        box = None
        if self.box is not None:
            box = coords_to_input(self.box.reshape(2, 2), original_size, input_size)
            box = box.reshape(4).astype(np.float32)
        return replace(self, points=pts, box=box)

    def as_model_inputs(
        self, device: torch.device | str = "cpu"
    ) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, torch.Tensor | None, torch.Tensor | None]:
        """Batch-of-one tensors for :meth:`Sam.decode`: ``points``, ``boxes``, ``mask_input``.

        ``points`` is ``((1, P, 2) float32, (1, P) int64)`` or None when ``P == 0``; ``boxes``
        ``(1, 4)`` or None; ``mask_input`` ``(1, 1, h, w)`` float32 or None. Call it on a
        prompt already in the input frame.
        """
        points = None
        if self.num_points:
            points = (
                torch.from_numpy(self.points.copy()).to(device)[None],
                torch.from_numpy(self.labels.copy()).to(device)[None],
            )
        boxes = None if self.box is None else torch.from_numpy(self.box.copy()).to(device)[None]
        mask = None
        if self.mask_input is not None:
            m = self.mask_input
            m = torch.from_numpy(np.asarray(m)) if isinstance(m, np.ndarray) else m
            mask = m.to(device=device, dtype=torch.float32)[None]
        return points, boxes, mask


def _check_mask(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise InvalidMask(f"{name} must be a 2-D (H, W) array, got shape {m.shape}")
    return m.astype(bool, copy=False)


def make_schedule(num_rounds: int, rng: np.random.Generator) -> list[bool]:
    """Which rounds add a prompt: ``num_rounds`` booleans.

    Round 0 (the first prompt) is True; the last round and one round drawn uniformly from
    ``1 .. num_rounds - 2`` are False (they only feed the previous logits back); all others
    are True (one error point each). Needs ``num_rounds >= 3``.
    """
    if num_rounds < 3:
        raise InvalidArgument(f"num_rounds must be >= 3, got {num_rounds}")
    plan = [True] * num_rounds
    plan[int(rng.integers(1, num_rounds - 1))] = False
    plan[-1] = False
    return plan


class InteractiveSimulator:
    """Seeded simulator of a user correcting a mask, as in SAM training.

    Args:
        num_rounds: rounds per mask (paper: 11).
        rng: a ``numpy.random.Generator`` (used as is, state shared) or a seed.
    """

    def __init__(self, num_rounds: int = 11, rng: np.random.Generator | int | None = None) -> None:
        if num_rounds < 3:
            raise InvalidArgument(f"num_rounds must be >= 3, got {num_rounds}")
        self.num_rounds = num_rounds
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    def schedule(self, num_rounds: int | None = None) -> list[bool]:
        """See :func:`make_schedule`; defaults to ``self.num_rounds``."""
        return make_schedule(self.num_rounds if num_rounds is None else num_rounds, self.rng)

    def first_prompt(self, mask: np.ndarray) -> Prompt:
        """The round-0 prompt for an ``(H, W)`` ground-truth mask.

        With probability 0.5 a point drawn uniformly from the mask's pixels (label 1),
        otherwise its noisy bounding box: the tight box ``(x0, y0, x1, y1)`` (inclusive max
        pixel), each coordinate plus Gaussian noise with std ``0.1 *`` the box's side along
        that axis (width ``x1 - x0 + 1`` for x, height for y), the noise clipped to
        ``[-20, 20]`` px, then the box clipped to ``[0, W - 1] x [0, H - 1]`` and its
        corners reordered if the noise crossed them.

        Raises:
            InvalidMask: (a ``ValueError``) if the mask is not 2-D or has no foreground
                pixel.
        """
        m = _check_mask(mask)
        ys, xs = np.nonzero(m)
        if len(xs) == 0:
            raise InvalidMask("cannot prompt an empty mask (no foreground pixel)")
        if self.rng.random() < 0.5:
            i = int(self.rng.integers(len(xs)))
            return Prompt(points=[[xs[i], ys[i]]], labels=[1])
        return Prompt(box=self._noisy_box(xs, ys, m.shape))

    def _noisy_box(self, xs: np.ndarray, ys: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        h_img, w_img = shape
        x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
        box = np.array([x0, y0, x1, y1], np.float64)
        side = np.array([x1 - x0 + 1, y1 - y0 + 1, x1 - x0 + 1, y1 - y0 + 1], np.float64)
        noise = self.rng.normal(0.0, 1.0, 4) * BOX_NOISE_FRACTION * side
        box += np.clip(noise, -BOX_NOISE_MAX_PX, BOX_NOISE_MAX_PX)
        box[[0, 2]] = np.clip(box[[0, 2]], 0, w_img - 1)
        box[[1, 3]] = np.clip(box[[1, 3]], 0, h_img - 1)
        bx = np.sort(box[[0, 2]])
        by = np.sort(box[[1, 3]])
        return np.array([bx[0], by[0], bx[1], by[1]], np.float32)

    def next_point(self, gt: np.ndarray, pred: np.ndarray) -> tuple[float, float, int] | None:
        """A corrective click ``(x, y, label)`` drawn uniformly from the error region.

        The error region is the union of false negatives (``gt & ~pred``, giving a
        foreground click, label 1) and false positives (``~gt & pred``, label 0); a pixel is
        drawn uniformly from the union, so FN vs FP is chosen with probability proportional
        to their areas (the paper's "uniformly from the error region"). Returns None when
        ``pred == gt`` everywhere.
        """
        g = _check_mask(gt, "gt")
        p = _check_mask(pred, "pred")
        if g.shape != p.shape:
            raise InvalidMask(f"gt {g.shape} and pred {p.shape} differ in shape")
        err = g != p
        ys, xs = np.nonzero(err)
        if len(xs) == 0:
            return None
        i = int(self.rng.integers(len(xs)))
        y, x = int(ys[i]), int(xs[i])
        return float(x), float(y), int(g[y, x])


@dataclass(frozen=True, eq=False)
class RoundRecord:
    """One round of :func:`run_interaction`.

    ``prompt`` is what the model saw (mask frame), ``low_res_logits`` ``(K, 256, 256)`` and
    ``iou_pred`` ``(K,)`` are what ``model_step`` returned (keep them for the loss), and
    ``chosen`` is the candidate fed back to the next round.
    """

    round_index: int
    added_prompt: bool
    prompt: Prompt
    low_res_logits: torch.Tensor
    iou_pred: torch.Tensor
    chosen: int


ModelStep = Callable[[Prompt], tuple[torch.Tensor, torch.Tensor, Callable[[int], np.ndarray]]]


def run_interaction(
    model_step: ModelStep, gt: np.ndarray, simulator: InteractiveSimulator
) -> list[RoundRecord]:
    """Run ``simulator.num_rounds`` rounds of simulated interaction on one mask.

    ``model_step(prompt)`` gets a prompt in the mask frame (scale it with
    :meth:`Prompt.to_input_frame`) and returns ``(low_res_logits (K, 256, 256),
    iou_pred (K,), full_res_mask_fn)`` where ``full_res_mask_fn(k)`` is candidate ``k``'s
    ``(H, W)`` bool mask in the ``gt`` frame. The candidate with the highest predicted IoU
    is the "current prediction": its errors give the next click and its logits, detached,
    become the next ``mask_input``. If a point round finds no error, no point is added.
    """
    gt = _check_mask(gt, "gt")
    plan = simulator.schedule()
    records: list[RoundRecord] = []
    prompt = simulator.first_prompt(gt)
    pred: np.ndarray | None = None
    for r, adds in enumerate(plan):
        added = r == 0
        if r > 0:
            if adds and pred is not None:
                click = simulator.next_point(gt, pred)
                if click is not None:
                    prompt = prompt.add_point(*click)
                    added = True
            prev = records[-1]
            prompt = prompt.with_mask_input(
                prev.low_res_logits[prev.chosen : prev.chosen + 1].detach()
            )
        logits, iou, full_res = model_step(prompt)
        chosen = int(torch.argmax(iou.detach()).item())
        pred = _check_mask(full_res(chosen), "full_res_mask_fn result")
        records.append(RoundRecord(r, added, prompt, logits, iou, chosen))
    return records
