"""SAM 1 image encoder: a plain ViT with windowed and global attention.

Attribute names reproduce the official checkpoint keys (``image_encoder.patch_embed.proj``,
``pos_embed``, ``blocks.{i}.attn.qkv`` / ``rel_pos_h`` / ``rel_pos_w``, ``neck.{0..3}``).
Input ``(B, 3, S, S)`` normalised and padded image (S = ``img_size``), output
``(B, out_chans, S/patch, S/patch)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from samkit.layers.common import (
    LayerNorm2d,
    MLPBlock,
    bounded_inference,
    residual_rowwise,
    rows_per_chunk,
)
from samkit.layers.rel_pos import rel_pos_attention
from samkit.layers.sdpa import scaled_dot_product_attention


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection; returns channels-last ``(B, H, W, C)``."""

    def __init__(self, *, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class RelPosAttention(nn.Module):
    """Multi-head self-attention over a ``(B, H, W, C)`` grid with decomposed rel-pos."""

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        qkv_bias: bool,
        use_rel_pos: bool,
        input_size: tuple[int, int],
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` -> ``(B, H, W, C)``."""
        return self.proj(self.attend(self.qkv(x)))

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """Attention core on projected ``(B, H, W, 3C)`` -> ``(B, H, W, C)`` (before proj)."""
        b, h, w, _ = qkv.shape
        qkv = qkv.reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, HW, C)
        if self.use_rel_pos:
            out = rel_pos_attention(q, k, v, self.rel_pos_h, self.rel_pos_w, (h, w))
        else:
            out = scaled_dot_product_attention(q, k, v)
        return out.transpose(1, 2).reshape(b, h, w, -1)


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Split ``(B, H, W, C)`` into ``(B*nW, window, window, C)`` windows, zero-padding
    the bottom/right first. Returns the windows and the padded ``(Hp, Wp)``."""
    b, h, w, c = x.shape
    pad_h = (window - h % window) % window
    pad_w = (window - w % window) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c)
    return windows, (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`; crops the padding away."""
    hp, wp = padded
    h, w = size
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(b, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    if hp > h or wp > w:
        x = x[:, :h, :w, :].contiguous()
    return x


class ViTBlock(nn.Module):
    """Pre-norm transformer block; ``window_size`` 0 means global attention."""

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        qkv_bias: bool,
        use_rel_pos: bool,
        window_size: int,
        input_size: tuple[int, int],
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = RelPosAttention(
            dim=dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            use_rel_pos=use_rel_pos,
            input_size=input_size if window_size == 0 else (window_size, window_size),
        )
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), nn.GELU)
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            x = self._window_attention(x)
        else:
            x = self.attn(x)
        x = shortcut + x
        return residual_rowwise(x, lambda t: self.mlp(self.norm2(t)), self.mlp.lin1.out_features)

    def _window_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Windowed attention equal to the official pad-then-partition formulation.

        The official block zero-pads the normalised tokens to a multiple of the window
        and projects the padding too. A zero token projects to the qkv bias, so we project
        only the real tokens, fill the padding with the bias, and apply the output
        projection after cropping: same result, ~16% less projection work at 64x64.
        """
        b, h, w, c = x.shape
        ws = self.window_size
        band = ws * rows_per_chunk(ws * (w + ws) * 3 * c, x.element_size())
        if not bounded_inference() or h <= band:
            return self._window_rows(x)
        # At inference, one band of window rows at a time: windows never straddle bands
        # (bands start at multiples of the window) and only the last band is padded at
        # the bottom, as the whole grid would be, so the result is the same while the
        # qkv/window temporaries stay small (see ``TRANSIENT_BYTES``).
        out = x.new_empty(b, h, w, c)
        for r0 in range(0, h, band):
            out[:, r0 : r0 + band] = self._window_rows(x[:, r0 : r0 + band])
        return out

    def _window_rows(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`_window_attention` on rows starting at a multiple of the window."""
        b, h, w, _ = x.shape
        ws = self.window_size
        qkv = self.attn.qkv(x)
        hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
        if (hp, wp) != (h, w):
            bias = self.attn.qkv.bias
            full = qkv.new_zeros(b, hp, wp, qkv.shape[-1])
            if bias is not None:
                full[:] = bias
            full[:, :h, :w] = qkv
            qkv = full
        windows, padded = window_partition(qkv, ws)
        out = window_unpartition(self.attn.attend(windows), ws, padded, (h, w))
        return self.attn.proj(out)


class ImageEncoderViT(nn.Module):
    """SAM 1 ViT image encoder (ViT-B/L/H and reduced test configs)."""

    def __init__(
        self,
        *,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        qkv_bias: bool = True,
        use_abs_pos: bool = True,
        use_rel_pos: bool = True,
        window_size: int = 14,
        global_attn_indexes: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
        self.pos_embed: nn.Parameter | None = None
        if use_abs_pos:
            self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            ViTBlock(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                use_rel_pos=use_rel_pos,
                window_size=0 if i in global_attn_indexes else window_size,
                input_size=(grid, grid),
            )
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, out_chans, S/16, S/16)``."""
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.neck(x.permute(0, 3, 1, 2))
