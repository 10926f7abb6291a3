"""Key map between Hugging Face ``transformers`` SAM (``SamModel``) and official SAM 1 names.

samkit's SAM 1 models use the parameter names of the official ``segment-anything`` package
(``image_encoder.*``, ``prompt_encoder.*``, ``mask_decoder.*``). The ``facebook/sam-vit-*``
checkpoints on the Hugging Face Hub store the same tensors under ``transformers`` names
(``vision_encoder.*``, ``shared_image_embedding.*``, ...). This module converts between the two.

The conversion is a fixed table of rules, one per kind of parameter, each pairing an official
name pattern with a Hugging Face name pattern. Every tensor keeps its shape, dtype and values:
no transpose or reshape is needed (the random Fourier matrix is ``(2, num_pos_feats)`` on both
sides and both implementations compute ``coords @ matrix``).

Only two things are not one-to-one:

- Hugging Face keeps the random Fourier matrix twice: ``shared_image_embedding.
  positional_embedding`` (dense image positional encoding) and ``prompt_encoder.
  shared_embedding.positional_embedding`` (point and box encoding). ``SamModel`` ties them and
  its ``state_dict()`` lists both; the official model has a single ``prompt_encoder.pe_layer.
  positional_encoding_gaussian_matrix`` used for both. Reading, either key is accepted; when
  both are present they must be equal (otherwise the checkpoint cannot be represented in the
  official model and :class:`~samkit.errors.CheckpointError` is raised). Writing, both are
  produced.
- The three-layer MLPs (hypernetwork MLPs and IoU head) are ``layers.0/1/2`` officially and
  ``proj_in`` / ``layers.0`` / ``proj_out`` in ``transformers``.

``pixel_mean`` / ``pixel_std`` are non-persistent buffers of the official ``Sam`` (not in its
``state_dict()``); ``transformers`` keeps them in the image processor, not in the model. If an
official-format dict nevertheless carries them, :func:`official_to_hf_sam` drops them.

Any key no rule accounts for raises :class:`~samkit.errors.CheckpointError` naming the first
few such keys; nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from samkit.hf_keys._rules import (
    HF_PROMPT_PE_KEY,
    HF_SHARED_PE_KEY,
    _merge_prompt_pe,
    _rename,
    _Rule,
    _Side,
    _unknown_error,
)

__all__ = [
    "OFFICIAL_PE_KEY",
    "OFFICIAL_ONLY_CONSTANTS",
    "hf_to_official_sam",
    "official_to_hf_sam",
    "is_hf_sam_state_dict",
]

#: Official key of the single random Fourier matrix.
OFFICIAL_PE_KEY = "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"

#: Official-format keys that are not model parameters in ``transformers`` (fixed constants that
#: live in ``SamImageProcessor``); dropped by :func:`official_to_hf_sam`.
OFFICIAL_ONLY_CONSTANTS = ("pixel_mean", "pixel_std")

# (official pattern, Hugging Face pattern). Patterns are literal text with ``{name}``
# placeholders from _rules._PLACEHOLDERS. Every official / HF key must match exactly one rule.
_RULE_TABLE: tuple[tuple[str, str], ...] = (
    # ---- image encoder (ViT) ----
    ("image_encoder.pos_embed", "vision_encoder.pos_embed"),
    ("image_encoder.patch_embed.proj.{p}", "vision_encoder.patch_embed.projection.{p}"),
    ("image_encoder.blocks.{i}.norm1.{p}", "vision_encoder.layers.{i}.layer_norm1.{p}"),
    ("image_encoder.blocks.{i}.norm2.{p}", "vision_encoder.layers.{i}.layer_norm2.{p}"),
    ("image_encoder.blocks.{i}.attn.{rel}", "vision_encoder.layers.{i}.attn.{rel}"),
    ("image_encoder.blocks.{i}.attn.qkv.{p}", "vision_encoder.layers.{i}.attn.qkv.{p}"),
    ("image_encoder.blocks.{i}.attn.proj.{p}", "vision_encoder.layers.{i}.attn.proj.{p}"),
    ("image_encoder.blocks.{i}.mlp.{mlp}.{p}", "vision_encoder.layers.{i}.mlp.{mlp}.{p}"),
    ("image_encoder.neck.0.weight", "vision_encoder.neck.conv1.weight"),
    ("image_encoder.neck.1.{p}", "vision_encoder.neck.layer_norm1.{p}"),
    ("image_encoder.neck.2.weight", "vision_encoder.neck.conv2.weight"),
    ("image_encoder.neck.3.{p}", "vision_encoder.neck.layer_norm2.{p}"),
    # ---- prompt encoder ----
    (OFFICIAL_PE_KEY, HF_SHARED_PE_KEY),  # HF_PROMPT_PE_KEY: tied copy, handled separately
    ("prompt_encoder.point_embeddings.{i}.weight", "prompt_encoder.point_embed.{i}.weight"),
    ("prompt_encoder.not_a_point_embed.weight", "prompt_encoder.not_a_point_embed.weight"),
    ("prompt_encoder.no_mask_embed.weight", "prompt_encoder.no_mask_embed.weight"),
    ("prompt_encoder.mask_downscaling.0.{p}", "prompt_encoder.mask_embed.conv1.{p}"),
    ("prompt_encoder.mask_downscaling.1.{p}", "prompt_encoder.mask_embed.layer_norm1.{p}"),
    ("prompt_encoder.mask_downscaling.3.{p}", "prompt_encoder.mask_embed.conv2.{p}"),
    ("prompt_encoder.mask_downscaling.4.{p}", "prompt_encoder.mask_embed.layer_norm2.{p}"),
    ("prompt_encoder.mask_downscaling.6.{p}", "prompt_encoder.mask_embed.conv3.{p}"),
    # ---- mask decoder: two-way transformer ----
    (
        "mask_decoder.transformer.layers.{i}.{attn}.{proj}.{p}",
        "mask_decoder.transformer.layers.{i}.{attn}.{proj}.{p}",
    ),
    (
        "mask_decoder.transformer.layers.{i}.norm{n}.{p}",
        "mask_decoder.transformer.layers.{i}.layer_norm{n}.{p}",
    ),
    (
        "mask_decoder.transformer.layers.{i}.mlp.{mlp}.{p}",
        "mask_decoder.transformer.layers.{i}.mlp.{mlp}.{p}",
    ),
    (
        "mask_decoder.transformer.final_attn_token_to_image.{proj}.{p}",
        "mask_decoder.transformer.final_attn_token_to_image.{proj}.{p}",
    ),
    (
        "mask_decoder.transformer.norm_final_attn.{p}",
        "mask_decoder.transformer.layer_norm_final_attn.{p}",
    ),
    # ---- mask decoder: tokens, upscaling, heads ----
    ("mask_decoder.iou_token.weight", "mask_decoder.iou_token.weight"),
    ("mask_decoder.mask_tokens.weight", "mask_decoder.mask_tokens.weight"),
    ("mask_decoder.output_upscaling.0.{p}", "mask_decoder.upscale_conv1.{p}"),
    ("mask_decoder.output_upscaling.1.{p}", "mask_decoder.upscale_layer_norm.{p}"),
    ("mask_decoder.output_upscaling.3.{p}", "mask_decoder.upscale_conv2.{p}"),
    # Three-layer MLPs: official layers.0 / 1 / 2 == HF proj_in / layers.0 / proj_out.
    (
        "mask_decoder.output_hypernetworks_mlps.{i}.layers.0.{p}",
        "mask_decoder.output_hypernetworks_mlps.{i}.proj_in.{p}",
    ),
    (
        "mask_decoder.output_hypernetworks_mlps.{i}.layers.1.{p}",
        "mask_decoder.output_hypernetworks_mlps.{i}.layers.0.{p}",
    ),
    (
        "mask_decoder.output_hypernetworks_mlps.{i}.layers.2.{p}",
        "mask_decoder.output_hypernetworks_mlps.{i}.proj_out.{p}",
    ),
    (
        "mask_decoder.iou_prediction_head.layers.0.{p}",
        "mask_decoder.iou_prediction_head.proj_in.{p}",
    ),
    (
        "mask_decoder.iou_prediction_head.layers.1.{p}",
        "mask_decoder.iou_prediction_head.layers.0.{p}",
    ),
    (
        "mask_decoder.iou_prediction_head.layers.2.{p}",
        "mask_decoder.iou_prediction_head.proj_out.{p}",
    ),
)

_RULES: tuple[_Rule, ...] = tuple(
    _Rule(_Side.from_pattern(o), _Side.from_pattern(h)) for o, h in _RULE_TABLE
)


def hf_to_official_sam(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face ``SamModel`` state dict to official ``segment-anything`` names.

    Tensors are passed through unchanged (same objects; no copy, transpose or reshape).
    The random Fourier matrix may appear as ``shared_image_embedding.positional_embedding``,
    as ``prompt_encoder.shared_embedding.positional_embedding``, or both (then they must be
    equal); it becomes ``prompt_encoder.pe_layer.positional_encoding_gaussian_matrix``.

    The result is not checked for completeness (a vision-only dict gives only
    ``image_encoder.*``); a strict ``load_state_dict`` does that.

    Args:
        state_dict: tensors keyed by ``transformers`` SAM parameter names.

    Returns:
        A new dict keyed by official names.

    Raises:
        CheckpointError: a key is not a ``SamModel`` parameter name, or the two copies of the
            positional matrix differ.
    """
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    prompt_pe: torch.Tensor | None = None
    for key, value in state_dict.items():
        if key == HF_PROMPT_PE_KEY:
            prompt_pe = value
            continue
        new_key = _rename(key, "to_official", _RULES)
        if new_key is None:
            unknown.append(key)
        else:
            out[new_key] = value
    if unknown:
        raise _unknown_error("Hugging Face", unknown)
    _merge_prompt_pe(out, prompt_pe, OFFICIAL_PE_KEY)
    return out


def official_to_hf_sam(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official ``segment-anything`` state dict to Hugging Face ``SamModel`` names.

    The inverse of :func:`hf_to_official_sam`. The random Fourier matrix is written under both
    Hugging Face keys, exactly as ``SamModel.state_dict()`` lists them; the prompt-encoder copy
    is a clone so the dict can be saved with ``safetensors`` (which refuses shared storage).
    ``pixel_mean`` / ``pixel_std``, if present, are dropped (see module docstring).

    Args:
        state_dict: tensors keyed by official SAM 1 parameter names.

    Returns:
        A new dict keyed by ``transformers`` names.

    Raises:
        CheckpointError: a key is not an official SAM 1 parameter name.
    """
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state_dict.items():
        if key in OFFICIAL_ONLY_CONSTANTS:
            continue
        new_key = _rename(key, "to_hf", _RULES)
        if new_key is None:
            unknown.append(key)
        else:
            out[new_key] = value
    if unknown:
        raise _unknown_error("official", unknown)
    if HF_SHARED_PE_KEY in out:
        out[HF_PROMPT_PE_KEY] = out[HF_SHARED_PE_KEY].clone()
    return out


def _is_hf_only_key(key: str) -> bool:
    """True if ``key`` is a Hugging Face name and not also an official name.

    (``...output_hypernetworks_mlps.0.layers.0.weight`` is a valid name on both sides, for
    different tensors, so it is not evidence either way.)
    """
    if key == HF_PROMPT_PE_KEY:
        return True
    is_hf = any(rule.hf.match(key) is not None for rule in _RULES)
    is_official = any(rule.official.match(key) is not None for rule in _RULES)
    return is_hf and not is_official


def is_hf_sam_state_dict(state_dict: Mapping[str, object]) -> bool:
    """Whether ``state_dict`` uses Hugging Face ``SamModel`` names.

    True when at least one key is a ``transformers`` SAM name that is not also an official name
    (e.g. ``vision_encoder.*``, ``shared_image_embedding.*``, ``*.proj_in.*``). Keys valid on
    both sides (``mask_decoder.iou_token.weight``, ``...mlps.0.layers.0.weight``) do not count,
    so an official state dict is never reported as HF.
    """
    return any(isinstance(k, str) and _is_hf_only_key(k) for k in state_dict)
