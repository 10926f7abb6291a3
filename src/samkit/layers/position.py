"""Positional encodings for prompts and image grids."""

from __future__ import annotations

import math

import torch
from torch import nn

from samkit.errors import InvalidConfig


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of 2-D coordinates (Tancik et al.).

    The projection matrix ``positional_encoding_gaussian_matrix`` (2 x num_pos_feats)
    is a buffer stored in official checkpoints, so it must be loaded, not re-drawn.
    Output channels: ``2 * num_pos_feats`` (sin then cos).
    """

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        if scale is None or scale <= 0.0:
            scale = 1.0
        matrix = torch.empty((2, num_pos_feats))
        if matrix.device.type != "meta":  # on meta (fast model building) there is no data
            matrix.normal_(0.0, scale)
        self.register_buffer("positional_encoding_gaussian_matrix", matrix)

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        """Encode ``(..., 2)`` coordinates normalised to [0, 1] as ``(..., C)``."""
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Dense encoding of an ``(h, w)`` grid of pixel centres, shaped ``(C, h, w)``."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        grid = torch.ones((h, w), device=device, dtype=torch.float32)
        y_embed = (grid.cumsum(dim=0) - 0.5) / h
        x_embed = (grid.cumsum(dim=1) - 0.5) / w
        pe = self._pe_encoding(torch.stack([x_embed, y_embed], dim=-1))
        return pe.permute(2, 0, 1)

    def forward_with_coords(
        self, coords_input: torch.Tensor, image_size: tuple[int, int]
    ) -> torch.Tensor:
        """Encode ``(B, N, 2)`` (x, y) pixel coordinates in an ``(H, W)`` frame."""
        coords = coords_input.clone()
        coords[:, :, 0] = coords[:, :, 0] / image_size[1]
        coords[:, :, 1] = coords[:, :, 1] / image_size[0]
        return self._pe_encoding(coords.to(torch.float))


class PositionEmbeddingSine(nn.Module):
    """Normalised 2-D sine/cosine encoding of a feature grid (DETR style), used by SAM 2.

    ``num_pos_feats`` output channels: the first half encodes y, the second half x; in
    each half, even channels are sines and odd channels cosines of
    ``pos * 2pi / temperature^(2*(i//2)/half)``, with positions ``1..H`` normalised by
    ``H + 1e-6`` (and ``1..W`` by ``W + 1e-6``). No parameters; the grid encoding depends
    only on ``(H, W)`` and is cached per size and device.
    """

    def __init__(
        self,
        num_pos_feats: int,
        temperature: float = 10000.0,
        normalize: bool = True,
        scale: float | None = None,
    ) -> None:
        super().__init__()
        if num_pos_feats % 2 != 0:
            raise InvalidConfig("num_pos_feats must be even")
        if scale is not None and not normalize:
            raise InvalidConfig("scale needs normalize=True")
        self.num_pos_feats = num_pos_feats // 2
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale
        self._cache: dict[tuple[int, int, torch.device], torch.Tensor] = {}

    def _grid(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """``(C, H, W)`` float32 encoding."""
        key = (h, w, device)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        with torch.inference_mode(False), torch.no_grad():  # a cache usable in any mode
            pe = self._compute(h, w, device)
        self._cache[key] = pe
        return pe

    def _compute(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        y = torch.arange(1, h + 1, dtype=torch.float32, device=device)
        x = torch.arange(1, w + 1, dtype=torch.float32, device=device)
        if self.normalize:
            eps = 1e-6
            y = y / (y[-1:] + eps) * self.scale
            x = x / (x[-1:] + eps) * self.scale
        n = self.num_pos_feats
        dim_t = torch.arange(n, dtype=torch.float32, device=device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / n)

        def encode(pos: torch.Tensor) -> torch.Tensor:  # (L,) -> (L, n)
            p = pos[:, None] / dim_t
            return torch.stack((p[:, 0::2].sin(), p[:, 1::2].cos()), dim=2).flatten(1)

        pos_y = encode(y)[:, None, :].expand(h, w, n)
        pos_x = encode(x)[None, :, :].expand(h, w, n)
        return torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1).contiguous()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encoding for a ``(B, C, H, W)`` feature map: ``(B, num_pos_feats, H, W)``."""
        pe = self._grid(x.shape[-2], x.shape[-1], x.device)
        return pe.unsqueeze(0).expand(x.shape[0], -1, -1, -1)
