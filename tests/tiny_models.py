"""Tiny random SAM architectures for fast CLI tests (registered in-process only)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

import samkit
from samkit.configs import (
    MaskDecoderConfig,
    ModelPreset,
    PromptEncoderConfig,
    SamConfig,
    ViTConfig,
    WeightSpec,
)
from samkit.configs.base import Sam2Config
from samkit.modeling import SamModel

# 256-pixel model input (16x16 embedding) instead of 1024 keeps every decode ~0.1 s.
TINY_256 = SamConfig(
    encoder=ViTConfig(embed_dim=32, depth=1, num_heads=1, global_attn_indexes=(0,), img_size=256),
    prompt_encoder=PromptEncoderConfig(image_embedding_size=16, input_image_size=256),
    mask_decoder=MaskDecoderConfig(transformer_mlp_dim=64, iou_head_hidden_dim=32),
    image_size=256,
)


def family_model(family: str) -> SamModel:
    """A small seeded model for decoder tests: ``"sam1"`` (:data:`TINY_256`) or
    ``"sam2"`` (reduced SAM 2.1 at 512 pixels, the weights the official-parity helpers
    load into the official model too)."""
    if family == "sam1":
        torch.manual_seed(0)
        return samkit.build_model(TINY_256).eval()
    import helpers_sam2

    model, _ = helpers_sam2.model_pair("2.1", 512, 0)
    return model


def register_checkpoint(
    path: Path,
    name: str,
    config: SamConfig | Sam2Config,
    url: str,
    description: str,
    aliases: tuple[str, ...] = (),
) -> Path:
    """Register preset ``name`` (once per process) whose weight spec (``url``, sha256,
    size, file name ``<name><suffix>``) describes the existing file ``path``."""
    data = path.read_bytes()
    if name not in samkit.list_models():
        samkit.configs.register(
            ModelPreset(
                name=name,
                config=config,
                weights=WeightSpec(
                    url=url,
                    filename=f"{name}{path.suffix}",
                    sha256=hashlib.sha256(data).hexdigest(),
                    size=len(data),
                ),
                description=description,
                aliases=aliases,
            )
        )
    return path


def save_and_register_tiny(
    folder: Path, name: str, url: str, description: str, aliases: tuple[str, ...] = ()
) -> Path:
    """Save seeded random ``TINY_256`` weights under ``folder`` and register preset ``name``
    whose weight spec (``url``, sha256, size) describes that file. Returns the file path."""
    torch.manual_seed(0)
    model = samkit.build_model(TINY_256)
    path = folder / "tiny.pth"
    torch.save(model.state_dict(), path)
    return register_checkpoint(path, name, TINY_256, url, description, aliases)


def assert_cli_error(result, *fragments: str) -> str:
    """Exit status 2 and exactly one stderr line ``samkit: error: ...`` holding every one of
    ``fragments``, with no traceback in the output. Returns that line."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("samkit: error: "), lines[0]
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]
