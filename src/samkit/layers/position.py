"""Positional encodings for prompts and image grids."""

from __future__ import annotations

import math

import torch
from torch import nn


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
