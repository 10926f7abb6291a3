"""Export a trained samkit-demo checkpoint as the fp16 safetensors file shipped in the
package (halves the size; the model is evaluated from this file, so the published numbers
are those of the shipped weights).

    python scripts/export_demo.py RUN/train/model_final.pt src/samkit/assets/samkit-demo.safetensors
    python scripts/export_demo.py --video RUN/model_final.pt \
        src/samkit/assets/samkit-demo-video.safetensors
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import torch
from safetensors.torch import save

import samkit
from samkit.configs.registry import DEMO_VIDEO_CONFIG
from samkit.fileio import atomic_write_bytes
from samkit.weights import read_state_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--video", action="store_true", help="the samkit-demo-video model")
    args = parser.parse_args()
    state = read_state_dict(args.checkpoint)
    # Strict load first: the file must be a complete state dict of the architecture.
    name = "samkit-demo-video" if args.video else "samkit-demo"
    samkit.load_model(DEMO_VIDEO_CONFIG if args.video else name, checkpoint=args.checkpoint)
    half = {
        k: (v.to(torch.float16) if v.is_floating_point() else v).contiguous()
        for k, v in sorted(state.items())
    }
    data = save(half, metadata={"model": name, "format": "official-keys"})
    atomic_write_bytes(args.out, data)
    print(
        f"wrote {args.out} ({len(data) / 2**20:.1f} MiB, sha256 {hashlib.sha256(data).hexdigest()})"
    )


if __name__ == "__main__":
    main()
