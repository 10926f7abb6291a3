"""Shared helpers for the SAM 1 / MobileSAM parity and checkpoint tests.

The official packages are imported through ``reference_shims``; every helper that needs
them fails loudly (never skips) when they cannot be imported.

Expensive objects (models, random state dicts) are cached per process with
``functools.cache`` so several test modules can share them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from functools import partial

import numpy as np
import reference_shims
import torch
from torch import nn

import samkit
from samkit.configs import SamConfig, TinyViTConfig, ViTConfig

# The reduced ViT used by most parity tests: same code paths as the full model (windowed
# and global blocks, rel-pos, neck, 1024 input, 64x64 embedding), a fraction of the cost.
REDUCED_VIT = {"embed_dim": 96, "depth": 4, "num_heads": 4, "global_attn_indexes": (1, 3)}
REDUCED_CFG = SamConfig(encoder=ViTConfig(**REDUCED_VIT))

# samkit preset name -> official registry key.
OFFICIAL_SAM1_KEYS = {
    "sam-vit-b": "vit_b",
    "sam-vit-l": "vit_l",
    "sam-vit-h": "vit_h",
    "mobile-sam": "vit_t",
}


# --------------------------------------------------------------------------- official
def official_sam(
    embed_dim: int, depth: int, num_heads: int, global_attn_indexes: tuple[int, ...]
) -> nn.Module:
    """An official ``segment_anything`` Sam, built exactly like ``build_sam._build_sam``."""
    return official_sam_from_config(
        SamConfig(encoder=ViTConfig(embed_dim, depth, num_heads, tuple(global_attn_indexes)))
    )


def official_sam_from_config(cfg: SamConfig) -> nn.Module:
    """The official classes assembled with the numbers of a samkit ``SamConfig``: the
    ``segment_anything`` ones for a ViT encoder (any image size, patch size, window size
    and decoder widths), MobileSAM's for a TinyViT encoder (any widths and depths)."""
    enc, pe, dec = cfg.encoder, cfg.prompt_encoder, cfg.mask_decoder
    if isinstance(enc, ViTConfig):
        m = reference_shims.import_segment_anything().modeling
        encoder = m.ImageEncoderViT(
            depth=enc.depth,
            embed_dim=enc.embed_dim,
            img_size=enc.img_size,
            mlp_ratio=enc.mlp_ratio,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=enc.num_heads,
            patch_size=enc.patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=list(enc.global_attn_indexes),
            window_size=enc.window_size,
            out_chans=enc.out_chans,
        )
    elif isinstance(enc, TinyViTConfig):
        m = reference_shims.import_mobile_sam().modeling
        if enc.out_chans != 256:
            raise ValueError("MobileSAM's TinyViT neck has 256 output channels")
        encoder = m.TinyViT(
            img_size=enc.img_size,
            in_chans=3,
            num_classes=enc.num_classes,
            embed_dims=list(enc.embed_dims),
            depths=list(enc.depths),
            num_heads=list(enc.num_heads),
            window_sizes=list(enc.window_sizes),
            mlp_ratio=enc.mlp_ratio,
            drop_rate=0.0,
            drop_path_rate=0.0,
            use_checkpoint=False,
            mbconv_expand_ratio=enc.mbconv_expand_ratio,
            local_conv_size=enc.local_conv_size,
            layer_lr_decay=0.8,
        )
        _last_merge_keeps_resolution(encoder)
        if enc.img_size != 1024:
            _any_grid_size(encoder, pe.image_embedding_size)
    else:
        raise TypeError(f"no official class for {type(enc).__name__}")
    emb = pe.image_embedding_size
    sam = m.Sam(
        image_encoder=encoder,
        prompt_encoder=m.PromptEncoder(
            embed_dim=pe.embed_dim,
            image_embedding_size=(emb, emb),
            input_image_size=(pe.input_image_size, pe.input_image_size),
            mask_in_chans=pe.mask_in_chans,
        ),
        mask_decoder=m.MaskDecoder(
            num_multimask_outputs=dec.num_multimask_outputs,
            transformer=m.TwoWayTransformer(
                depth=dec.transformer_depth,
                embedding_dim=dec.transformer_dim,
                mlp_dim=dec.transformer_mlp_dim,
                num_heads=dec.transformer_heads,
            ),
            transformer_dim=dec.transformer_dim,
            iou_head_depth=dec.iou_head_depth,
            iou_head_hidden_dim=dec.iou_head_hidden_dim,
        ),
        pixel_mean=list(cfg.pixel_mean),
        pixel_std=list(cfg.pixel_std),
    )
    return sam.eval()


def _last_merge_keeps_resolution(encoder: nn.Module) -> None:
    """Shim: MobileSAM picks the stride of a patch merging from its output width (1 only
    for 320, 448 or 576, the widths of its released models), while its layer resolutions
    assume the merge into the last stage keeps the resolution (as samkit does for any
    width). For other widths (the demo's 160) set that one depthwise conv's stride to 1."""
    conv = encoder.layers[-2].downsample.conv2.c
    conv.stride = (1, 1)


def _any_grid_size(encoder: nn.Module, side: int) -> None:
    """Shim: MobileSAM's ``TinyViT.forward_features`` reshapes its tokens to a fixed
    64x64 grid (a 1024 input). For another input size, replace that one reshape by the
    model's ``side x side`` grid; every layer still runs the official code."""

    def forward_features(x: torch.Tensor) -> torch.Tensor:
        x = encoder.patch_embed(x)
        for layer in encoder.layers:
            x = layer(x)
        b, _, c = x.shape
        return encoder.neck(x.view(b, side, side, c).permute(0, 3, 1, 2))

    encoder.forward_features = forward_features


def official_registry_model(key: str) -> nn.Module:
    """``segment_anything.sam_model_registry[key]()``, or MobileSAM's for ``vit_t``."""
    if key == "vit_t":
        return reference_shims.import_mobile_sam().sam_model_registry["vit_t"]()
    return reference_shims.import_segment_anything().sam_model_registry[key]()


# ------------------------------------------------------------------ random weights
def random_state_dict(
    template: Mapping[str, torch.Tensor], seed: int, weight_gain: float = 1.0
) -> dict[str, torch.Tensor]:
    """A seeded random state dict with ``template``'s keys, shapes and dtypes.

    Scales keep activations O(1) through the network: fan-in scaled Linear/Conv weights,
    norm scales around 1, small biases, unit-normal embeddings/tokens, positive BatchNorm
    variances. Every key must be recognised (unknown entries fail the test).
    """
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name, t in template.items():
        leaf = name.rsplit(".", 1)[-1]
        shape = tuple(t.shape)

        def randn(*, g=gen, s=shape) -> torch.Tensor:
            return torch.randn(s, generator=g)

        if leaf == "num_batches_tracked":
            v = torch.randint(0, 1000, shape, generator=gen)
        elif leaf == "running_var":
            v = 0.5 + torch.rand(shape, generator=gen)
        elif leaf == "running_mean":
            v = 0.2 * randn()
        elif leaf == "attention_biases":
            v = randn()
        elif leaf in ("rel_pos_h", "rel_pos_w"):
            v = 0.5 * randn()
        elif leaf == "pos_embed":
            v = 0.5 * randn()
        elif leaf == "positional_encoding_gaussian_matrix":
            v = randn()
        elif name.endswith("_embed.weight") or name.endswith("_token.weight"):
            # not_a_point_embed, no_mask_embed, iou_token (nn.Embedding tables)
            v = randn()
        elif ".point_embeddings." in name or name.endswith("mask_tokens.weight"):
            v = randn()
        elif len(shape) == 1 and leaf == "weight":  # LayerNorm / BatchNorm scale
            v = 1.0 + 0.2 * randn()
        elif len(shape) == 1 and leaf == "bias":
            v = 0.1 * randn()
        elif len(shape) >= 2 and leaf == "weight":  # Linear / Conv / ConvTranspose
            # ConvTranspose2d (output_upscaling, stride == kernel): one tap per output pixel
            fan_in = t.shape[0] if "output_upscaling" in name else t[0].numel()
            v = weight_gain * randn() / math.sqrt(fan_in)
        else:
            raise AssertionError(f"unhandled state dict entry {name} {shape}")
        out[name] = v.to(t.dtype).contiguous()
    return out


def load_both(official: nn.Module, ours: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Strictly load ``state_dict`` into both models and put them in eval mode.

    ``eval()`` is called *after* loading: the official TinyViT caches its attention bias
    in ``eval()``.
    """
    official.load_state_dict(state_dict, strict=True)
    ours.load_state_dict(state_dict, strict=True)
    official.eval()
    ours.eval()


@functools.cache
def reduced_pair(seed: int = 0) -> tuple[nn.Module, samkit.modeling.sam.Sam, dict]:
    """Official and samkit models of ``REDUCED_CFG`` holding the same random weights."""
    official = official_sam(**REDUCED_VIT)
    ours = samkit.build_model(REDUCED_CFG)
    sd = random_state_dict(official.state_dict(), seed)
    load_both(official, ours, sd)
    return official, ours, sd


@functools.cache
def mobile_pair(seed: int = 0) -> tuple[nn.Module, samkit.modeling.sam.Sam, dict]:
    """Official MobileSAM (vit_t) and samkit ``mobile-sam`` with the same random weights."""
    official = official_registry_model("vit_t")
    ours = samkit.build_model("mobile-sam")
    sd = random_state_dict(official.state_dict(), seed)
    load_both(official, ours, sd)
    return official, ours, sd


# ------------------------------------------------------------------------- images
def make_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A deterministic ``(h, w, 3)`` uint8 image: smooth colour gradients, a disc, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    base = np.stack([xx, yy, 0.5 * (1 - xx) + 0.5 * yy], axis=-1) * 180.0
    cy, cx, r = 0.4 * h, 0.6 * w, 0.25 * min(h, w) + 1
    disc = ((yy * (h - 1) - cy) ** 2 + (xx * (w - 1) - cx) ** 2) < r * r
    base[disc] = [230.0, 40.0, 60.0]
    base += rng.normal(0.0, 12.0, size=base.shape)
    return np.clip(np.round(base), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------- comparisons
def to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def max_abs_diff(actual, expected) -> float:
    a, e = to_numpy(actual).astype(np.float64), to_numpy(expected).astype(np.float64)
    assert a.shape == e.shape, f"shape {a.shape} != expected {e.shape}"
    return float(np.abs(a - e).max()) if a.size else 0.0


def assert_close(actual, expected, what: str, rel: float = 1e-4) -> float:
    """``max|actual - expected| <= rel * max(1, max|expected|)``; returns the diff."""
    e = to_numpy(expected).astype(np.float64)
    scale = max(1.0, float(np.abs(e).max()) if e.size else 1.0)
    diff = max_abs_diff(actual, expected)
    print(f"{what}: max abs diff {diff:.3e} (scale {scale:.3g})")
    assert diff <= rel * scale, f"{what}: max abs diff {diff:.3e} > {rel:g} x {scale:.3g}"
    return diff


def assert_masks_match(actual, expected, what: str, max_fraction: float = 1e-4) -> float:
    """Boolean masks: same shape and dtype, at most ``max_fraction`` of pixels differ."""
    a, e = to_numpy(actual), to_numpy(expected)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != expected {e.shape}"
    assert a.dtype == np.bool_ and e.dtype == np.bool_, f"{what}: dtypes {a.dtype}, {e.dtype}"
    n_diff = int((a != e).sum())
    frac = n_diff / max(1, a.size)
    print(f"{what}: {n_diff} of {a.size} mask pixels differ ({frac:.2e})")
    assert frac <= max_fraction, f"{what}: {n_diff} of {a.size} pixels differ"
    return frac


def assert_nontrivial(masks, what: str) -> None:
    """The random-weight masks must contain both foreground and background pixels."""
    m = to_numpy(masks)
    assert m.any() and not m.all(), f"{what}: degenerate masks (all {bool(m.flat[0])})"
