"""The one place where configs meet modules: ``build_model`` and ``load_model``."""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

from samkit.configs.base import (
    MaskDecoderConfig,
    ModelPreset,
    PromptEncoderConfig,
    Sam2Config,
    SamConfig,
    TinyViTConfig,
    ViTConfig,
)
from samkit.configs.registry import get_preset
from samkit.errors import CheckpointError, InvalidArgument, InvalidArgumentType
from samkit.layers.two_way import TwoWayTransformer
from samkit.modeling import SamModel
from samkit.modeling.encoders.vit import ImageEncoderViT
from samkit.modeling.mask_decoder import MaskDecoder
from samkit.modeling.prompt_encoder import PromptEncoder
from samkit.modeling.sam import Sam
from samkit.weights import bundled_path, check_state_dict, read_state_dict, resolve_weights


def _build_encoder(cfg: ViTConfig | TinyViTConfig) -> nn.Module:
    if isinstance(cfg, ViTConfig):
        return ImageEncoderViT(
            img_size=cfg.img_size,
            patch_size=cfg.patch_size,
            embed_dim=cfg.embed_dim,
            depth=cfg.depth,
            num_heads=cfg.num_heads,
            mlp_ratio=cfg.mlp_ratio,
            out_chans=cfg.out_chans,
            window_size=cfg.window_size,
            global_attn_indexes=tuple(cfg.global_attn_indexes),
        )
    if isinstance(cfg, TinyViTConfig):
        from samkit.modeling.encoders.tiny_vit import TinyViT

        return TinyViT(
            img_size=cfg.img_size,
            embed_dims=tuple(cfg.embed_dims),
            depths=tuple(cfg.depths),
            num_heads=tuple(cfg.num_heads),
            window_sizes=tuple(cfg.window_sizes),
            mlp_ratio=cfg.mlp_ratio,
            mbconv_expand_ratio=cfg.mbconv_expand_ratio,
            local_conv_size=cfg.local_conv_size,
            out_chans=cfg.out_chans,
            num_classes=cfg.num_classes,
        )
    raise InvalidArgumentType(f"unsupported encoder config {type(cfg).__name__}")


def _prompt_encoder(pe: PromptEncoderConfig, box_corner_labels: bool) -> PromptEncoder:
    return PromptEncoder(
        embed_dim=pe.embed_dim,
        image_embedding_size=(pe.image_embedding_size, pe.image_embedding_size),
        input_image_size=(pe.input_image_size, pe.input_image_size),
        mask_in_chans=pe.mask_in_chans,
        box_corner_labels=box_corner_labels,
    )


def _transformer(md: MaskDecoderConfig, sam2_mlp: bool) -> TwoWayTransformer:
    return TwoWayTransformer(
        depth=md.transformer_depth,
        embedding_dim=md.transformer_dim,
        num_heads=md.transformer_heads,
        mlp_dim=md.transformer_mlp_dim,
        sam2_mlp=sam2_mlp,
    )


def build_sam(cfg: SamConfig) -> Sam:
    """Instantiate a SAM 1-family model with random weights from its config."""
    md = cfg.mask_decoder
    return Sam(
        image_encoder=_build_encoder(cfg.encoder),
        prompt_encoder=_prompt_encoder(cfg.prompt_encoder, box_corner_labels=False),
        mask_decoder=MaskDecoder(
            transformer_dim=md.transformer_dim,
            transformer=_transformer(md, sam2_mlp=False),
            num_multimask_outputs=md.num_multimask_outputs,
            iou_head_depth=md.iou_head_depth,
            iou_head_hidden_dim=md.iou_head_hidden_dim,
        ),
        pixel_mean=cfg.pixel_mean,
        pixel_std=cfg.pixel_std,
        image_size=cfg.image_size,
    )


def build_sam2(cfg: Sam2Config) -> SamModel:
    """Instantiate a SAM 2 / 2.1 model with random weights from its config."""
    from samkit.modeling.encoders.hiera import Sam2ImageEncoder
    from samkit.modeling.memory import build_memory_attention, build_memory_encoder
    from samkit.modeling.sam2 import Sam2

    md = cfg.mask_decoder
    return Sam2(
        config=cfg,
        image_encoder=Sam2ImageEncoder(cfg.encoder, cfg.neck),
        memory_attention=build_memory_attention(cfg.memory),
        memory_encoder=build_memory_encoder(cfg.memory),
        prompt_encoder=_prompt_encoder(cfg.prompt_encoder, box_corner_labels=True),
        mask_decoder=MaskDecoder(
            transformer_dim=md.transformer_dim,
            transformer=_transformer(md, sam2_mlp=True),
            num_multimask_outputs=md.num_multimask_outputs,
            iou_head_depth=md.iou_head_depth,
            iou_head_hidden_dim=md.iou_head_hidden_dim,
            use_high_res_features=True,
            iou_prediction_use_sigmoid=True,
            pred_obj_scores=True,
            pred_obj_scores_mlp=True,
            use_multimask_token_for_obj_ptr=True,
            dynamic_multimask_via_stability=True,
            dynamic_multimask_stability_delta=cfg.dynamic_multimask_stability_delta,
            dynamic_multimask_stability_thresh=cfg.dynamic_multimask_stability_thresh,
        ),
    )


def _build(cfg: SamConfig | Sam2Config) -> SamModel:
    return build_sam2(cfg) if isinstance(cfg, Sam2Config) else build_sam(cfg)


def _preset(
    name_or_preset: str | ModelPreset | SamConfig | Sam2Config,
) -> tuple[str, SamConfig | Sam2Config]:
    if isinstance(name_or_preset, (SamConfig, Sam2Config)):
        return "custom", name_or_preset
    preset = get_preset(name_or_preset) if isinstance(name_or_preset, str) else name_or_preset
    return preset.name, preset.config


def set_inference_dtype(model: SamModel, dtype: torch.dtype) -> SamModel:
    """Run ``model``'s heavy parts in ``dtype`` (in place; returns ``model``): what
    ``load_model(..., dtype=dtype)`` and ``build_model(..., dtype=dtype)`` do.

    Only the image encoder and SAM 2's memory attention (most of a tracked video frame)
    are cast. The prompt encoder, mask decoder and memory encoder stay in float32: they
    take milliseconds and their logits decide the mask edges and the memories.
    """
    model.image_encoder.to(dtype)
    memory_attention = getattr(model, "memory_attention", None)
    if memory_attention is not None:
        memory_attention.to(dtype)
    return model


#: Dtypes the heavy parts can run in (:func:`set_inference_dtype`), by name too.
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """``dtype`` as a floating torch dtype samkit runs in (float32, bfloat16, float16;
    their names are accepted too), ``None`` as is; :class:`~samkit.errors.InvalidArgument`
    (a ``ValueError``) otherwise (checked before any weights are read)."""
    if dtype is None:
        return None
    resolved = _DTYPES.get(dtype) if isinstance(dtype, str) else dtype
    if resolved not in _DTYPES.values():
        raise InvalidArgument(f"dtype must be one of {', '.join(_DTYPES)} (or None), got {dtype!r}")
    return resolved


def _place(model: SamModel, device: str | torch.device, dtype: torch.dtype | None) -> SamModel:
    model = model.to(device)
    if dtype is not None and dtype != torch.float32:
        set_inference_dtype(model, dtype)
    return model.eval()


def build_model(
    name: str | ModelPreset | SamConfig | Sam2Config,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
) -> SamModel:
    """Build a registered architecture with random weights (for tests and training).

    ``name`` is a registry name or alias, a :class:`ModelPreset`, or a :class:`SamConfig`
    / :class:`Sam2Config`. The model is returned in eval mode.
    """
    dtype = check_dtype(dtype)
    preset_name, cfg = _preset(name)
    model = _build(cfg)
    model.name = preset_name
    return _place(model, device, dtype)


def load_weights(model: SamModel, state_dict: Mapping[str, torch.Tensor], source: str) -> SamModel:
    """Copy an official-format (or HF-format) state dict into ``model``, strictly.

    HF SAM 2 dicts (``Sam2VideoModel`` / ``Sam2Model`` names) are tested first: their prompt
    encoder and decoder share SAM 1's HF names, so :func:`is_hf_sam_state_dict` is true for them
    too. For a SAM 2 model, a converted HF dict lacking tensors the model needs (the video
    modules of a file saved from the image-only ``Sam2Model``) raises a
    :class:`CheckpointError` naming the missing groups.
    """
    from samkit.hf_keys import (
        check_hf_sam2_complete,
        hf_to_official_sam,
        hf_to_official_sam2,
        is_hf_sam2_state_dict,
        is_hf_sam_state_dict,
    )

    if is_hf_sam2_state_dict(state_dict):
        state_dict = hf_to_official_sam2(dict(state_dict))
        if getattr(model, "family", None) == "sam2":
            check_hf_sam2_complete(state_dict, model.state_dict().keys(), source)
    elif is_hf_sam_state_dict(state_dict):
        state_dict = hf_to_official_sam(dict(state_dict))
    check_state_dict(model, state_dict, source)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:  # e.g. a dtype that cannot be copied
        raise CheckpointError(f"cannot load {source}: {str(exc).splitlines()[0]}") from None
    return model


def load_model(
    name: str | ModelPreset | SamConfig | Sam2Config,
    checkpoint: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str | None = None,
    progress: bool = True,
) -> SamModel:
    """Build ``name`` and load its weights.

    Args:
        name: registry name (see :func:`samkit.list_models`), preset or config.
        checkpoint: path to an official ``.pth``/``.pt`` state dict, a ``{"model": ...}``
            checkpoint, or an HF ``model.safetensors``. ``None`` uses the bundled weights,
            the cache (``$SAMKIT_CACHE``, default ``~/.cache/samkit``) or downloads them.
        device: where the model runs.
        dtype: e.g. ``torch.bfloat16`` (or ``"bfloat16"``) to run the image encoder (and
            SAM 2's memory attention) in bf16; the other parts stay in float32. Other
            than float32 / bfloat16 / float16: :class:`~samkit.errors.InvalidArgument`
            (a ``ValueError``), before anything is read.
        progress: show a download progress bar.

    Raises:
        UnknownModel, CheckpointError, DownloadError.
    """
    dtype = check_dtype(dtype)
    preset_name, cfg = _preset(name)
    if checkpoint is None:
        if isinstance(name, (SamConfig, Sam2Config)):
            raise CheckpointError("a custom config needs an explicit checkpoint path")
        preset = get_preset(name) if isinstance(name, str) else name  # a preset: its own
        spec = preset.weights
        if spec is None:
            raise CheckpointError(f"model {preset_name!r} has no published weights")
        checkpoint = resolve_weights(spec, progress=progress)
        try:
            state_dict = read_state_dict(checkpoint)
        except CheckpointError as exc:
            if bundled_path(spec) is not None:
                raise
            raise CheckpointError(
                f"{exc}; it is the cached download of {preset_name}: delete it and run "
                f"`samkit download {preset_name}` (or download {spec.url} yourself)"
            ) from None
    else:
        state_dict = read_state_dict(checkpoint)
    with torch.device("meta"):
        model = _build(cfg)
    model = model.to_empty(device="cpu")
    model.init_non_persistent_buffers()
    load_weights(model, state_dict, str(checkpoint))
    model.name = preset_name
    return _place(model, device, dtype)
