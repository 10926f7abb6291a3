"""Write the initial weights of the samkit-demo training run (seeded, reproducible).

    python scripts/init_demo.py OUT.pt [--seed 0]

Random weights as ``samkit.build_model`` makes them, with one change that makes training
from scratch practical on a CPU: the query and key projections of every cross-attention
in the mask decoder's two-way transformer (token->image, image->token, final) start as
the *same* scaled random orthonormal projection. The attention logits then contain
``pe(point) . pe(pixel)``, a kernel peaked where the pixel is the prompt's location, so the
decoder routes prompt locations from the first step. With the default initialisation a
from-scratch run learnt object saliency but ignored the prompt location for its first
500+ steps (masks identical for every click of an image).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import torch

import samkit
from samkit.fileio import atomic_write_bytes
from samkit.layers.attention import Attention

QK_GAIN = 2.0  # logit gap between a token's own position and far positions ~ 4 per head


def aligned_init(model: torch.nn.Module, generator: torch.Generator) -> None:
    transformer = model.mask_decoder.transformer
    for name, module in transformer.named_modules():
        if not isinstance(module, Attention) or "self_attn" in name:
            continue
        out_dim, in_dim = module.q_proj.weight.shape
        if module.k_proj.weight.shape != (out_dim, in_dim):
            continue
        basis, _ = torch.linalg.qr(torch.randn(in_dim, out_dim, generator=generator))
        weight = QK_GAIN * basis.T.contiguous()  # (out, in), orthonormal rows
        with torch.no_grad():
            module.q_proj.weight.copy_(weight)
            module.k_proj.weight.copy_(weight)
            module.q_proj.bias.zero_()
            module.k_proj.bias.zero_()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = samkit.build_model("samkit-demo")
    aligned_init(model, torch.Generator().manual_seed(args.seed + 1))
    buf = io.BytesIO()
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, buf)
    atomic_write_bytes(args.out, buf.getvalue())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
