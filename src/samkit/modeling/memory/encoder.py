"""SAM 2 memory encoder: fuses a frame's image features with its predicted mask.

The mask logits (image resolution) are squashed with a sigmoid, downsampled to the
backbone stride by a stack of strided convolutions, added to a 1x1 projection of the
frame's features, mixed by ConvNeXt-style blocks and projected to the narrow memory
width. A sine position encoding of the memory grid is returned with it.

Attribute names equal the official checkpoint keys under ``memory_encoder.``. Stochastic
depth (the official ``drop_path``) is only ever configured at 0 for SAM 2, i.e. the
identity; it is kept as an ``nn.Identity`` so the module tree matches.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from samkit.configs.base import MemoryConfig
from samkit.errors import InvalidConfig
from samkit.layers.common import LayerNorm2d
from samkit.layers.position import PositionEmbeddingSine


class MaskDownSampler(nn.Module):
    """Downsample a 1-channel mask by ``total_stride`` and widen it to ``embed_dim``.

    Each of the ``log_stride(total_stride)`` stages is a ``stride``-strided conv that
    multiplies the channels by ``stride ** 2`` (1 -> 4 -> 16 -> ... for stride 2),
    followed by a channel LayerNorm and GELU; a final 1x1 conv projects to ``embed_dim``.
    Keys: ``encoder.{i}`` (conv, norm, activation per stage; the last index is the 1x1).

    Input ``(B, 1, H, W)``; output ``(B, embed_dim, H / total_stride, W / total_stride)``
    (for SAM 2's kernel 3 / padding 1 convs).
    """

    def __init__(
        self,
        embed_dim: int = 256,
        kernel_size: int = 4,
        stride: int = 4,
        padding: int = 0,
        total_stride: int = 16,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        num_stages = round(math.log(total_stride) / math.log(stride))
        if stride**num_stages != total_stride:
            raise InvalidConfig(f"total_stride {total_stride} is not a power of stride {stride}")
        self.encoder = nn.Sequential()
        in_chans = out_chans = 1
        for _ in range(num_stages):
            out_chans = in_chans * stride**2
            self.encoder.append(
                nn.Conv2d(in_chans, out_chans, kernel_size, stride=stride, padding=padding)
            )
            self.encoder.append(LayerNorm2d(out_chans))
            self.encoder.append(activation())
            in_chans = out_chans
        self.encoder.append(nn.Conv2d(out_chans, embed_dim, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` -> ``(B, embed_dim, H / total_stride, W / total_stride)``."""
        return self.encoder(x)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise conv, LayerNorm, 4x MLP (GELU), layer scale, residual.

    Keys: ``dwconv``, ``norm``, ``pwconv1``, ``pwconv2``, ``gamma`` (absent when
    ``layer_scale_init_value <= 0``). The pointwise layers are ``nn.Linear`` on
    channels-last tensors. ``drop_path`` is the identity (inference; SAM 2 uses 0).

    Input and output ``(B, dim, H, W)``.
    """

    def __init__(
        self,
        dim: int,
        kernel_size: int = 7,
        padding: int = 3,
        drop_path: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        use_dwconv: bool = True,
    ) -> None:
        super().__init__()
        if drop_path > 0.0:
            raise NotImplementedError("stochastic depth is not implemented (SAM 2 uses 0)")
        groups = dim if use_dwconv else 1
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=padding, groups=groups)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        if layer_scale_init_value > 0:
            self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale_init_value)))
        else:
            self.gamma = None
        self.drop_path = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, dim, H, W)`` -> ``(B, dim, H, W)``."""
        y = self.dwconv(x).permute(0, 2, 3, 1)  # channels-last (B, H, W, dim)
        y = self.norm.forward_channels_last(y)
        y = self.pwconv2(self.act(self.pwconv1(y)))
        if self.gamma is not None:
            y = y * self.gamma
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class Fuser(nn.Module):
    """An optional 1x1 input projection (``proj``; the identity in SAM 2) then
    ``num_layers`` :class:`CXBlock` s (``layers.{i}``). ``(B, dim, H, W)`` in and out."""

    def __init__(
        self,
        dim: int,
        num_layers: int,
        kernel_size: int = 7,
        padding: int = 3,
        layer_scale_init_value: float = 1e-6,
        use_dwconv: bool = True,
        input_projection: bool = False,
    ) -> None:
        super().__init__()
        self.proj: nn.Module = nn.Conv2d(dim, dim, 1) if input_projection else nn.Identity()
        self.layers = nn.ModuleList(
            CXBlock(
                dim,
                kernel_size=kernel_size,
                padding=padding,
                layer_scale_init_value=layer_scale_init_value,
                use_dwconv=use_dwconv,
            )
            for _ in range(num_layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, dim, H, W)`` -> ``(B, dim, H, W)``."""
        x = self.proj(x)
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """Encode one frame's features and mask into a memory.

    Keys: ``mask_downsampler``, ``pix_feat_proj``, ``fuser``, ``out_proj`` (the identity
    when ``out_dim == in_dim``); ``position_encoding`` has no parameters.

    Args:
        out_dim: memory width (64 in SAM 2).
        in_dim: image feature width (256).
        fuser_layers: number of :class:`CXBlock` s.
        fuser_kernel_size: their depthwise kernel (padding ``kernel // 2``).
        layer_scale_init_value: initial ``gamma`` of the blocks.
        downsampler_kernel_size, downsampler_stride, downsampler_padding,
        downsampler_total_stride: the :class:`MaskDownSampler` convs.
    """

    def __init__(
        self,
        out_dim: int = 64,
        in_dim: int = 256,
        fuser_layers: int = 2,
        fuser_kernel_size: int = 7,
        layer_scale_init_value: float = 1e-6,
        downsampler_kernel_size: int = 3,
        downsampler_stride: int = 2,
        downsampler_padding: int = 1,
        downsampler_total_stride: int = 16,
    ) -> None:
        super().__init__()
        self.mask_downsampler = MaskDownSampler(
            embed_dim=in_dim,
            kernel_size=downsampler_kernel_size,
            stride=downsampler_stride,
            padding=downsampler_padding,
            total_stride=downsampler_total_stride,
        )
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = Fuser(
            in_dim,
            fuser_layers,
            kernel_size=fuser_kernel_size,
            padding=fuser_kernel_size // 2,
            layer_scale_init_value=layer_scale_init_value,
        )
        self.position_encoding = PositionEmbeddingSine(out_dim)
        self.out_proj: nn.Module = (
            nn.Conv2d(in_dim, out_dim, kernel_size=1) if out_dim != in_dim else nn.Identity()
        )

    @classmethod
    def from_config(cls, cfg: MemoryConfig) -> MemoryEncoder:
        """The memory encoder of the official SAM 2 / 2.1 configs."""
        return cls(
            out_dim=cfg.mem_dim,
            in_dim=cfg.d_model,
            fuser_layers=cfg.fuser_layers,
            fuser_kernel_size=cfg.fuser_kernel_size,
            downsampler_kernel_size=cfg.downsampler_kernel_size,
            downsampler_stride=cfg.downsampler_stride,
            downsampler_padding=cfg.downsampler_padding,
            downsampler_total_stride=cfg.downsampler_total_stride,
        )

    def forward(
        self, pix_feat: torch.Tensor, masks: torch.Tensor, skip_mask_sigmoid: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a memory.

        Args:
            pix_feat: ``(B, in_dim, H, W)`` image features at the backbone stride.
            masks: ``(B, 1, H * s, W * s)`` mask logits (``s = total_stride``), or
                probabilities / binary masks with ``skip_mask_sigmoid=True``.
            skip_mask_sigmoid: use ``masks`` as they are instead of ``sigmoid(masks)``.

        Returns:
            ``(vision_features, vision_pos_enc)``, both ``(B, out_dim, H, W)`` in the
            features' dtype. (The official returns them in a dict, the position encoding
            wrapped in a one-element list.) ``vision_pos_enc`` may be a broadcast view of
            a cached table; do not modify it in place.
        """
        if not skip_mask_sigmoid:
            masks = torch.sigmoid(masks)
        masks = self.mask_downsampler(masks)
        x = self.pix_feat_proj(pix_feat.to(masks.device)) + masks
        x = self.out_proj(self.fuser(x))
        pos = self.position_encoding(x).to(x.dtype)
        return x, pos


def build_memory_encoder(cfg: MemoryConfig) -> MemoryEncoder:
    """The memory encoder of the official SAM 2 / 2.1 configs (see ``MemoryConfig``)."""
    return MemoryEncoder.from_config(cfg)
