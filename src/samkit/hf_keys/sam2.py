"""Key map from Hugging Face ``transformers`` SAM 2 models to official ``sam2`` names.

samkit's ``Sam2`` uses the names of the official ``sam2`` package (``image_encoder.trunk.*``,
``image_encoder.neck.convs.*``, ``sam_prompt_encoder.*``, ``sam_mask_decoder.*``,
``memory_attention.*``, ``memory_encoder.*`` and the top-level video parameters).
``transformers`` (checked against 5.23) has two SAM 2 classes:

- ``Sam2Model``, image only: ``vision_encoder.{backbone,neck}``, ``prompt_encoder``,
  ``mask_decoder``, ``shared_image_embedding`` and ``no_memory_embedding``;
- ``Sam2VideoModel``: the same names plus ``memory_attention``, ``memory_encoder``,
  ``mask_downsample``, ``object_pointer_proj``, ``no_memory_positional_encoding``,
  ``memory_temporal_positional_encoding``, ``no_object_pointer`` and, for 2.1,
  ``temporal_positional_encoding_projection_layer`` and ``occlusion_spatial_embedding_parameter``
  (a 2.0 config has neither, as the official 2.0 model).

The ``model.safetensors`` of the ``facebook/sam2-hiera-*`` / ``facebook/sam2.1-hiera-*`` hub
repositories are written from ``Sam2VideoModel`` by transformers' conversion script
(``models/sam2_video/convert_sam2_video_to_hf.py``; it is not shipped in the wheel), so they hold
every official tensor; ``Sam2Model`` reads the same files and drops the video keys through its
``_keys_to_ignore_on_load_unexpected`` list. transformers 5 has no load-time key renaming for
SAM 2 (``conversion_mapping.py``), so the file keys are the module keys. A file saved from
``Sam2Model`` itself lacks the video modules; samkit's ``Sam2`` always has them, so such a
file is refused by :func:`check_hf_sam2_complete` (naming the missing groups) instead of
leaving them random.

:func:`hf_to_official_sam2` is the explicit table ``_SAM2_RULE_TABLE`` plus three special cases:

- the point-label embeddings are one ``nn.Embedding(4, C)`` in HF
  (``prompt_encoder.point_embed.weight``, ``(4, C)``) and four ``(1, C)`` embeddings officially
  (``sam_prompt_encoder.point_embeddings.{i}.weight``): row ``i`` of the matrix;
- the random Fourier matrix is kept twice, as for SAM 1 (``shared_image_embedding.
  positional_embedding`` for the dense image encoding, ``prompt_encoder.shared_embedding.
  positional_embedding`` for points and boxes). In SAM 2 they are two independent buffers, not
  tied parameters; the conversion script writes the same official matrix into both. Either is
  accepted; if both are present they must be equal;
- the memory encoder's mask downsampler is an ``nn.Sequential`` officially (``encoder.{3k}``
  conv, ``encoder.{3k+1}`` LayerNorm2d, a GELU, ..., ``encoder.{3L}`` final 1x1 conv) and
  ``layers.{k}.conv`` / ``layers.{k}.layer_norm`` / ``final_conv`` in HF.

The rest is renaming: ``trunk`` -> ``backbone``, ``normX`` -> ``layer_normX``,
``out_proj`` -> ``o_proj`` (attention outputs; the memory encoder's ``out_proj`` conv is HF
``projection``), MLP ``layers.0/1/2`` -> ``proj_in`` / ``layers.0`` / ``proj_out`` (two-layer
MLPs: ``proj_in`` / ``proj_out``), neck ``convs.{i}.conv`` -> ``convs.{i}`` (same order),
``fuser`` -> ``memory_fuser`` (``dwconv`` / ``pwconv1/2`` / ``gamma`` -> ``depthwise_conv`` /
``pointwise_conv1/2`` / ``scale``), ``pix_feat_proj`` -> ``feature_projection`` and the
top-level parameters (``no_mem_embed`` -> ``no_memory_embedding`` ...). No other tensor changes
shape or layout: Hiera's fused ``qkv`` is the same ``(3 * C, C)`` matrix with the same head
split, ``pos_embed`` / ``pos_embed_window`` stay ``(1, C, h, w)``, ``maskmem_tpos_enc``
``(M, 1, 1, C_mem)``. Only the HF -> official direction is provided for SAM 2.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import torch

from samkit.errors import CheckpointError
from samkit.hf_keys._rules import (
    HF_PROMPT_PE_KEY,
    HF_SHARED_PE_KEY,
    _merge_prompt_pe,
    _rename,
    _Rule,
    _Side,
    _unknown_error,
)
from samkit.hf_keys.sam import _RULES

__all__ = [
    "HF_SAM2_POINT_EMBED_KEY",
    "SAM2_OFFICIAL_PE_KEY",
    "SAM2_HF_GROUPS",
    "SAM2_VIDEO_ONLY_GROUPS",
    "hf_to_official_sam2",
    "check_hf_sam2_complete",
    "is_hf_sam2_state_dict",
]

#: Official key of the SAM 2 random Fourier matrix. Hugging Face stores it under the same two
#: names as for SAM 1 (:data:`HF_SHARED_PE_KEY`, :data:`HF_PROMPT_PE_KEY`).
SAM2_OFFICIAL_PE_KEY = "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
#: Hugging Face key of the four point-label embeddings: one ``(4, C)`` matrix, row ``i`` being
#: the official ``sam_prompt_encoder.point_embeddings.{i}.weight`` ``(1, C)``.
HF_SAM2_POINT_EMBED_KEY = "prompt_encoder.point_embed.weight"
_SAM2_POINT_EMBED_OFFICIAL = "sam_prompt_encoder.point_embeddings.{}.weight"

# Memory-encoder mask downsampler. Officially an nn.Sequential: per stage k a conv at index 3k,
# a LayerNorm2d at 3k + 1 and a GELU (no parameters) at 3k + 2, then a 1x1 conv at 3L for L
# stages. Hugging Face: layers.{k}.conv, layers.{k}.layer_norm, final_conv. The index
# arithmetic does not fit the rule table, so these keys are converted by _downsampler_names.
_HF_DOWNSAMPLER_RE = re.compile(
    r"memory_encoder\.mask_downsampler\."
    r"(?:layers\.(?P<k>\d+)\.(?P<part>conv|layer_norm)|final_conv)\.(?P<p>weight|bias)"
)
_OFFICIAL_DOWNSAMPLER = "memory_encoder.mask_downsampler.encoder.{}.{}"

# (official pattern, Hugging Face pattern), as sam._RULE_TABLE. Differences beyond renaming are
# handled outside the table: the point embeddings (split), the second copy of the Fourier
# matrix, and the mask downsampler (index arithmetic). Every other tensor keeps its shape.
_SAM2_RULE_TABLE: tuple[tuple[str, str], ...] = (
    # ---- image encoder: Hiera trunk (HF "backbone") ----
    ("image_encoder.trunk.pos_embed", "vision_encoder.backbone.pos_embed"),
    ("image_encoder.trunk.pos_embed_window", "vision_encoder.backbone.pos_embed_window"),
    (
        "image_encoder.trunk.patch_embed.proj.{p}",
        "vision_encoder.backbone.patch_embed.projection.{p}",
    ),
    (
        "image_encoder.trunk.blocks.{i}.norm{n2}.{p}",
        "vision_encoder.backbone.blocks.{i}.layer_norm{n2}.{p}",
    ),
    # fused qkv: the same (3 * C_out, C_in) matrix and head split on both sides
    (
        "image_encoder.trunk.blocks.{i}.attn.qkv.{p}",
        "vision_encoder.backbone.blocks.{i}.attn.qkv.{p}",
    ),
    (
        "image_encoder.trunk.blocks.{i}.attn.proj.{p}",
        "vision_encoder.backbone.blocks.{i}.attn.proj.{p}",
    ),
    # width-changing skip projection of a stage's first block
    ("image_encoder.trunk.blocks.{i}.proj.{p}", "vision_encoder.backbone.blocks.{i}.proj.{p}"),
    (
        "image_encoder.trunk.blocks.{i}.mlp.layers.0.{p}",
        "vision_encoder.backbone.blocks.{i}.mlp.proj_in.{p}",
    ),
    (
        "image_encoder.trunk.blocks.{i}.mlp.layers.1.{p}",
        "vision_encoder.backbone.blocks.{i}.mlp.proj_out.{p}",
    ),
    # ---- image encoder: FPN neck (same lateral-conv order, deepest level first) ----
    ("image_encoder.neck.convs.{i}.conv.{p}", "vision_encoder.neck.convs.{i}.{p}"),
    # ---- prompt encoder ----
    (SAM2_OFFICIAL_PE_KEY, HF_SHARED_PE_KEY),  # HF_PROMPT_PE_KEY: second copy, separately
    # point_embeddings.{i}: rows of HF_SAM2_POINT_EMBED_KEY, separately
    ("sam_prompt_encoder.not_a_point_embed.weight", "prompt_encoder.not_a_point_embed.weight"),
    ("sam_prompt_encoder.no_mask_embed.weight", "prompt_encoder.no_mask_embed.weight"),
    ("sam_prompt_encoder.mask_downscaling.0.{p}", "prompt_encoder.mask_embed.conv1.{p}"),
    ("sam_prompt_encoder.mask_downscaling.1.{p}", "prompt_encoder.mask_embed.layer_norm1.{p}"),
    ("sam_prompt_encoder.mask_downscaling.3.{p}", "prompt_encoder.mask_embed.conv2.{p}"),
    ("sam_prompt_encoder.mask_downscaling.4.{p}", "prompt_encoder.mask_embed.layer_norm2.{p}"),
    ("sam_prompt_encoder.mask_downscaling.6.{p}", "prompt_encoder.mask_embed.conv3.{p}"),
    # ---- mask decoder: two-way transformer ----
    (
        "sam_mask_decoder.transformer.layers.{i}.{attn}.{qkv}.{p}",
        "mask_decoder.transformer.layers.{i}.{attn}.{qkv}.{p}",
    ),
    (
        "sam_mask_decoder.transformer.layers.{i}.{attn}.out_proj.{p}",
        "mask_decoder.transformer.layers.{i}.{attn}.o_proj.{p}",
    ),
    (
        "sam_mask_decoder.transformer.layers.{i}.norm{n}.{p}",
        "mask_decoder.transformer.layers.{i}.layer_norm{n}.{p}",
    ),
    (
        "sam_mask_decoder.transformer.layers.{i}.mlp.layers.0.{p}",
        "mask_decoder.transformer.layers.{i}.mlp.proj_in.{p}",
    ),
    (
        "sam_mask_decoder.transformer.layers.{i}.mlp.layers.1.{p}",
        "mask_decoder.transformer.layers.{i}.mlp.proj_out.{p}",
    ),
    (
        "sam_mask_decoder.transformer.final_attn_token_to_image.{qkv}.{p}",
        "mask_decoder.transformer.final_attn_token_to_image.{qkv}.{p}",
    ),
    (
        "sam_mask_decoder.transformer.final_attn_token_to_image.out_proj.{p}",
        "mask_decoder.transformer.final_attn_token_to_image.o_proj.{p}",
    ),
    (
        "sam_mask_decoder.transformer.norm_final_attn.{p}",
        "mask_decoder.transformer.layer_norm_final_attn.{p}",
    ),
    # ---- mask decoder: tokens, upscaling, high-res projections ----
    ("sam_mask_decoder.iou_token.weight", "mask_decoder.iou_token.weight"),
    ("sam_mask_decoder.mask_tokens.weight", "mask_decoder.mask_tokens.weight"),
    ("sam_mask_decoder.obj_score_token.weight", "mask_decoder.obj_score_token.weight"),
    ("sam_mask_decoder.output_upscaling.0.{p}", "mask_decoder.upscale_conv1.{p}"),
    ("sam_mask_decoder.output_upscaling.1.{p}", "mask_decoder.upscale_layer_norm.{p}"),
    ("sam_mask_decoder.output_upscaling.3.{p}", "mask_decoder.upscale_conv2.{p}"),
    ("sam_mask_decoder.conv_s0.{p}", "mask_decoder.conv_s0.{p}"),
    ("sam_mask_decoder.conv_s1.{p}", "mask_decoder.conv_s1.{p}"),
    # ---- mask decoder: three-layer MLP heads, layers.0 / 1 / 2 == proj_in / layers.0 / proj_out
    (
        "sam_mask_decoder.output_hypernetworks_mlps.{i}.layers.0.{p}",
        "mask_decoder.output_hypernetworks_mlps.{i}.proj_in.{p}",
    ),
    (
        "sam_mask_decoder.output_hypernetworks_mlps.{i}.layers.1.{p}",
        "mask_decoder.output_hypernetworks_mlps.{i}.layers.0.{p}",
    ),
    (
        "sam_mask_decoder.output_hypernetworks_mlps.{i}.layers.2.{p}",
        "mask_decoder.output_hypernetworks_mlps.{i}.proj_out.{p}",
    ),
    (
        "sam_mask_decoder.iou_prediction_head.layers.0.{p}",
        "mask_decoder.iou_prediction_head.proj_in.{p}",
    ),
    (
        "sam_mask_decoder.iou_prediction_head.layers.1.{p}",
        "mask_decoder.iou_prediction_head.layers.0.{p}",
    ),
    (
        "sam_mask_decoder.iou_prediction_head.layers.2.{p}",
        "mask_decoder.iou_prediction_head.proj_out.{p}",
    ),
    (
        "sam_mask_decoder.pred_obj_score_head.layers.0.{p}",
        "mask_decoder.pred_obj_score_head.proj_in.{p}",
    ),
    (
        "sam_mask_decoder.pred_obj_score_head.layers.1.{p}",
        "mask_decoder.pred_obj_score_head.layers.0.{p}",
    ),
    (
        "sam_mask_decoder.pred_obj_score_head.layers.2.{p}",
        "mask_decoder.pred_obj_score_head.proj_out.{p}",
    ),
    # ---- memory attention (only in Sam2VideoModel files) ----
    (
        "memory_attention.layers.{i}.{mattn}.{qkv}.{p}",
        "memory_attention.layers.{i}.{mattn}.{qkv}.{p}",
    ),
    (
        "memory_attention.layers.{i}.{mattn}.out_proj.{p}",
        "memory_attention.layers.{i}.{mattn}.o_proj.{p}",
    ),
    ("memory_attention.layers.{i}.linear{n2}.{p}", "memory_attention.layers.{i}.linear{n2}.{p}"),
    ("memory_attention.layers.{i}.norm{n3}.{p}", "memory_attention.layers.{i}.layer_norm{n3}.{p}"),
    ("memory_attention.norm.{p}", "memory_attention.layer_norm.{p}"),
    # ---- memory encoder (only in Sam2VideoModel files); mask_downsampler: separately ----
    ("memory_encoder.pix_feat_proj.{p}", "memory_encoder.feature_projection.{p}"),
    (
        "memory_encoder.fuser.layers.{i}.dwconv.{p}",
        "memory_encoder.memory_fuser.layers.{i}.depthwise_conv.{p}",
    ),
    (
        "memory_encoder.fuser.layers.{i}.norm.{p}",
        "memory_encoder.memory_fuser.layers.{i}.layer_norm.{p}",
    ),
    (
        "memory_encoder.fuser.layers.{i}.pwconv{n2}.{p}",
        "memory_encoder.memory_fuser.layers.{i}.pointwise_conv{n2}.{p}",
    ),
    ("memory_encoder.fuser.layers.{i}.gamma", "memory_encoder.memory_fuser.layers.{i}.scale"),
    ("memory_encoder.out_proj.{p}", "memory_encoder.projection.{p}"),
    # ---- top-level parameters (no_mem_embed is in Sam2Model too; the rest video only) ----
    ("no_mem_embed", "no_memory_embedding"),
    ("no_mem_pos_enc", "no_memory_positional_encoding"),
    ("maskmem_tpos_enc", "memory_temporal_positional_encoding"),
    ("no_obj_ptr", "no_object_pointer"),
    ("no_obj_embed_spatial", "occlusion_spatial_embedding_parameter"),  # 2.1 only
    ("mask_downsample.{p}", "mask_downsample.{p}"),
    ("obj_ptr_proj.layers.0.{p}", "object_pointer_proj.proj_in.{p}"),
    ("obj_ptr_proj.layers.1.{p}", "object_pointer_proj.layers.0.{p}"),
    ("obj_ptr_proj.layers.2.{p}", "object_pointer_proj.proj_out.{p}"),
    ("obj_ptr_tpos_proj.{p}", "temporal_positional_encoding_projection_layer.{p}"),  # 2.1 only
)

_SAM2_RULES: tuple[_Rule, ...] = tuple(
    _Rule(_Side.from_pattern(o), _Side.from_pattern(h)) for o, h in _SAM2_RULE_TABLE
)

#: Official top-level group -> the Hugging Face name(s) of the same tensors (error messages).
SAM2_HF_GROUPS: dict[str, str] = {
    "image_encoder": "vision_encoder",
    "sam_prompt_encoder": "prompt_encoder, shared_image_embedding",
    "sam_mask_decoder": "mask_decoder",
    "no_mem_embed": "no_memory_embedding",
    "memory_attention": "memory_attention",
    "memory_encoder": "memory_encoder",
    "mask_downsample": "mask_downsample",
    "obj_ptr_proj": "object_pointer_proj",
    "obj_ptr_tpos_proj": "temporal_positional_encoding_projection_layer",
    "maskmem_tpos_enc": "memory_temporal_positional_encoding",
    "no_mem_pos_enc": "no_memory_positional_encoding",
    "no_obj_ptr": "no_object_pointer",
    "no_obj_embed_spatial": "occlusion_spatial_embedding_parameter",
}
#: Groups that transformers' image-only ``Sam2Model`` does not hold (``Sam2VideoModel`` does).
SAM2_VIDEO_ONLY_GROUPS = frozenset(SAM2_HF_GROUPS) - {
    "image_encoder",
    "sam_prompt_encoder",
    "sam_mask_decoder",
    "no_mem_embed",
}
# Groups a SAM 2.1 model has and a SAM 2.0 one lacks.
_SAM21_ONLY_GROUPS = frozenset({"obj_ptr_tpos_proj", "no_obj_embed_spatial"})


def _downsampler_names(keys: Iterable[str]) -> dict[str, str]:
    """HF -> official names of the mask-downsampler keys among ``keys``.

    The final conv's official index (3 * number of stages) is taken from the stage indices
    present; a file with gaps fails later in the strict load (missing / unexpected keys).
    """
    matches = {k: m for k in keys if (m := _HF_DOWNSAMPLER_RE.fullmatch(k)) is not None}
    stages = 1 + max((int(m["k"]) for m in matches.values() if m["k"] is not None), default=-1)
    names = {}
    for key, m in matches.items():
        if m["k"] is None:  # final_conv
            index = 3 * stages
        else:
            index = 3 * int(m["k"]) + (0 if m["part"] == "conv" else 1)
        names[key] = _OFFICIAL_DOWNSAMPLER.format(index, m["p"])
    return names


def hf_to_official_sam2(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a Hugging Face ``Sam2VideoModel`` / ``Sam2Model`` state dict to official names.

    Every tensor is passed through unchanged (same object) except
    ``prompt_encoder.point_embed.weight`` ``(4, C)``, whose rows become the four official
    ``sam_prompt_encoder.point_embeddings.{i}.weight`` ``(1, C)`` (contiguous copies). The random
    Fourier matrix may appear under either HF name or both (then they must be equal); the
    mask-downsampler layers get their ``nn.Sequential`` indices back (module docstring).

    The result is not checked for completeness: a dict saved from the image-only ``Sam2Model``
    converts to the image path only. :func:`check_hf_sam2_complete` (used by
    :func:`samkit.build.load_weights`) names what a model needs and the file lacks.

    Raises:
        CheckpointError: a key is not an HF SAM 2 parameter name, the point-embedding matrix is
            not 2-D, or the two copies of the Fourier matrix differ.
    """
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    prompt_pe: torch.Tensor | None = None
    downsampler = _downsampler_names(state_dict)
    for key, value in state_dict.items():
        if key == HF_PROMPT_PE_KEY:
            prompt_pe = value
        elif key == HF_SAM2_POINT_EMBED_KEY:
            if value.dim() != 2:
                raise CheckpointError(
                    f"{key!r} should be a (num_labels, C) matrix, got shape {tuple(value.shape)}"
                )
            for row in range(value.shape[0]):
                out[_SAM2_POINT_EMBED_OFFICIAL.format(row)] = value[row : row + 1].clone()
        elif key in downsampler:
            out[downsampler[key]] = value
        else:
            new_key = _rename(key, "to_official", _SAM2_RULES)
            if new_key is None:
                unknown.append(key)
            else:
                out[new_key] = value
    if unknown:
        raise _unknown_error("Hugging Face", unknown, family="SAM 2")
    _merge_prompt_pe(out, prompt_pe, SAM2_OFFICIAL_PE_KEY)
    return out


def check_hf_sam2_complete(
    state_dict: Mapping[str, object], expected: Iterable[str], source: str
) -> None:
    """Raise :class:`CheckpointError` if a converted HF SAM 2 dict lacks tensors of ``expected``.

    The message names each official group (top-level module or parameter) with missing tensors,
    its HF name, and the likely cause: a file saved from the image-only ``Sam2Model`` has no
    video modules, a SAM 2.0 file has no ``obj_ptr_tpos_proj`` / ``no_obj_embed_spatial``.
    Unexpected keys and shapes are left to :func:`samkit.weights.check_state_dict`.

    Args:
        state_dict: output of :func:`hf_to_official_sam2`.
        expected: the official keys the model needs (``model.state_dict().keys()``).
        source: file name for the message.
    """
    totals: dict[str, int] = {}
    absent: dict[str, int] = {}
    for key in expected:
        group = key.split(".", 1)[0]
        totals[group] = totals.get(group, 0) + 1
        if key not in state_dict:
            absent[group] = absent.get(group, 0) + 1
    if not absent:
        return
    parts = []
    for group, n in absent.items():
        hf = SAM2_HF_GROUPS.get(group, group)
        share = "" if n == totals[group] else f", {n} of {totals[group]} tensors"
        parts.append(f"{group} (HF {hf}{share})")
    if set(absent) <= SAM2_VIDEO_ONLY_GROUPS and not set(absent) <= _SAM21_ONLY_GROUPS:
        cause = (
            " Files saved from transformers' image-only Sam2Model lack the video modules; "
            "the model.safetensors of the facebook/sam2-hiera-* and facebook/sam2.1-hiera-* "
            "hub repositories (Sam2VideoModel layout) and the official .pt files have them."
        )
    elif set(absent) <= _SAM21_ONLY_GROUPS:
        cause = " Is this a SAM 2.0 checkpoint for a SAM 2.1 model?"
    else:
        cause = ""
    raise CheckpointError(
        f"{source} is a Hugging Face SAM 2 checkpoint without {', '.join(parts)}, which this "
        f"model needs; refusing to leave them randomly initialised.{cause}"
    )


def _is_hf_sam2_only_key(key: str) -> bool:
    """True if ``key`` is a Hugging Face SAM 2 name and neither an official SAM 2 name nor a
    SAM 1 name (HF or official): ``memory_attention.layers.0.linear1.weight`` and
    ``mask_decoder.iou_token.weight`` are valid elsewhere too, so they are no evidence."""
    if any(rule.official.match(key) is not None for rule in _SAM2_RULES):
        return False
    if any(r.hf.match(key) is not None or r.official.match(key) is not None for r in _RULES):
        return False
    return (
        key == HF_SAM2_POINT_EMBED_KEY
        or _HF_DOWNSAMPLER_RE.fullmatch(key) is not None
        or any(rule.hf.match(key) is not None for rule in _SAM2_RULES)
    )


def is_hf_sam2_state_dict(state_dict: Mapping[str, object]) -> bool:
    """Whether ``state_dict`` uses Hugging Face SAM 2 names (``Sam2Model`` or ``Sam2VideoModel``).

    True when at least one key is an HF SAM 2 name that is neither an official SAM 2 name nor a
    SAM 1 name of either side (e.g. ``vision_encoder.backbone.*``, ``vision_encoder.neck.convs.
    {i}.weight``, ``mask_decoder.conv_s0.*``, ``prompt_encoder.point_embed.weight``,
    ``no_memory_embedding``). So official SAM 2 dicts and HF / official SAM 1 dicts are never
    reported. (:func:`is_hf_sam_state_dict` is also true for HF SAM 2 dicts, whose prompt
    encoder and decoder share SAM 1's HF names: test this function first.)
    """
    return any(isinstance(k, str) and _is_hf_sam2_only_key(k) for k in state_dict)
