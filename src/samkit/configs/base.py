"""Architecture and weight dataclasses. Every number of an architecture lives here."""

from __future__ import annotations

from dataclasses import dataclass, field

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)
# SAM 2 normalises 0-1 images with the ImageNet statistics.
SAM2_PIXEL_MEAN = (0.485, 0.456, 0.406)
SAM2_PIXEL_STD = (0.229, 0.224, 0.225)


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
class HieraConfig:
    """SAM 2 Hiera trunk (hieradet): a 7x7 stride-4 patch embedding, four stages.

    ``stages`` blocks per stage; each later stage halves the resolution (max-pooled
    queries in its first block, ``q_pool`` of them) and multiplies width by ``dim_mul``
    and heads by ``head_mul``. ``window_spec`` is the attention window per stage,
    ``global_att_blocks`` the (global-index) blocks with global attention.
    """

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (1, 2, 7, 2)
    global_att_blocks: tuple[int, ...] = (5, 7, 9)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7)
    q_pool: int = 3
    q_stride: tuple[int, int] = (2, 2)
    dim_mul: float = 2.0
    head_mul: float = 2.0
    mlp_ratio: float = 4.0
    kind: str = "hiera"

    @property
    def channel_list(self) -> tuple[int, ...]:
        """Output width of each stage, deepest first (the FPN's ``backbone_channel_list``)."""
        dims = [int(self.embed_dim * self.dim_mul**i) for i in range(len(self.stages))]
        return tuple(reversed(dims))


@dataclass(frozen=True)
class FpnConfig:
    """SAM 2 FPN neck: 1x1 lateral convs to ``d_model``; top-down fusion only at
    ``top_down_levels`` (levels 0/1, strides 4/8, use the trunk features directly);
    ``scalp`` drops the lowest-resolution level(s) from the output."""

    d_model: int = 256
    top_down_levels: tuple[int, ...] = (2, 3)
    interp_mode: str = "nearest"
    scalp: int = 1


@dataclass(frozen=True)
class MemoryConfig:
    """SAM 2 memory encoder and memory attention (the video path).

    Memory attention: ``num_layers`` layers of RoPE self-attention, RoPE
    cross-attention to ``mem_dim``-wide memories, and an MLP. Memory encoder: a
    mask downsampler of 2-stride convs to the backbone stride, a ConvNeXt-style fuser
    and a projection to ``mem_dim`` channels.
    """

    d_model: int = 256
    mem_dim: int = 64
    num_layers: int = 4
    num_heads: int = 1
    dim_feedforward: int = 2048
    dropout: float = 0.1
    rope_theta: float = 10000.0
    feat_sizes: tuple[int, int] = (64, 64)
    fuser_layers: int = 2
    fuser_kernel_size: int = 7
    downsampler_kernel_size: int = 3
    downsampler_stride: int = 2
    downsampler_padding: int = 1
    downsampler_total_stride: int = 16


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
class Sam2Config:
    """A SAM 2 / 2.1 model: Hiera + FPN image encoder, SAM heads, memory modules.

    The flags reproduce the official configs (identical for all four sizes); the 2.1
    files differ from 2.0 only in the four ``version``-dependent flags below.
    """

    encoder: HieraConfig = field(default_factory=HieraConfig)
    neck: FpnConfig = field(default_factory=FpnConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    prompt_encoder: PromptEncoderConfig = field(default_factory=PromptEncoderConfig)
    mask_decoder: MaskDecoderConfig = field(default_factory=MaskDecoderConfig)
    pixel_mean: tuple[float, float, float] = SAM2_PIXEL_MEAN
    pixel_std: tuple[float, float, float] = SAM2_PIXEL_STD
    image_size: int = 1024
    backbone_stride: int = 16
    version: str = "2.1"  # "2.0" or "2.1"
    num_maskmem: int = 7
    max_obj_ptrs_in_encoder: int = 16
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    # mask decoder: single-mask output falls back to the best multimask output when
    # unstable (what the official build functions switch on)
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    # SAM2Base's flag: frames tracked without clicks also get the three candidates (the
    # one with the best predicted IoU is kept). Every official config sets it; with it
    # off, tracked frames use the decoder's single output.
    multimask_output_for_tracking: bool = True
    family: str = "sam2"

    @property
    def no_obj_embed_spatial(self) -> bool:
        return self.version == "2.1"

    @property
    def add_tpos_enc_to_obj_ptrs(self) -> bool:
        return self.version == "2.1"

    @property
    def proj_tpos_enc_in_obj_ptrs(self) -> bool:
        return self.version == "2.1"

    @property
    def use_signed_tpos_enc_to_obj_ptrs(self) -> bool:
        return self.version == "2.1"


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
class MaskGeneratorDefaults:
    """Automatic-mask-generation thresholds calibrated for one model's weights.

    The official values (SAM 1: predicted IoU 0.88, SAM 2: 0.8; stability 0.95 at logit
    offset 1.0) suit the official checkpoints; a model whose IoU head and logits are
    scaled differently (samkit's small demo model) needs its own, or the generator keeps
    nothing. :class:`samkit.MaskGenerator` and ``samkit auto`` use these when the
    caller gives no threshold.
    """

    pred_iou_thresh: float
    stability_score_thresh: float
    stability_score_offset: float = 1.0


@dataclass(frozen=True)
class ModelPreset:
    """A registered model: architecture, weights, and (optionally) generator defaults
    calibrated for those weights (``amg``; ``None``: the family's official values)."""

    name: str
    config: SamConfig | Sam2Config
    weights: WeightSpec | None
    description: str = ""
    aliases: tuple[str, ...] = ()
    amg: MaskGeneratorDefaults | None = None
