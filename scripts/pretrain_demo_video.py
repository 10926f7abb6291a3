"""Pre-train the demo video model's image path on still images (SAM 2's first stage).

    python scripts/pretrain_demo_video.py DATA RUN [--steps 4000] [--seed 0] [--resume]

SAM 2 is trained on SA-1B images before it sees video (Ravi et al., 2024, §4.4); the demo
video model (``samkit.configs.registry.DEMO_VIDEO_CONFIG``) trained on clips from random
weights had to learn its image encoder and its memory at once and did not get past
J&F 0.24 (docs/demo_video_training.md). This script runs the first stage on a
``samkit synth`` image set with :class:`samkit.train.Trainer` and the samkit-demo recipe
(SAM 2's loss: 20 x focal + dice on the best of three outputs, L1 on the predicted IoU,
cross-entropy on the object score; 5 rounds of simulated interaction, 8 masks an image;
AdamW lr 5e-4, weight decay 0.05, 100 warmup steps, cosine to 5 %, clipping 1.0). The
decoder's cross-attention query and key projections start aligned
(``scripts/init_demo.py``), as for samkit-demo. ``RUN/model_final.pt`` then seeds
``scripts/train_demo_video.py --init-checkpoint``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from init_demo import aligned_init

import samkit
from samkit.configs.registry import DEMO_VIDEO_CONFIG
from samkit.data import SA1BDataset
from samkit.train import TrainConfig, Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="samkit synth output (SA-1B layout)")
    parser.add_argument("run", type=Path, help="output folder")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue RUN/trainer_state.pt")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = samkit.build_model(DEMO_VIDEO_CONFIG)
    aligned_init(model, torch.Generator().manual_seed(args.seed + 1))
    config = TrainConfig(
        model="custom",
        pretrained=False,
        freeze_image_encoder=False,
        cache_embeddings=False,
        lr=5e-4,
        weight_decay=0.05,
        warmup_steps=100,
        max_steps=args.steps,
        schedule="cosine",
        min_lr_ratio=0.05,
        batch_size=1,
        masks_per_image=8,
        num_rounds=5,
        clip_grad_norm=1.0,
        seed=args.seed,
        log_every=25,
        save_every=250,
        progress=False,
        out_dir=str(args.run),
    )
    trainer = Trainer(config, model, SA1BDataset(args.data))
    if args.resume:
        trainer.resume(args.run / "trainer_state.pt")
    trainer.fit()
    print(f"wrote {args.run / 'model_final.pt'}")


if __name__ == "__main__":
    main()
