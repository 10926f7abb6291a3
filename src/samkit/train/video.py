"""Training SAM 2-family models on video clips (the SAM 2 paper's recipe, simplified).

One step draws one synthetic clip (:mod:`samkit.data.synthetic_video`) of
``num_frames`` frames at the model's input size and tracks all its objects through it
with the same code the video predictor runs (:func:`~samkit.video.tracker.track_step_with_grad`),
keeping the autograd graph across frames:

1. frame 0 is the initial conditioning frame. All objects visible on it are prompted
   the same way, drawn per clip: with probability ``prob_mask_prompt`` their ground-truth
   masks (used as the output, as in the predictor), otherwise with probability
   ``prob_box_prompt`` a box (the mask's box with noise of 10 % of its side, at most
   20 px, as in SAM) and else one click uniformly inside the mask;
2. frames 1..T-1 are tracked from the memory bank (conditioning frame 0 plus the latest
   ``num_maskmem - 1`` frames, object pointers), each frame's prediction encoded into
   memory before the next (no detaching: the loss reaches earlier frames through the
   memories);
3. per frame and object (SAM 2, App. C): ``focal_weight * focal + dice_weight * dice``
   on the best of the multimask candidates (the one with the lowest mask loss), an L1
   loss between the predicted and the actual IoU of every candidate (or, with
   ``iou_loss="bce"``, a binary cross-entropy against the actual IoU), both only for
   objects visible on that frame, and a binary cross-entropy of the object-score logit
   against visibility (``score_weight``). Mask losses are computed at the model's input
   resolution on the candidates' bilinearly upsampled logits, taken before the
   object-score gate (:attr:`TrackOutput.decoder_masks`), so the mask head learns also
   while the score head still calls a visible object absent. The sum over frames is
   averaged over objects and frames.

What is left out of SAM 2's recipe (to keep a CPU demo short, and noted here so that
users know): corrective clicks on later frames, the multi-round interaction on the
conditioning frame, mixing in SA-1B images, random time reversal, and drop-path.
AdamW with linear warmup and cosine decay; all randomness of step ``k`` comes from
generators seeded by ``(seed, k)``, so a resumed run replays the same clips.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from samkit.data.synthetic_video import SyntheticClip, SyntheticVideoConfig, generate_clip
from samkit.errors import InvalidConfig
from samkit.modeling.sam2 import Sam2
from samkit.train.checkpoints import (
    atomic_torch_save,
    load_trainer_state,
    metrics_record,
    save_weights,
    start_run_folder,
)
from samkit.train.losses import check_finite, dice_loss, mask_iou, sigmoid_focal_loss
from samkit.video.frames import model_frame
from samkit.video.state import Memory, Points, TrackOutput
from samkit.video.tracker import encode_frame_with_grad, track_step_with_grad

__all__ = ["BestActualCandidate", "VideoTrainConfig", "VideoTrainer", "clip_loss"]

_STATE_FORMAT = "samkit.train.VideoTrainerState/1"
_METRICS = ("loss", "mask", "iou_loss", "score_loss", "iou", "visible_acc")


@dataclass
class VideoTrainConfig:
    """Hyper-parameters of :class:`VideoTrainer` (see the module docstring).

    ``clip``: the synthetic clip generator's settings; its ``size`` is replaced by the
    model's input size and ``num_frames`` by ``num_frames``.

    ``iou_loss``: ``"l1"`` (SAM 2's) or ``"bce"``: binary cross-entropy between the
    sigmoid IoU head's output and the actual IoU. Its gradient with respect to the head's
    logit is ``predicted - actual``, where L1's is scaled by the sigmoid's slope: in a
    from-scratch run, where every actual IoU starts near 0, L1 drove the head's logits to
    about -6 and left them there (predictions 0.003 for every candidate), so the
    tracker's choice among the candidates was blind (see docs/demo_video_training.md).

    ``teacher_forcing_steps``: for the first N optimizer steps, every frame that gets
    several candidates keeps the one with the highest actual IoU against the ground truth
    for its memory and object pointer (:class:`BestActualCandidate`)
    instead of the one the IoU head ranks first, so later frames learn from good memories
    while the head cannot rank yet. The losses are unchanged. Default 0 (off: train as
    the tracker runs).
    """

    max_steps: int = 1000
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    clip_grad_norm: float = 1.0
    seed: int = 0
    num_frames: int = 8
    prob_mask_prompt: float = 0.5
    prob_box_prompt: float = 0.5
    focal_weight: float = 20.0
    dice_weight: float = 1.0
    iou_weight: float = 1.0
    iou_loss: str = "l1"
    teacher_forcing_steps: int = 0
    score_weight: float = 1.0
    min_prompt_area: int = 30
    log_every: int = 10
    save_every: int = 250
    clip: SyntheticVideoConfig = field(default_factory=SyntheticVideoConfig)

    def __post_init__(self) -> None:
        if self.iou_loss not in ("l1", "bce"):
            raise InvalidConfig(
                f"iou_loss must be 'l1' or 'bce', got {self.iou_loss!r}", field="iou_loss"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoTrainConfig:
        data = dict(data)
        clip = data.pop("clip", None)
        cfg = cls(**data)
        if clip is not None:
            clip = {k: tuple(v) if isinstance(v, list) else v for k, v in clip.items()}
            cfg.clip = SyntheticVideoConfig(**clip)
        return cfg

    def lr_factor(self, step: int) -> float:
        """Multiplier of ``lr`` at 0-based ``step``: linear warmup, then cosine to
        ``min_lr_ratio`` at ``max_steps``."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        span = max(1, self.max_steps - self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / span)
        r = self.min_lr_ratio
        return r + (1 - r) * 0.5 * (1 + math.cos(math.pi * t))


def _frame_prompt(
    rng: np.random.Generator, masks: np.ndarray, kind: str, image_size: int
) -> Points:
    """One click inside each ``(H, W)`` mask, or its noisy box, as model-frame points."""
    h, w = masks.shape[-2:]
    coords, labels = [], []
    for m in masks:
        ys, xs = np.nonzero(m)
        if kind == "click":
            i = int(rng.integers(ys.size))
            coords.append([[xs[i] + 0.5, ys[i] + 0.5]])
            labels.append([1])
        else:
            x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            sides = np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0], dtype=float)
            noise = rng.normal(0, 1, size=4) * np.minimum(0.1 * sides, 20.0)
            box = np.array([x0, y0, x1, y1], dtype=float) + noise
            box = np.clip(box, 0, [w, h, w, h])
            coords.append([[box[0], box[1]], [box[2], box[3]]])
            labels.append([2, 3])
    c = torch.tensor(coords, dtype=torch.float32) / torch.tensor([w, h]) * image_size
    return Points(c, torch.tensor(labels, dtype=torch.int32))


@dataclass(frozen=True)
class BestActualCandidate:
    """Teacher forcing's choice among a frame's candidates (a ``choose_candidate`` hook
    of :func:`~samkit.video.tracker.track_step_with_grad`): the candidate with the highest
    actual IoU against ``targets``, ``(B, 1, S, S)`` binary masks at the input size. The
    ``(B, K, h, w)`` candidate logits are upsampled (bilinear) to ``S`` and thresholded at
    0 (:func:`~samkit.train.losses.mask_iou`); ties go to the lower index."""

    targets: torch.Tensor

    def __call__(self, candidates: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(
            candidates, size=self.targets.shape[-2:], mode="bilinear", align_corners=False
        )
        return mask_iou(up, self.targets.to(up.device)).argmax(dim=1)


def clip_loss(
    outputs: list[TrackOutput],
    targets: torch.Tensor,
    visible: torch.Tensor,
    scored: list[bool],
    config: VideoTrainConfig,
) -> dict[str, torch.Tensor]:
    """The loss of one tracked clip.

    Args:
        outputs: per frame, the :class:`TrackOutput` of the ``B`` objects.
        targets: ``(T, B, 1, S, S)`` float ``{0, 1}`` visible masks at the input size.
        visible: ``(T, B)`` bool, whether each object is visible on each frame.
        scored: per frame, whether the frame's prediction is trained (a mask-prompted
            frame is the prompt itself and is skipped).
        config: the loss weights.

    Returns:
        ``loss`` (scalar, back-propagate this) and detached metrics: ``mask``,
        ``iou_loss``, ``score_loss``, ``iou`` (actual IoU of the chosen candidate on
        visible objects), ``visible_acc`` (accuracy of ``score > 0``).
    """
    total = targets.new_zeros(())
    parts = {k: targets.new_zeros(()) for k in ("mask", "iou_loss", "score_loss")}
    ious: list[torch.Tensor] = []
    acc: list[torch.Tensor] = []
    n = 0
    for t, out in enumerate(outputs):
        if not scored[t]:
            continue
        s = targets.shape[-1]
        raw = out.decoder_masks if out.decoder_masks is not None else out.multimask_logits
        logits = F.interpolate(raw, size=(s, s), mode="bilinear")
        tgt = targets[t]  # (B, 1, S, S)
        vis = visible[t].to(logits.dtype)  # (B,)
        focal = sigmoid_focal_loss(logits, tgt)  # (B, K)
        dice = dice_loss(logits, tgt)
        per = config.focal_weight * focal + config.dice_weight * dice
        best = per.detach().argmin(dim=1)
        rows = torch.arange(per.shape[0])
        true_iou = mask_iou(logits.detach(), tgt).to(out.ious.dtype)  # (B, K)
        mask_term = (per[rows, best] * vis).sum()
        if config.iou_loss == "bce":
            err = F.binary_cross_entropy(out.ious.float(), true_iou.float(), reduction="none")
        else:
            err = (out.ious - true_iou).abs()
        iou_term = (err.mean(dim=1) * vis).sum()
        score = out.object_score_logits[:, 0]
        score_term = F.binary_cross_entropy_with_logits(score, vis, reduction="sum")
        total = total + mask_term + config.iou_weight * iou_term
        total = total + config.score_weight * score_term
        parts["mask"] += mask_term.detach()
        parts["iou_loss"] += iou_term.detach()
        parts["score_loss"] += score_term.detach()
        chosen = out.ious.detach().argmax(dim=1)
        ious.extend(true_iou[rows, chosen][visible[t]])
        acc.append(((score.detach() > 0) == visible[t]).float().mean())
        n += per.shape[0]
    n = max(n, 1)
    return {
        "loss": total / n,
        **{k: v / n for k, v in parts.items()},
        "iou": torch.stack(ious).mean() if ious else targets.new_zeros(()),
        "visible_acc": torch.stack(acc).mean() if acc else targets.new_zeros(()),
    }


class VideoTrainer:
    """Trains a :class:`~samkit.modeling.sam2.Sam2` on synthetic clips.

    Args:
        model: the model (its input size sets the clips' frame size).
        config: hyper-parameters.
        out_dir: where ``metrics.jsonl``, checkpoints (official key format) and the
            resumable ``trainer_state.pt`` go.
    """

    def __init__(self, model: Sam2, config: VideoTrainConfig, out_dir: str | Path):
        head = model.sam_mask_decoder.iou_prediction_head
        if config.iou_loss == "bce" and not head.sigmoid_output:
            raise InvalidConfig(
                "iou_loss='bce' needs a sigmoid IoU head (SAM 2 configs have one)",
                field="iou_loss",
            )
        self.model = model
        self.config = config
        self.out_dir = Path(out_dir)
        self._continuing = False  # resumed, or fit() already wrote to out_dir
        s = model.image_size
        self.clip_config = SyntheticVideoConfig(
            **{**asdict(config.clip), "size": (s, s), "num_frames": config.num_frames}
        )
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            (decay if p.dim() >= 2 and "pos_embed" not in name else no_decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": config.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=config.lr,
        )
        self.step = 0

    def clip(self, step: int) -> SyntheticClip:
        """The clip of 0-based ``step``."""
        return generate_clip(np.random.default_rng([self.config.seed, step, 0]), self.clip_config)

    def clip_forward(
        self, clip: SyntheticClip, rng: np.random.Generator
    ) -> dict[str, torch.Tensor] | None:
        """Track ``clip``'s objects (those visible on frame 0) with gradient and return
        :func:`clip_loss` (``None`` when no object is visible on frame 0)."""
        cfg, model = self.config, self.model
        s = model.image_size
        area0 = clip.masks[:, 0].reshape(clip.num_objects, -1).sum(1)
        objs = np.nonzero(area0 >= cfg.min_prompt_area)[0]
        if objs.size == 0:
            return None
        masks = clip.masks[objs]  # (B, T, H, W)
        t_len, b = clip.num_frames, int(objs.size)
        targets = torch.from_numpy(masks).permute(1, 0, 2, 3).unsqueeze(2).float()
        if targets.shape[-1] != s:
            targets = F.interpolate(targets.flatten(0, 1), size=(s, s), mode="nearest").view(
                t_len, b, 1, s, s
            )
        visible = targets.flatten(2).amax(dim=2) > 0  # (T, B)
        u = rng.random()
        kind = "mask" if u < cfg.prob_mask_prompt else None
        if kind is None:
            kind = "box" if rng.random() < cfg.prob_box_prompt else "click"
        teacher = self.step < cfg.teacher_forcing_steps
        outputs: list[TrackOutput] = []
        cond: dict[int, Memory] = {}
        non_cond: dict[int, Memory] = {}
        for t in range(t_len):
            feats = encode_frame_with_grad(model, model_frame(model, clip.frames[t]))
            if t == 0:
                points = None if kind == "mask" else _frame_prompt(rng, masks[:, 0], kind, s)
                out = track_step_with_grad(
                    model,
                    0,
                    feats,
                    is_init_cond_frame=True,
                    point_inputs=points,
                    mask_inputs=targets[0] if kind == "mask" else None,
                    num_frames=t_len,
                    choose_candidate=BestActualCandidate(targets[0]) if teacher else None,
                )
                cond[0] = out.to_memory(0, True, storage_dtype=None)
            else:
                out = track_step_with_grad(
                    model,
                    t,
                    feats,
                    is_init_cond_frame=False,
                    cond_memories=cond,
                    non_cond_memories=non_cond,
                    num_frames=t_len,
                    num_objects=b,
                    choose_candidate=BestActualCandidate(targets[t]) if teacher else None,
                )
                non_cond[t] = out.to_memory(t, False, storage_dtype=None)
            outputs.append(out)
        scored = [kind != "mask"] + [True] * (t_len - 1)
        return clip_loss(outputs, targets, visible, scored, cfg)

    def train_step(self) -> dict[str, float]:
        """One optimizer step on one clip; returns its metrics."""
        cfg = self.config
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        lr = cfg.lr * cfg.lr_factor(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        rng = np.random.default_rng([cfg.seed, self.step, 1])
        out = self.clip_forward(self.clip(self.step), rng)
        grad_norm = 0.0
        if out is not None:
            check_finite(out["loss"], self.step + 1)
            out["loss"].backward()
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            max_norm = cfg.clip_grad_norm if cfg.clip_grad_norm else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
            self.optimizer.step()
        self.step += 1
        metrics = {k: float(out[k].detach()) if out else 0.0 for k in _METRICS}
        return {"step": self.step, "lr": lr, **metrics, "grad_norm": grad_norm}

    def fit(self, progress: bool = True, overwrite: bool = False) -> list[dict[str, float]]:
        """Train to ``max_steps``: averaged metrics to ``metrics.jsonl`` every
        ``log_every`` steps, checkpoint and state every ``save_every``, and
        ``model_final.pt`` at the end. Returns the logged records.

        As :meth:`samkit.train.Trainer.fit`: a new run (no :meth:`resume`, no earlier
        ``fit``) refuses an ``out_dir`` holding another run unless ``overwrite``, which
        deletes that run's files first.

        Raises:
            OutputError: ``out_dir`` holds another run and not ``overwrite``, or cannot
                be written.
            InvalidArgument: (a ``ValueError``) ``overwrite`` for a trainer that continues
                a run.
        """
        cfg = self.config
        start_run_folder(self.out_dir, new=not self._continuing, overwrite=overwrite)
        self._continuing = True
        records: list[dict[str, float]] = []
        window: list[dict[str, float]] = []
        t_start = time.perf_counter()
        while self.step < cfg.max_steps:
            t0 = time.perf_counter()
            m = self.train_step()
            m["time_s"] = time.perf_counter() - t0
            window.append(m)
            if cfg.log_every and (self.step % cfg.log_every == 0 or self.step == cfg.max_steps):
                rec = metrics_record(self.step, window, (*_METRICS, "grad_norm"))
                assert rec is not None  # every video step has a loss
                with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps(rec) + "\n")
                records.append(rec)
                window = []
                if progress:
                    elapsed = time.perf_counter() - t_start
                    print(
                        f"step {self.step}/{cfg.max_steps} loss {rec['loss']:.3f} "
                        f"iou {rec['iou']:.3f} vis {rec['visible_acc']:.3f} "
                        f"{rec['time_s']:.2f} s/step ({elapsed / 60:.1f} min)",
                        flush=True,
                    )
            if cfg.save_every and self.step % cfg.save_every == 0:
                self.save_checkpoint(self.out_dir / "checkpoints" / f"step_{self.step:07d}.pt")
                self.save_state(self.out_dir / "trainer_state.pt")
        self.save_checkpoint(self.out_dir / "model_final.pt")
        self.save_state(self.out_dir / "trainer_state.pt")
        return records

    def save_checkpoint(self, path: str | Path) -> Path:
        """The model's weights as an official-format state dict (atomic write)."""
        return save_weights(self.model, path)

    def save_state(self, path: str | Path) -> Path:
        """Model, optimizer, step and RNG state: :meth:`resume` continues identically."""
        state = {
            "format": _STATE_FORMAT,
            "step": self.step,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "config": json.dumps(self.config.to_dict()),
        }
        return atomic_torch_save(state, path)

    def resume(self, path: str | Path) -> None:
        """Restore a :meth:`save_state` file (:class:`~samkit.errors.CheckpointError`,
        with nothing changed, for a file that is not one or does not match this model)."""
        state = load_trainer_state(
            path,
            _STATE_FORMAT,
            "video trainer",
            self.model,
            self.optimizer,
            required={"step": int},
        )
        self.step = int(state["step"])
        self._continuing = True
