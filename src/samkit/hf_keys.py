"""Key map between Hugging Face ``transformers.SamModel`` and official SAM 1 parameter names.

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

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from samkit.errors import CheckpointError

__all__ = [
    "HF_SHARED_PE_KEY",
    "HF_PROMPT_PE_KEY",
    "OFFICIAL_PE_KEY",
    "hf_to_official_sam",
    "official_to_hf_sam",
    "is_hf_sam_state_dict",
]

#: Hugging Face key of the random Fourier matrix used for the dense image positional encoding.
HF_SHARED_PE_KEY = "shared_image_embedding.positional_embedding"
#: Hugging Face key of the (tied) copy used by the prompt encoder for points and boxes.
HF_PROMPT_PE_KEY = "prompt_encoder.shared_embedding.positional_embedding"
#: Official key of the single random Fourier matrix.
OFFICIAL_PE_KEY = "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"

#: Official-format keys that are not model parameters in ``transformers`` (fixed constants that
#: live in ``SamImageProcessor``); dropped by :func:`official_to_hf_sam`.
OFFICIAL_ONLY_CONSTANTS = ("pixel_mean", "pixel_std")

# Placeholders usable in rule patterns. Each stands for the same text on both sides.
_PLACEHOLDERS: dict[str, str] = {
    "i": r"\d+",  # a layer / block / token index
    "p": r"weight|bias",
    "attn": r"self_attn|cross_attn_token_to_image|cross_attn_image_to_token",
    "proj": r"q_proj|k_proj|v_proj|out_proj",
    "rel": r"rel_pos_h|rel_pos_w",
    "mlp": r"lin1|lin2",
    "n": r"[1-4]",  # two-way block norm index
}

# (official pattern, Hugging Face pattern). Patterns are literal text with ``{name}``
# placeholders from _PLACEHOLDERS. Every official / HF key must match exactly one rule.
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

_PLACEHOLDER_RE = re.compile(r"\{(\w+)\}")
_MAX_REPORTED = 5


@dataclass(frozen=True)
class _Side:
    """One side (official or HF) of a rule: a matcher and a formatter."""

    pattern: str
    regex: re.Pattern[str]
    names: tuple[str, ...]

    @classmethod
    def from_pattern(cls, pattern: str) -> _Side:
        parts: list[str] = []
        names: list[str] = []
        pos = 0
        for m in _PLACEHOLDER_RE.finditer(pattern):
            parts.append(re.escape(pattern[pos : m.start()]))
            name = m.group(1)
            parts.append(f"(?P<{name}>{_PLACEHOLDERS[name]})")
            names.append(name)
            pos = m.end()
        parts.append(re.escape(pattern[pos:]))
        return cls(pattern, re.compile("".join(parts)), tuple(names))

    def match(self, key: str) -> dict[str, str] | None:
        m = self.regex.fullmatch(key)
        return m.groupdict() if m else None

    def format(self, values: Mapping[str, str]) -> str:
        return self.pattern.format(**{name: values[name] for name in self.names})


@dataclass(frozen=True)
class _Rule:
    official: _Side
    hf: _Side


_RULES: tuple[_Rule, ...] = tuple(
    _Rule(_Side.from_pattern(o), _Side.from_pattern(h)) for o, h in _RULE_TABLE
)


def _rename(key: str, direction: str) -> str | None:
    """Return the other-side name of ``key`` (``direction`` is ``"to_official"`` or
    ``"to_hf"``), or ``None`` if no rule matches. More than one match is a bug in the table."""
    found: list[str] = []
    for rule in _RULES:
        src, dst = (
            (rule.hf, rule.official) if direction == "to_official" else (rule.official, rule.hf)
        )
        values = src.match(key)
        if values is not None:
            found.append(dst.format(values))
    if len(found) > 1:  # pragma: no cover - guarded by tests of the table
        raise AssertionError(f"key {key!r} matches several rules: {found}")
    return found[0] if found else None


def _unknown_error(kind: str, unknown: list[str]) -> CheckpointError:
    shown = ", ".join(repr(k) for k in unknown[:_MAX_REPORTED])
    more = f" (and {len(unknown) - _MAX_REPORTED} more)" if len(unknown) > _MAX_REPORTED else ""
    return CheckpointError(
        f"{len(unknown)} key(s) are not {kind} SAM 1 parameter names: {shown}{more}"
    )


def _same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal shape and values (values are not compared for meta tensors, which have none)."""
    if a.shape != b.shape:
        return False
    if a is b or a.is_meta or b.is_meta:
        return True
    return torch.equal(a, b.to(device=a.device, dtype=a.dtype))


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
        new_key = _rename(key, "to_official")
        if new_key is None:
            unknown.append(key)
        else:
            out[new_key] = value
    if unknown:
        raise _unknown_error("Hugging Face", unknown)
    if prompt_pe is not None:
        shared_pe = out.get(OFFICIAL_PE_KEY)
        if shared_pe is None:
            out[OFFICIAL_PE_KEY] = prompt_pe
        elif not _same_values(shared_pe, prompt_pe):
            raise CheckpointError(
                f"{HF_SHARED_PE_KEY!r} and {HF_PROMPT_PE_KEY!r} differ; the official model has "
                "one positional matrix for both, so this checkpoint cannot be converted"
            )
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
        new_key = _rename(key, "to_hf")
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
