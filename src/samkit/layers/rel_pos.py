"""Decomposed relative-position attention (MViTv2), as used by the SAM 1 ViT encoder.

The official code materialises the whole ``(B*heads, HW, HW)`` attention matrix, adds
``rel_h[q, k_row] + rel_w[q, k_col]`` to it and applies softmax. We pass the same bias to
``scaled_dot_product_attention`` instead, in blocks of query rows, so peak memory stays
bounded (at most ``TRANSIENT_BYTES``, 16 MiB, for the bias, or one grid row of queries)
however many tokens attend, and the fused SDPA kernel does the rest. Measured on this
project's CPU, the 64x64 global blocks of ViT-B run about 2x faster than the official
formula; bounding the bias at 16 MiB rather than 256 MiB made them 1.09 -> 0.66 s on a
2-core AMD EPYC (a bias that large is page-faulted in afresh on every call). For bf16
inference on the CPU the fused kernel is slow (see :mod:`samkit.layers.sdpa`): there each
block's scores come from a matrix product and the two bias terms are added to them in
place, with no separate bias tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from samkit.layers.common import rows_per_chunk
from samkit.layers.sdpa import blockwise_bf16, blockwise_operands


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
        q, k, v: ``(B, heads, H*W, C)``, tokens in row-major order.
        rel_pos_h, rel_pos_w: ``(2H-1, C)`` and ``(2W-1, C)`` learned tables.
        size: ``(H, W)``.

    Returns:
        ``(B, heads, H*W, C)``: ``softmax(q k^T / sqrt(C) + rel_h + rel_w) v``.
    """
    h, w = size
    b, nh, n, c = q.shape
    rh = get_rel_pos(h, h, rel_pos_h).to(q.dtype)  # (H, H, C): [q_row, k_row]
    rw = get_rel_pos(w, w, rel_pos_w).to(q.dtype)  # (W, W, C): [q_col, k_col]
    # Split along query rows of the grid so the (rows*W, H*W) bias stays within budget.
    bytes_per_row = b * nh * w * n * q.element_size()
    # (traced by torch.compile: one block, the compiler plans the memory)
    rows = h if torch.compiler.is_compiling() else min(h, rows_per_chunk(bytes_per_row, 1))
    blockwise = blockwise_bf16(q)
    if blockwise:
        q, kt, v = blockwise_operands(q, k, v)
    r_q = q.reshape(b, nh, h, w, c)
    outs = []
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        qc = r_q[:, :, r0:r1]
        rel_h = torch.einsum("bnhwc,hkc->bnhwk", qc, rh[r0:r1])
        rel_w = torch.einsum("bnhwc,wkc->bnhwk", qc, rw)
        if blockwise:
            # bf16 on the CPU (see samkit.layers.sdpa): scores by matrix product, the two
            # bias terms added in place, no separate bias tensor.
            scores = torch.matmul(qc.reshape(b, nh, -1, c), kt).view(b, nh, r1 - r0, w, h, w)
            scores += rel_h[..., :, None]
            scores += rel_w[..., None, :]
            probs = torch.softmax(scores.view(b, nh, (r1 - r0) * w, n), dim=-1)
            outs.append(torch.matmul(probs, v))
        else:
            bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, nh, (r1 - r0) * w, n)
            outs.append(
                F.scaled_dot_product_attention(qc.reshape(b, nh, -1, c), k, v, attn_mask=bias)
            )
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
