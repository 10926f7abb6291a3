"""SAM 2's image encoder: the Hiera trunk (hieradet) and the FPN neck.

Attribute names reproduce the official checkpoint keys under ``image_encoder.``:
``trunk.patch_embed.proj``, ``trunk.pos_embed``, ``trunk.pos_embed_window``,
``trunk.blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.layers.{0,1},proj}`` and
``neck.convs.{i}.conv``.

Tensors inside the trunk are channels-last ``(B, H, W, C)``; the encoder returns
channels-first feature maps. At a 1024 input the trunk's four stages run at strides
4/8/16/32 (256², 128², 64², 32²).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from samkit.configs.base import FpnConfig, HieraConfig
from samkit.errors import InvalidArgument, InvalidConfig
from samkit.layers.common import MLP, bounded_inference, residual_rowwise, rows_per_chunk
from samkit.layers.position import PositionEmbeddingSine
from samkit.layers.sdpa import scaled_dot_product_attention


def _window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(B, H, W, C)`` -> ``(B * nW, window, window, C)`` windows (zero-padded to a
    multiple of ``window``) and the padded size ``(Hp, Wp)``."""
    b, h, w, c = x.shape
    pad_h, pad_w = (-h) % window, (-w) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c).transpose(2, 3)
    return x.reshape(-1, window, window, c), (hp, wp)


def _window_unpartition(
    windows: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`_window_partition`: windows -> ``(B, H, W, C)`` (padding cut)."""
    hp, wp = padded
    h, w = size
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.reshape(b, hp // window, wp // window, window, window, -1).transpose(2, 3)
    x = x.reshape(b, hp, wp, -1)
    if hp > h or wp > w:
        x = x[:, :h, :w, :]
    return x


def _max_pool(x: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """Channels-last ``(B, H, W, C)`` max pooling with kernel = stride (floor mode)."""
    return F.max_pool2d(x.permute(0, 3, 1, 2), stride, stride).permute(0, 2, 3, 1)


def _folded_conv1x1(x: torch.Tensor, outer: nn.Conv2d, inner: nn.Conv2d) -> torch.Tensor:
    """``outer(inner(x))`` for two 1x1 convolutions as one product: ``(B, C, H, W)`` ->
    ``(B, C_out, H, W)`` (channels-last storage).

    Computed in the wider of ``x``'s and ``outer``'s dtypes: a bf16 encoder's features
    projected by the fp32 decoder come out in fp32 (the folded product is small).
    """
    dtype = torch.promote_types(x.dtype, outer.weight.dtype)
    w_in = inner.weight.flatten(1).to(dtype)  # (C_mid, C)
    w_out = outer.weight.flatten(1).to(dtype)  # (C_out, C_mid)
    weight = w_out @ w_in
    bias = w_out @ inner.bias.to(dtype) if inner.bias is not None else None
    if outer.bias is not None:
        bias = outer.bias.to(dtype) if bias is None else bias + outer.bias.to(dtype)
    y = F.linear(x.permute(0, 2, 3, 1).to(dtype), weight, bias)
    return y.permute(0, 3, 1, 2)


class PatchEmbed(nn.Module):
    """7x7 stride-4 convolution; ``(B, 3, H, W)`` -> channels-last ``(B, H/4, W/4, C)``."""

    def __init__(self, embed_dim: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    """Multi-head self-attention whose queries may be max-pooled (stage transitions).

    ``(B, H, W, C_in)`` -> ``(B, H', W', C_out)`` with ``H' = H / q_stride`` when pooling.
    """

    def __init__(
        self, dim: int, dim_out: int, num_heads: int, q_stride: tuple[int, int] | None
    ) -> None:
        super().__init__()
        self.dim = dim
        self.dim_out = dim_out
        self.num_heads = num_heads
        self.q_stride = q_stride
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        heads = self.num_heads
        qkv = self.qkv(x).reshape(b, h * w, 3, heads, -1)
        if self.q_stride is None:
            # one copy into head-major layout for all three: (3, B, heads, HW, d)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)
        else:
            k, v = (t.transpose(1, 2) for t in qkv[:, :, 1:].unbind(2))
            q = _max_pool(qkv[:, :, 0].reshape(b, h, w, -1), self.q_stride)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, heads, -1).transpose(1, 2)
        out = scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, h, w, -1))


class MultiScaleBlock(nn.Module):
    """Hiera block: (windowed) attention with optional query pooling, then an MLP.

    ``window_size`` 0 means global attention. When the block changes width it projects
    the normalised input for the residual path (``proj``) and pools it like the queries.
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        q_stride: tuple[int, int] | None = None,
        window_size: int = 0,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.dim_out = dim_out
        self.window_size = window_size
        self.q_stride = q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, q_stride)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, 2, activation=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, dim)`` -> ``(B, H', W', dim_out)``."""
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = self.proj(x)
            if self.q_stride is not None:
                shortcut = _max_pool(shortcut, self.q_stride)
        window = self.window_size
        if window > 0:
            x, padded = _window_partition(x, window)
            x = self._windowed_attention(x)
        else:
            x = self.attn(x)
        if window > 0:
            if self.q_stride is not None:
                # queries were pooled inside each window: smaller windows on the pooled grid
                window = window // self.q_stride[0]
                h, w = shortcut.shape[1:3]
                padded = (h + (-h) % window, w + (-w) % window)
            x = _window_unpartition(x, window, padded, shortcut.shape[1:3])
        x = shortcut + x
        hidden = self.mlp.layers[0].out_features
        return residual_rowwise(x, lambda t: self.mlp(self.norm2(t)), hidden)

    def _windowed_attention(self, windows: torch.Tensor) -> torch.Tensor:
        """``attn`` on ``(nW, ws, ws, C)`` windows; at inference in groups of windows
        whose q/k/v stay within ``TRANSIENT_BYTES`` (windows are independent, so the
        result is the same; the first stage's qkv alone is 75-150 MiB at 1024)."""
        n, ws1, ws2, _ = windows.shape
        rows = rows_per_chunk(ws1 * ws2 * 3 * self.dim_out, windows.element_size())
        if not bounded_inference() or n <= rows:
            return self.attn(windows)
        return torch.cat([self.attn(windows[i : i + rows]) for i in range(0, n, rows)])


class Hiera(nn.Module):
    """Hierarchical ViT trunk. ``(B, 3, S, S)`` -> list of stage outputs, highest
    resolution first: ``(B, C_i, S / 2^(i+2), S / 2^(i+2))``."""

    def __init__(self, cfg: HieraConfig) -> None:
        super().__init__()
        if len(cfg.stages) != len(cfg.window_spec):
            raise InvalidConfig("stages and window_spec must have the same length")
        self.window_spec = tuple(cfg.window_spec)
        self.stage_ends = [sum(cfg.stages[: i + 1]) - 1 for i in range(len(cfg.stages))]
        q_pool_blocks = [end + 1 for end in self.stage_ends[:-1]][: cfg.q_pool]
        self.patch_embed = PatchEmbed(cfg.embed_dim)
        self.global_att_blocks = tuple(cfg.global_att_blocks)
        self.pos_embed = nn.Parameter(
            torch.zeros(1, cfg.embed_dim, *cfg.window_pos_embed_bkg_spatial_size)
        )
        self.pos_embed_window = nn.Parameter(
            torch.zeros(1, cfg.embed_dim, self.window_spec[0], self.window_spec[0])
        )
        dim, heads, stage = cfg.embed_dim, cfg.num_heads, 0
        self.blocks = nn.ModuleList()
        for i in range(sum(cfg.stages)):
            dim_out = dim
            # a stage's first block still uses the previous stage's window (on its input)
            window = 0 if i in self.global_att_blocks else self.window_spec[stage]
            if i - 1 in self.stage_ends:
                dim_out = int(dim * cfg.dim_mul)
                heads = int(heads * cfg.head_mul)
                stage += 1
            self.blocks.append(
                MultiScaleBlock(
                    dim,
                    dim_out,
                    heads,
                    mlp_ratio=cfg.mlp_ratio,
                    q_stride=tuple(cfg.q_stride) if i in q_pool_blocks else None,
                    window_size=window,
                )
            )
            dim = dim_out
        self.channel_list = [self.blocks[i].dim_out for i in self.stage_ends[::-1]]
        self._pos_cache: tuple[tuple, torch.Tensor] | None = None

    def _pos_embed(self, h: int, w: int) -> torch.Tensor:
        """Background embedding (bicubic-resized) plus the tiled window embedding,
        channels-last ``(1, h, w, C)``.

        It depends only on the parameters and the grid size, so outside autograd it is
        cached and recomputed when either parameter changes (new weights, device, dtype).
        Under ``torch.compile`` it is part of the traced graph instead.
        """
        if not bounded_inference():
            return self._compute_pos_embed(h, w)
        params = (self.pos_embed, self.pos_embed_window)
        key = (h, w) + tuple(
            (p.data_ptr(), -1 if p.is_inference() else p._version, p.device, p.dtype)
            for p in params
        )
        cached = self._pos_cache
        if cached is None or cached[0] != key:
            with torch.inference_mode(False), torch.no_grad():
                cached = (key, self._compute_pos_embed(h, w).contiguous())
            self._pos_cache = cached
        return cached[1]

    def _compute_pos_embed(self, h: int, w: int) -> torch.Tensor:
        pos = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
        win = self.pos_embed_window
        reps = (h // win.shape[-2], w // win.shape[-1])
        pos = pos + win.tile(1, 1, *reps)
        return pos.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        x = x + self._pos_embed(x.shape[1], x.shape[2])
        outputs = []
        ends = set(self.stage_ends)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs


class FpnNeck(nn.Module):
    """1x1 lateral convolutions to ``d_model`` and nearest-neighbour top-down fusion.

    Input: trunk outputs, highest resolution first. Output: ``d_model``-channel maps in
    the same order (all levels; the encoder drops the ``scalp`` coarsest).
    """

    def __init__(self, backbone_channel_list: list[int], cfg: FpnConfig) -> None:
        super().__init__()
        self.d_model = cfg.d_model
        self.backbone_channel_list = list(backbone_channel_list)
        self.convs = nn.ModuleList()
        for dim in backbone_channel_list:
            level = nn.Sequential()
            level.add_module("conv", nn.Conv2d(dim, cfg.d_model, kernel_size=1))
            self.convs.append(level)
        self.top_down_levels = tuple(cfg.top_down_levels)
        self.interp_mode = cfg.interp_mode

    def forward(
        self, xs: list[torch.Tensor], skip: set[int] | frozenset[int] = frozenset()
    ) -> list[torch.Tensor]:
        """FPN levels; a level in ``skip`` (which must not feed a top-down fusion) is
        left as its trunk input, for callers that project it themselves."""
        n = len(self.convs) - 1
        if any(j in self.top_down_levels for i in skip for j in range(i + 1)):
            raise InvalidArgument("only levels finer than every top-down level can be skipped")
        out: list[torch.Tensor] = [xs[0]] * len(xs)
        prev = None
        for i in range(n, -1, -1):  # coarsest first
            if i in skip:
                out[i] = xs[i]
                prev = None
                continue
            lateral = self.convs[n - i](xs[i])
            if i in self.top_down_levels and prev is not None:
                up = F.interpolate(
                    prev.to(torch.float32),
                    scale_factor=2.0,
                    mode=self.interp_mode,
                    align_corners=None if self.interp_mode == "nearest" else False,
                )
                prev = lateral + up
            else:
                prev = lateral
            out[i] = prev
        return out


class Sam2ImageEncoder(nn.Module):
    """Hiera trunk + FPN neck (``image_encoder.trunk`` / ``image_encoder.neck``).

    ``forward`` returns the FPN levels kept after ``scalp``, highest resolution first:
    at a 1024 input ``(B, 256, 256, 256)``, ``(B, 256, 128, 128)``, ``(B, 256, 64, 64)``.
    Positional encodings of the levels come from :meth:`position_encoding` (the video
    model needs them; single images do not).
    """

    def __init__(self, trunk_cfg: HieraConfig, neck_cfg: FpnConfig) -> None:
        super().__init__()
        self.trunk = Hiera(trunk_cfg)
        self.neck = FpnNeck(self.trunk.channel_list, neck_cfg)
        self.scalp = neck_cfg.scalp
        self.pos_enc = PositionEmbeddingSine(neck_cfg.d_model)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        levels = self.neck(self.trunk(x))
        return levels[: len(levels) - self.scalp] if self.scalp > 0 else levels

    def forward_projected(self, x: torch.Tensor, heads: dict[int, nn.Conv2d]) -> list[torch.Tensor]:
        """:meth:`forward`, with level ``i`` replaced by ``heads[i](level_i)``.

        ``heads`` are 1x1 convolutions applied to kept levels (SAM 2's decoder projects
        the two high-resolution levels to ``C/8`` and ``C/4`` channels). A level without
        top-down fusion is its lateral 1x1 convolution alone, so at inference the two
        convolutions are folded into one ``C_trunk -> C_head`` product on channels-last
        tokens: for Hiera-T at 1024 this skips the 256-channel stride-4 map (a 96->256
        then 256->32 convolution over 65,536 pixels becomes one 96->32 product). Same
        values up to float rounding. Other levels, and any level with gradients, take
        the plain path.
        """
        feats = self.trunk(x)
        n = len(self.neck.convs) - 1
        fused = self.neck.top_down_levels
        direct = {
            i: head
            for i, head in heads.items()
            if not torch.is_grad_enabled() and all(j not in fused for j in range(i + 1))
        }
        skip = set(direct)
        levels = self.neck(feats, skip=skip)
        levels = levels[: len(levels) - self.scalp] if self.scalp > 0 else levels
        for i, head in heads.items():
            if i in direct:
                lateral = self.neck.convs[n - i].conv
                levels[i] = _folded_conv1x1(feats[i], head, lateral)
            else:
                levels[i] = head(levels[i].to(head.weight.dtype))
        return levels

    def position_encoding(self, feature: torch.Tensor) -> torch.Tensor:
        """Sine encoding ``(B, d_model, H, W)`` for one output level."""
        return self.pos_enc(feature).to(feature.dtype)
