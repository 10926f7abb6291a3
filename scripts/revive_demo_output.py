"""Re-initialise a collapsed multimask output of a SAM 1-family checkpoint.

    python scripts/revive_demo_output.py IN.pt OUT.pt [--dead 2] [--source 3] [--noise 0.01]

Why: the SAM loss back-propagates only through the best of the three multimask outputs.
An output that starts out predicting something useless (in the demo run: the whole
image) never is the best, so it never receives a gradient and stays useless for the
rest of training. The first samkit-demo run ended with mask token 2 in that state: it won
2 of 147 held-out clicks and its hypernetwork MLP still had its random initial weights.

This script copies the parameters that make up output ``--source`` (its mask token, its
hypernetwork MLP and its row of the IoU head's last layer) into output ``--dead`` and adds
Gaussian noise of ``--noise`` times each tensor's standard deviation (seeded), so the two
outputs start almost equal and split by specialising: on each click only the better of
the two is trained. Token indices count the single-mask output as 0, so the three
multimask outputs are 1, 2 and 3. Everything else is copied unchanged; the output
loads with ``samkit.load_model(..., checkpoint=OUT)`` and ``samkit train --init-checkpoint``.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import torch

from samkit.fileio import atomic_write_bytes


def revive(
    state: dict[str, torch.Tensor], dead: int, source: int, noise: float, seed: int
) -> dict[str, torch.Tensor]:
    """A copy of ``state`` with output ``dead`` re-initialised from output ``source``."""
    gen = torch.Generator().manual_seed(seed)
    out = {k: v.clone() for k, v in state.items()}

    def noisy(t: torch.Tensor) -> torch.Tensor:
        x = t.float()
        scale = noise * float(x.std()) if x.numel() > 1 else noise * float(x.abs())
        return (x + scale * torch.randn(x.shape, generator=gen)).to(t.dtype)

    prefix = "mask_decoder."
    tokens = out[prefix + "mask_tokens.weight"]
    tokens[dead] = noisy(tokens[source])
    src_mlp = f"{prefix}output_hypernetworks_mlps.{source}."
    dst_mlp = f"{prefix}output_hypernetworks_mlps.{dead}."
    for key in [k for k in state if k.startswith(src_mlp)]:
        out[dst_mlp + key[len(src_mlp) :]] = noisy(state[key])
    last = max(
        int(k.split(".")[3]) for k in state if k.startswith(prefix + "iou_prediction_head.layers.")
    )
    for suffix in ("weight", "bias"):
        head = out[f"{prefix}iou_prediction_head.layers.{last}.{suffix}"]
        head[dead] = head[source]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--dead", type=int, default=2)
    parser.add_argument("--source", type=int, default=3)
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.out.resolve() == args.checkpoint.resolve():
        parser.error("OUT must differ from the input checkpoint")
    state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    state = state.get("model", state)
    revived = revive(state, args.dead, args.source, args.noise, args.seed)
    buf = io.BytesIO()
    torch.save(revived, buf)
    atomic_write_bytes(args.out, buf.getvalue())
    print(f"output {args.dead} re-initialised from output {args.source} -> {args.out}")


if __name__ == "__main__":
    main()
