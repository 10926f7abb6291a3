"""Train samkit's demo video model (``samkit-demo-video``) from seeded random weights.

    python scripts/train_demo_video.py runs/samkit-demo-video --steps 2000 --seed 0
    python scripts/train_demo_video.py runs/samkit-demo-video --resume   # continue
    python scripts/train_demo_video.py RUN2 --init-checkpoint RUN/model_final.pt \
        --reinit-iou-head --iou-loss bce --seed 1     # a second phase from earlier weights
    python scripts/train_demo_video.py RUN3 --init-checkpoint PRE/model_final.pt \
        --positional-init 2.5   # after scripts/pretrain_demo_video.py (image pre-training)

The architecture is ``samkit.configs.registry.DEMO_VIDEO_CONFIG``; the recipe is
:class:`samkit.train.video.VideoTrainer` (synthetic 8-frame clips with an occluder at the
model's 256-pixel input). Weights are initialised with ``torch.manual_seed(seed)``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

import samkit
from samkit.configs.registry import DEMO_VIDEO_CONFIG
from samkit.train.video import VideoTrainConfig, VideoTrainer


def positional_memory_init(model: torch.nn.Module, scale: float, pairs: int = 8) -> None:
    """Start every memory cross-attention as a *positional* read-out: the query and key
    biases are the same vector ``scale * u`` with ``u`` one on the real part of the
    ``pairs`` highest-frequency RoPE pairs of each axis (zero elsewhere), and the
    content weights are shrunk 10x. The scores then start as
    ``scale^2 sum_j cos(theta_j dx) + ...``, peaked at the same position in every memory,
    so a frame reads the memories where it is, and the object-identity signal reaches
    the decoder from the first step (a from-scratch run without this segmented the most
    salient shape, ignoring the memory, for its first 300+ steps)."""
    with torch.no_grad():
        for layer in model.memory_attention.layers:
            attn = layer.cross_attn_image
            d = attn.q_proj.out_features // attn.num_heads
            u = torch.zeros(d)
            for j in list(range(pairs)) + list(range(d // 4, d // 4 + pairs)):
                u[2 * j] = 1.0
            u = u.repeat(attn.num_heads)
            for proj in (attn.q_proj, attn.k_proj):
                proj.weight.mul_(0.1)
                proj.bias.copy_(scale * u)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true", help="continue from out_dir's state")
    ap.add_argument("--warmup", type=int, default=100, help="warmup steps")
    ap.add_argument(
        "--init-checkpoint",
        type=Path,
        default=None,
        help="start from these weights (a previous phase) instead of random ones",
    )
    ap.add_argument(
        "--reinit-iou-head",
        action="store_true",
        help="zero the IoU head's last layer (every prediction 0.5) before training",
    )
    ap.add_argument("--iou-loss", choices=("l1", "bce"), default="l1")
    ap.add_argument(
        "--teacher-forcing-steps",
        type=int,
        default=0,
        metavar="N",
        help="for the first N steps, memories and pointers come from the candidate with the"
        " best actual IoU, not the best predicted one",
    )
    ap.add_argument(
        "--single-output-tracking",
        action="store_true",
        help="tracked frames use the decoder's single output (multimask_output_for_tracking"
        " off), so no IoU-ranked choice among three candidates",
    )
    ap.add_argument(
        "--positional-init",
        type=float,
        default=0.0,
        metavar="SCALE",
        help="start the memory cross-attentions as positional read-outs (0: off); with "
        "--init-checkpoint only for weights whose memory was never trained (e.g. "
        "scripts/pretrain_demo_video.py's image pre-training)",
    )
    args = ap.parse_args()
    cfg = replace(DEMO_VIDEO_CONFIG, multimask_output_for_tracking=not args.single_output_tracking)
    torch.manual_seed(args.seed)
    if args.init_checkpoint is not None:
        model = samkit.load_model(cfg, checkpoint=args.init_checkpoint)
    else:
        model = samkit.build_model(cfg)
    if args.positional_init:
        positional_memory_init(model, args.positional_init)
    if args.reinit_iou_head:
        last = model.sam_mask_decoder.iou_prediction_head.layers[-1]
        with torch.no_grad():
            last.weight.zero_()
            last.bias.zero_()
    config = VideoTrainConfig(
        max_steps=args.steps,
        lr=args.lr,
        warmup_steps=args.warmup,
        seed=args.seed,
        save_every=100,
        iou_loss=args.iou_loss,
        teacher_forcing_steps=args.teacher_forcing_steps,
    )
    trainer = VideoTrainer(model, config, args.out_dir)
    if args.resume:
        trainer.resume(args.out_dir / "trainer_state.pt")
    trainer.fit()


if __name__ == "__main__":
    main()
