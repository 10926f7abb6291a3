"""MobileSAM image encoder: TinyViT-5M followed by the SAM neck.

Attribute names reproduce the official MobileSAM checkpoint keys (``image_encoder.`` prefix
removed): ``patch_embed.seq.{0,2}``, ``layers.0.blocks.{i}.conv{1,2,3}`` (MBConv stage),
``layers.{1,2,3}.blocks.{i}.attn`` / ``mlp`` / ``local_conv``, ``layers.{0,1,2}.downsample``,
the unused classifier ``norm_head`` / ``head`` and ``neck.{0..3}``. Every convolution of the
backbone is a bias-free ``Conv2d`` followed by ``BatchNorm2d`` (keys ``c`` and ``bn``).

Input ``(B, 3, S, S)`` normalised and padded image (S = ``img_size`` = 1024), output
``(B, out_chans, S/16, S/16)``. Stages run at strides 4, 8, 16 and 16: the patch merging
into the last stage keeps the resolution, as in MobileSAM.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from samkit.errors import InvalidConfig
from samkit.layers.common import LayerNorm2d, bounded_inference, residual_rowwise, rows_per_chunk
from samkit.layers.sdpa import scaled_dot_product_attention


class ConvBN(nn.Module):
    """Bias-free ``Conv2d`` then ``BatchNorm2d`` on ``(B, C, H, W)`` (keys ``c``, ``bn``)."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        *,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        groups: int = 1,
    ) -> None:
        super().__init__()
        self.c = nn.Conv2d(
            in_chans, out_chans, kernel_size, stride, padding, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.c(x))


class PatchEmbed(nn.Module):
    """Two stride-2 3x3 convolutions: ``(B, in, H, W)`` -> ``(B, dim, H/4, W/4)``."""

    def __init__(self, *, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        mid = embed_dim // 2
        self.seq = nn.Sequential(
            ConvBN(in_chans, mid, kernel_size=3, stride=2, padding=1),
            nn.GELU(),
            ConvBN(mid, embed_dim, kernel_size=3, stride=2, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual (1x1 expand, 3x3 depthwise, 1x1 project) on ``(B, C, H, W)``.

    The activation is applied after the residual sum; shape is preserved.
    """

    def __init__(self, dim: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = ConvBN(dim, hidden)
        self.act1 = nn.GELU()
        self.conv2 = ConvBN(hidden, hidden, kernel_size=3, padding=1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = ConvBN(hidden, dim)
        nn.init.zeros_(self.conv3.bn.weight)  # each block starts as (GELU of) identity
        self.act3 = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.shape[-2]
        hidden = self.conv1.c.out_channels
        rows = rows_per_chunk(hidden * x.shape[0] * x.shape[-1], x.element_size())
        if self.training or not bounded_inference() or h <= rows:
            return self._rows(x, 0, h)
        # At inference, bands of rows: the expanded hidden activation of the first stage
        # (4x the channels at 1/4 resolution, 64 MiB for a 1024 image) never exists
        # whole. Each band recomputes one halo row on either side for the 3x3 conv.
        out = torch.empty_like(x)
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            out[:, :, r0:r1] = self._rows(x, r0, r1)
        return out

    def _rows(self, x: torch.Tensor, r0: int, r1: int) -> torch.Tensor:
        """The block's output rows ``[r0, r1)`` of ``(B, C, H, W)`` (all rows: plain)."""
        h = x.shape[-2]
        if (r0, r1) == (0, h):
            y = self.act1(self.conv1(x))
            y = self.act2(self.conv2(y))
            return self.act3(x + self.conv3(y))
        e0, e1 = max(0, r0 - 1), min(h, r1 + 1)
        y = self.act1(self.conv1(x[:, :, e0:e1]))
        # zero rows where the band meets the image border, like the conv's own padding
        y = F.pad(y, (0, 0, int(e0 == r0), int(e1 == r1)))
        y = y.contiguous(memory_format=torch.channels_last)  # pad returns NCHW storage
        dw = self.conv2.c
        y = F.conv2d(y, dw.weight, None, dw.stride, (0, dw.padding[1]), dw.dilation, dw.groups)
        y = self.act2(self.conv2.bn(y))
        return self.act3(x[:, :, r0:r1] + self.conv3(y))


class PatchMerging(nn.Module):
    """1x1 conv, depthwise 3x3 conv (stride ``stride``), 1x1 conv, GELU between.

    ``(B, dim, H, W)`` -> ``(B, out_dim, H/stride, W/stride)`` (ceil division).
    """

    def __init__(self, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.act = nn.GELU()
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(
            out_dim, out_dim, kernel_size=3, stride=stride, padding=1, groups=out_dim
        )
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        return self.conv3(x)


class ConvLayer(nn.Module):
    """First stage: MBConv blocks then an optional merge; ``(B, C, H, W)`` in and out."""

    def __init__(
        self, *, dim: int, depth: int, expand_ratio: float, downsample: PatchMerging | None
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        if self.downsample is not None:
            x = self.downsample(x)
        return x


def relative_offset_index(window_size: int) -> torch.Tensor:
    """Index of the ``(|dy|, |dx|)`` offset between every pair of window positions.

    Positions are numbered row-major inside a ``window_size`` square; the offset
    ``(dy, dx)`` has index ``dy * window_size + dx``. Returns ``(N, N)`` int64 with
    ``N = window_size**2``.
    """
    coords = torch.arange(window_size)
    ys = coords.repeat_interleave(window_size)
    xs = coords.repeat(window_size)
    dy = (ys[:, None] - ys[None, :]).abs()
    dx = (xs[:, None] - xs[None, :]).abs()
    return dy * window_size + dx


class Attention(nn.Module):
    """Pre-norm multi-head attention over ``(B', N, C)`` windows with a learned offset bias.

    ``N`` must equal ``window_size**2``. ``attention_biases`` is ``(heads, window_size**2)``,
    one scalar per head and absolute 2-D offset; it is expanded to ``(heads, N, N)`` with the
    non-persistent ``attention_bias_idxs`` buffer on every call (so it always reflects the
    current weights and never enters the state dict).
    """

    def __init__(self, *, dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        # Per head the projection holds [q | k | v], each ``head_dim`` wide.
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window_size * window_size))
        self.window_size = window_size
        self.register_buffer(
            "attention_bias_idxs", relative_offset_index(window_size), persistent=False
        )

    def init_non_persistent_buffers(self) -> None:
        """Recompute the index buffer (after building on the meta device)."""
        device = self.attention_biases.device
        self.attention_bias_idxs = relative_offset_index(self.window_size).to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3 * self.head_dim)
        q, k, v = qkv.transpose(1, 2).chunk(3, dim=-1)  # each (B', heads, N, head_dim)
        bias = self.attention_biases[:, self.attention_bias_idxs].to(q.dtype)
        out = scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class FeedForward(nn.Module):
    """Pre-norm two-layer GELU MLP on ``(..., dim)`` (keys ``norm``, ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


def window_attention(x: torch.Tensor, attn: Attention, window_size: int) -> torch.Tensor:
    """Apply ``attn`` in non-overlapping windows of a ``(B, H, W, C)`` grid.

    The grid is zero-padded at the bottom/right to a multiple of ``window_size``; padded
    positions take part in attention (as in TinyViT) and are cropped afterwards.
    Returns ``(B, H, W, C)``.
    """
    b, h, w, c = x.shape
    ws = window_size
    pad_b = -h % ws
    pad_r = -w % ws
    if pad_b or pad_r:
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))
    nh, nw = (h + pad_b) // ws, (w + pad_r) // ws
    windows = x.view(b, nh, ws, nw, ws, c).transpose(2, 3).reshape(b * nh * nw, ws * ws, c)
    windows = attn(windows)
    x = windows.view(b, nh, nw, ws, ws, c).transpose(2, 3).reshape(b, nh * ws, nw * ws, c)
    return x[:, :h, :w]


class TinyViTBlock(nn.Module):
    """Windowed attention, depthwise ``local_conv``, MLP; ``(B, H, W, C)`` in and out.

    ``x = x + attn(x)``; ``x = local_conv(x)`` (no residual); ``x = x + mlp(x)``.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        local_conv_size: int,
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise InvalidConfig(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.window_size = window_size
        self.attn = Attention(dim=dim, num_heads=num_heads, window_size=window_size)
        self.mlp = FeedForward(dim, int(dim * mlp_ratio))
        self.local_conv = ConvBN(
            dim, dim, kernel_size=local_conv_size, padding=local_conv_size // 2, groups=dim
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + window_attention(x, self.attn, self.window_size)
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return residual_rowwise(x, self.mlp, self.mlp.fc1.out_features)


class BasicLayer(nn.Module):
    """Transformer stage: TinyViT blocks then an optional merge; ``(B, C, H, W)`` in/out."""

    def __init__(
        self,
        *,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        local_conv_size: int,
        downsample: PatchMerging | None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(
                dim=dim,
                num_heads=num_heads,
                window_size=window_size,
                mlp_ratio=mlp_ratio,
                local_conv_size=local_conv_size,
            )
            for _ in range(depth)
        )
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        for block in self.blocks:
            x = block(x)
        x = x.permute(0, 3, 1, 2)
        if self.downsample is not None:
            x = self.downsample(x)
        return x


class TinyViT(nn.Module):
    """MobileSAM TinyViT image encoder (defaults: TinyViT-5M, 1024 input, 256-d output).

    ``forward``: ``(B, in_chans, S, S)`` -> ``(B, out_chans, S/16, S/16)``. The classifier
    ``norm_head`` / ``head`` exists only so the official checkpoint loads strictly; it is
    not used. Dropout and stochastic depth of the original are omitted (identity at
    inference).
    """

    def __init__(
        self,
        *,
        img_size: int = 1024,
        in_chans: int = 3,
        embed_dims: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (2, 4, 5, 10),
        window_sizes: Sequence[int] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        out_chans: int = 256,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        n_stages = len(depths)
        if not (len(embed_dims) == len(num_heads) == len(window_sizes) == n_stages >= 2):
            raise InvalidConfig("embed_dims, depths, num_heads, window_sizes must align (>= 2)")
        self.img_size = img_size
        self.patch_embed = PatchEmbed(in_chans=in_chans, embed_dim=embed_dims[0])
        self.layers = nn.ModuleList()
        for i in range(n_stages):
            downsample = None
            if i < n_stages - 1:
                # The merge into the last stage keeps the resolution (output stride 16).
                stride = 1 if i == n_stages - 2 else 2
                downsample = PatchMerging(embed_dims[i], embed_dims[i + 1], stride)
            if i == 0:
                layer: nn.Module = ConvLayer(
                    dim=embed_dims[0],
                    depth=depths[0],
                    expand_ratio=mbconv_expand_ratio,
                    downsample=downsample,
                )
            else:
                layer = BasicLayer(
                    dim=embed_dims[i],
                    depth=depths[i],
                    num_heads=num_heads[i],
                    window_size=window_sizes[i],
                    mlp_ratio=mlp_ratio,
                    local_conv_size=local_conv_size,
                    downsample=downsample,
                )
            self.layers.append(layer)
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_chans, S, S)`` image -> ``(B, out_chans, S/16, S/16)`` embeddings."""
        # Channels-last storage throughout (values unchanged): torch's CPU convolutions are
        # 2-8x faster on it than on NCHW, in fp32 and bf16 alike (measured on a 2-core Zen 4
        # for this model's pointwise, depthwise and stride-2 convolutions), and the
        # transformer stages' (B, H, W, C) view of it needs no copy.
        x = self.patch_embed(x.contiguous(memory_format=torch.channels_last))
        for layer in self.layers:
            x = layer(x)
        return self.neck(x)
