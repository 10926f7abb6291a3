"""Train samkit's demo video model (``samkit-demo-video``) from seeded random weights.

    python scripts/train_demo_video.py runs/samkit-demo-video --steps 2000 --seed 0
    python scripts/train_demo_video.py runs/samkit-demo-video --resume   # continue

The architecture is ``samkit.configs.registry.DEMO_VIDEO_CONFIG``; the recipe is
:class:`samkit.train.video.VideoTrainer` (synthetic 8-frame clips with an occluder at the
model's 256-pixel input). Weights are initialised with ``torch.manual_seed(seed)``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import samkit
from samkit.configs.registry import DEMO_VIDEO_CONFIG
from samkit.train.video import VideoTrainConfig, VideoTrainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true", help="continue from out_dir's state")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    model = samkit.build_model(DEMO_VIDEO_CONFIG)
    config = VideoTrainConfig(max_steps=args.steps, lr=args.lr, seed=args.seed, save_every=100)
    trainer = VideoTrainer(model, config, args.out_dir)
    if args.resume:
        trainer.resume(args.out_dir / "trainer_state.pt")
    trainer.fit()


if __name__ == "__main__":
    main()
