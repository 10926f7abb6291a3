"""Architecture and weight dataclasses. Every number of an architecture lives here."""

from __future__ import annotations

from dataclasses import dataclass, field

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class ViTConfig:
    """SAM 1 ViT image encoder."""

    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    patch_size: int = 16
    mlp_ratio: float = 4.0
    out_chans: int = 256
    img_size: int = 1024
    kind: str = "vit"


@dataclass(frozen=True)
class TinyViTConfig:
    """MobileSAM TinyViT image encoder."""

    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    out_chans: int = 256
    img_size: int = 1024
    num_classes: int = 1000
    kind: str = "tiny_vit"


@dataclass(frozen=True)
class PromptEncoderConfig:
    embed_dim: int = 256
    image_embedding_size: int = 64
    input_image_size: int = 1024
    mask_in_chans: int = 16


@dataclass(frozen=True)
class MaskDecoderConfig:
    transformer_dim: int = 256
    transformer_depth: int = 2
    transformer_heads: int = 8
    transformer_mlp_dim: int = 2048
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256


@dataclass(frozen=True)
class SamConfig:
    """A SAM 1-family model: one encoder config + prompt encoder + mask decoder."""

    encoder: ViTConfig | TinyViTConfig = field(default_factory=ViTConfig)
    prompt_encoder: PromptEncoderConfig = field(default_factory=PromptEncoderConfig)
    mask_decoder: MaskDecoderConfig = field(default_factory=MaskDecoderConfig)
    pixel_mean: tuple[float, float, float] = SAM_PIXEL_MEAN
    pixel_std: tuple[float, float, float] = SAM_PIXEL_STD
    image_size: int = 1024
    family: str = "sam"


@dataclass(frozen=True)
class WeightSpec:
    """Where a preset's weights come from and how to verify them.

    ``sha256`` and ``size`` describe the official file byte for byte; ``hf_id`` names the
    Hugging Face repository holding the same weights in HF format.
    """

    url: str
    filename: str
    sha256: str | None = None
    size: int | None = None
    hf_id: str | None = None
    bundled: str | None = None  # package-relative path of weights shipped inside samkit


@dataclass(frozen=True)
class ModelPreset:
    name: str
    config: SamConfig
    weights: WeightSpec | None
    description: str = ""
    aliases: tuple[str, ...] = ()
