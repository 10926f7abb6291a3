"""Helpers for the SAM 2 parity tests: the official ``sam2`` model built from a samkit
``Sam2Config`` through the official Hydra configs (with overrides for reduced sizes),
and shared random weights.

The official package is imported through ``reference_shims`` (torchvision stand-ins);
every helper fails loudly when it cannot be imported.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from pathlib import Path

import numpy as np
import reference_shims
import torch
from PIL import Image
from torch import nn

import samkit
from samkit.configs.base import (
    FpnConfig,
    HieraConfig,
    MemoryConfig,
    PromptEncoderConfig,
    Sam2Config,
)

# A reduced model: every code path of the full one (windowed + global blocks, q-pooling
# at each stage, FPN top-down level, high-res skips), a fraction of the cost.
REDUCED_HIERA = HieraConfig(
    embed_dim=32,
    num_heads=1,
    stages=(1, 2, 3, 1),
    global_att_blocks=(4,),
    window_spec=(8, 4, 4, 2),
    window_pos_embed_bkg_spatial_size=(4, 4),
)


def reduced_config(version: str = "2.1", image_size: int = 512) -> Sam2Config:
    """Reduced Hiera at a smaller input (the decoder keeps its official widths)."""
    emb = image_size // 16
    return Sam2Config(
        encoder=REDUCED_HIERA,
        neck=FpnConfig(),
        memory=MemoryConfig(feat_sizes=(emb, emb)),
        prompt_encoder=PromptEncoderConfig(image_embedding_size=emb, input_image_size=image_size),
        image_size=image_size,
        version=version,
    )


#: Size of :func:`write_clip`'s frames.
CLIP_H, CLIP_W = 120, 160


def write_clip(folder: Path, num_frames: int) -> None:
    """``num_frames`` JPEG frames ``00000.jpg`` ...: a red rectangle moving right and a
    green one moving up over uniform noise (the tracking parity tests' clip)."""
    rng = np.random.default_rng(0)
    for t in range(num_frames):
        noise = rng.integers(0, 256, (CLIP_H, CLIP_W, 3), dtype=np.uint8)
        img = (noise * 0.5 + 60).astype(np.uint8)
        x = 20 + 6 * t
        img[30:70, x : x + 40] = (220, 40, 40)
        y = 70 - 4 * t
        img[y : y + 30, 100:140] = (40, 200, 60)
        Image.fromarray(img).save(folder / f"{t:05d}.jpg", quality=90)


def tiny_video_config(version: str = "2.1") -> Sam2Config:
    """A very small SAM 2 for video-session and CLI tests: 64-pixel input, one block per
    Hiera stage, one-layer memory attention and decoder (random weights only)."""
    cfg = reduced_config(version, 64)
    return dataclasses.replace(
        cfg,
        encoder=dataclasses.replace(cfg.encoder, stages=(1, 1, 1, 1), global_att_blocks=(2,)),
        memory=dataclasses.replace(cfg.memory, num_layers=1, dim_feedforward=64),
        mask_decoder=dataclasses.replace(
            cfg.mask_decoder, transformer_depth=1, transformer_mlp_dim=64, iou_head_hidden_dim=32
        ),
    )


def _yaml_name(version: str) -> str:
    return (
        "configs/sam2.1/sam2.1_hiera_t.yaml"
        if version == "2.1"
        else "configs/sam2/sam2_hiera_t.yaml"
    )


def _overrides(cfg: Sam2Config) -> list[str]:
    enc = cfg.encoder

    def lst(values) -> str:
        return "[" + ",".join(str(v) for v in values) + "]"

    t = "++model.image_encoder.trunk."
    return [
        f"{t}embed_dim={enc.embed_dim}",
        f"{t}num_heads={enc.num_heads}",
        f"{t}stages={lst(enc.stages)}",
        f"{t}global_att_blocks={lst(enc.global_att_blocks)}",
        f"{t}window_spec={lst(enc.window_spec)}",
        f"{t}window_pos_embed_bkg_spatial_size={lst(enc.window_pos_embed_bkg_spatial_size)}",
        f"++model.image_encoder.neck.backbone_channel_list={lst(enc.channel_list)}",
        f"++model.image_size={cfg.image_size}",
        f"++model.multimask_output_for_tracking={str(cfg.multimask_output_for_tracking).lower()}",
        f"++model.memory_attention.layer.self_attention.feat_sizes={lst(cfg.memory.feat_sizes)}",
        f"++model.memory_attention.layer.cross_attention.feat_sizes={lst(cfg.memory.feat_sizes)}",
        *_width_overrides(cfg),
    ]


def _width_overrides(cfg: Sam2Config) -> list[str]:
    """Widths and depths the official yaml exposes (the SAM heads' other sizes are fixed
    in ``SAM2Base``: depth 2, 8 heads, MLP 2048, IoU head 256, equal to samkit's defaults)."""
    d, mem = cfg.neck.d_model, cfg.memory
    ma, me = "++model.memory_attention", "++model.memory_encoder"
    return [
        f"++model.image_encoder.neck.d_model={d}",
        f"++model.image_encoder.neck.position_encoding.num_pos_feats={d}",
        f"{ma}.d_model={mem.d_model}",
        f"{ma}.num_layers={mem.num_layers}",
        f"{ma}.layer.d_model={mem.d_model}",
        f"{ma}.layer.dim_feedforward={mem.dim_feedforward}",
        f"{ma}.layer.dropout={mem.dropout}",
        f"{ma}.layer.self_attention.embedding_dim={mem.d_model}",
        f"{ma}.layer.self_attention.dropout={mem.dropout}",
        f"{ma}.layer.cross_attention.embedding_dim={mem.d_model}",
        f"{ma}.layer.cross_attention.kv_in_dim={mem.mem_dim}",
        f"{ma}.layer.cross_attention.dropout={mem.dropout}",
        f"{me}.out_dim={mem.mem_dim}",
        f"{me}.in_dim={d}",
        f"{me}.position_encoding.num_pos_feats={mem.mem_dim}",
        f"{me}.mask_downsampler.embed_dim={d}",
        f"{me}.fuser.layer.dim={d}",
        f"{me}.fuser.num_layers={mem.fuser_layers}",
    ]


def official_sam2(cfg: Sam2Config, device: str = "cpu") -> nn.Module:
    """The official ``SAM2Base`` for ``cfg``, built by ``sam2.build_sam.build_sam2``
    (with its post-processing flags: dynamic multimask via stability) in eval mode."""
    reference_shims.install()
    build_sam = reference_shims.import_sam2_module("build_sam")
    return build_sam.build_sam2(
        _yaml_name(cfg.version),
        ckpt_path=None,
        device=device,
        mode="eval",
        hydra_overrides_extra=_overrides(cfg),
    )


def official_image_predictor(model: nn.Module, image_size: int):
    """``SAM2ImagePredictor`` for ``model``; its feature sizes are hard-coded for a 1024
    input, so they are set for ``image_size``."""
    mod = reference_shims.import_sam2_module("sam2_image_predictor")
    with warnings.catch_warnings():  # it torch.jit.scripts its transforms (deprecated)
        warnings.simplefilter("ignore", DeprecationWarning)
        predictor = mod.SAM2ImagePredictor(model)
    s = image_size
    predictor._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
    return predictor


def random_state_dict(model: nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with healthy scales: weights ~ N(0, 1/fan_in), biases and
    embeddings small, norms near one (so activations neither vanish nor explode)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, t in model.state_dict().items():
        shape = t.shape
        if name.endswith("positional_encoding_gaussian_matrix"):
            v = torch.randn(shape, generator=g)
        elif t.dim() == 1 and name.endswith("weight"):  # LayerNorm / LayerNorm2d
            v = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif name.endswith("bias"):
            v = 0.02 * torch.randn(shape, generator=g)
        elif t.dim() >= 2 and not name.endswith(("_embed", "tpos_enc", "pos_embed_window")):
            fan_in = t[0].numel()
            v = torch.randn(shape, generator=g) / fan_in**0.5
        else:
            v = 0.2 * torch.randn(shape, generator=g)
        out[name] = v.to(t.dtype)
    return out


@functools.cache
def model_pair(version: str = "2.1", image_size: int = 512, seed: int = 0):
    """(samkit model, official model) for the reduced config, same random weights."""
    cfg = reduced_config(version, image_size)
    ours = samkit.build_model(cfg)
    official = official_sam2(cfg)
    sd = random_state_dict(official, seed)
    official.load_state_dict(sd, strict=True)
    ours.load_state_dict(sd, strict=True)
    return ours.eval(), official.eval()


# ------------------------------------------------------------------ official presets
#: samkit size name -> the letter(s) of the official yaml (``sam2.1_hiera_{t,s,b+,l}.yaml``).
OFFICIAL_SIZES = {"tiny": "t", "small": "s", "base-plus": "b+", "large": "l"}


def official_yaml(size: str, version: str) -> str:
    """The official Hydra config of a published SAM 2 (``"2.0"``) or 2.1 model."""
    letter = OFFICIAL_SIZES[size]
    if version == "2.1":
        return f"configs/sam2.1/sam2.1_hiera_{letter}.yaml"
    if version == "2.0":
        return f"configs/sam2/sam2_hiera_{letter}.yaml"
    raise ValueError(f"unknown SAM 2 version {version!r}")


def official_sam2_preset(size: str, version: str = "2.1", device: str = "cpu") -> nn.Module:
    """The official ``SAM2Base`` of a published model, built from its yaml as shipped: no
    overrides at all (not even ``build_sam2``'s post-processing flags, which change no
    weight), so its state dict is exactly what the official checkpoint file holds.

    ``device="meta"`` builds it without allocating anything. The official Hiera computes
    its drop-path rates with ``torch.linspace(...)[i].item()``, which meta tensors refuse,
    so ``torch.linspace`` is pinned to the CPU while the model is built (those rates are
    plain floats and shape nothing).
    """
    reference_shims.install()
    build_sam = reference_shims.import_sam2_module("build_sam")

    def build() -> nn.Module:
        return build_sam.build_sam2(
            official_yaml(size, version),
            ckpt_path=None,
            device=device,
            mode="eval",
            hydra_overrides_extra=[],
            apply_postprocessing=False,
        )

    if torch.device(device).type != "meta":
        return build()
    real_linspace = torch.linspace

    def cpu_linspace(*args, **kwargs):
        kwargs["device"] = "cpu"
        return real_linspace(*args, **kwargs)

    torch.linspace = cpu_linspace
    try:
        with torch.device("meta"):
            return build()
    finally:
        torch.linspace = real_linspace


def official_sam2_video(cfg: Sam2Config, device: str = "cpu") -> nn.Module:
    """The official ``SAM2VideoPredictor`` for ``cfg`` (the reduced-size overrides of
    :func:`official_sam2`), built by ``sam2.build_sam.build_sam2_video_predictor`` with
    its post-processing flags (dynamic multimask, binarised click masks for memory,
    ``fill_hole_area=8``), in eval mode; its state dict has the keys of
    :func:`official_sam2`'s model."""
    reference_shims.install()
    build_sam = reference_shims.import_sam2_module("build_sam")
    return build_sam.build_sam2_video_predictor(
        _yaml_name(cfg.version),
        ckpt_path=None,
        device=device,
        mode="eval",
        hydra_overrides_extra=_overrides(cfg),
    )
