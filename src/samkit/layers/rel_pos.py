"""Decomposed relative-position attention (MViTv2), as used by the SAM 1 ViT encoder.

The official code materialises the full ``(B*heads, HW, HW)`` attention matrix and adds
``rel_h[q, k_h] + rel_w[q, k_w]`` to it. We compute the same quantity inside
``scaled_dot_product_attention`` without building any ``HW x HW`` tensor ourselves:
the bias is bilinear in one-hot key coordinates, so we append the per-query terms to
the query vector and one-hot row/column indicators to the key vector:

    [q * s, rel_h(q), rel_w(q)] . [k, onehot(k_row), onehot(k_col)]
        = s * q.k + rel_h[q, k_row] + rel_w[q, k_col]

(SDPA is called with ``scale=1``). This keeps peak memory flat for the 64x64 global
blocks and lets SDPA pick its fused kernels. The result equals the official formula up
to float rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def get_rel_pos(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Gather relative embeddings for every (query, key) offset along one axis.

    ``rel_pos`` is ``(L, C)``; it is linearly resized when ``L != 2 * max(q, k) - 1``.
    Returns ``(q_size, k_size, C)``.
    """
    max_rel_dist = int(2 * max(q_size, k_size) - 1)
    if rel_pos.shape[0] != max_rel_dist:
        resized = F.interpolate(
            rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1),
            size=max_rel_dist,
            mode="linear",
        )
        rel_pos = resized.reshape(-1, max_rel_dist).permute(1, 0)
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size, 1.0)
    relative = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return rel_pos[relative.long()]


def rel_pos_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    size: tuple[int, int],
) -> torch.Tensor:
    """Attention with decomposed relative position over an ``H x W`` token grid.

    Args:
        q, k, v: ``(B, heads, H*W, C)``, row-major tokens.
        rel_pos_h, rel_pos_w: ``(2H-1, C)`` and ``(2W-1, C)`` learned tables.
        size: ``(H, W)``.

    Returns:
        ``(B, heads, H*W, C)``.
    """
    h, w = size
    b, nh, n, c = q.shape
    rh = get_rel_pos(h, h, rel_pos_h).to(q.dtype)  # (H, H, C): [q_row, k_row]
    rw = get_rel_pos(w, w, rel_pos_w).to(q.dtype)  # (W, W, C): [q_col, k_col]
    r_q = q.reshape(b, nh, h, w, c)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, rh).reshape(b, nh, n, h)
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, rw).reshape(b, nh, n, w)
    scale = c**-0.5
    q_aug = torch.cat([q * scale, rel_h, rel_w], dim=-1)
    rows = torch.arange(h, device=q.device).repeat_interleave(w)
    cols = torch.arange(w, device=q.device).repeat(h)
    onehot = torch.cat(
        [F.one_hot(rows, h), F.one_hot(cols, w)], dim=-1
    ).to(q.dtype)  # (H*W, H+W)
    k_aug = torch.cat([k, onehot.expand(b, nh, n, h + w)], dim=-1)
    return F.scaled_dot_product_attention(q_aug, k_aug, v, scale=1.0)


def rel_pos_attention_bias(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    rel_pos_h: torch.Tensor,
    rel_pos_w: torch.Tensor,
    size: tuple[int, int],
) -> torch.Tensor:
    """Same as :func:`rel_pos_attention` with an explicit additive bias (reference path)."""
    h, w = size
    b, nh, n, c = q.shape
    rh = get_rel_pos(h, h, rel_pos_h).to(q.dtype)
    rw = get_rel_pos(w, w, rel_pos_w).to(q.dtype)
    r_q = q.reshape(b, nh, h, w, c)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, rh)
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, rw)
    bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, nh, n, n)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
