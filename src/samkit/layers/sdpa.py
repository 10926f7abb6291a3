"""Scaled dot-product attention: torch's fused kernel, or plain matrix products for bf16
inference on the CPU.

On the CPU, torch's fused attention kernel (``_scaled_dot_product_flash_attention_for_cpu``)
is no faster in bfloat16 than in float32: measured on a 2-core AMD EPYC with native
``avx512_bf16`` (torch 2.13), the ViT-B 64x64 global attention took 0.52 s with its
relative-position bias in bf16 against 0.55 s in fp32, while bf16 matrix products ran at
twice the fp32 rate. Two matrix products and a softmax on bounded blocks of queries, all in
bf16, took 0.27 s for the same block, and they were 1.6-2.4x faster than the fused kernel
for Hiera's shapes (8x8, 4x4 and 14x14 windows, 4,096-token global attention); about as
fast for the ViT's 14x14 windows with their relative-position bias. This is the
arithmetic of the official code under ``torch.autocast`` (scores rounded to bf16 before
the softmax), so its error against float32 is about twice the fused kernel's, which
accumulates scores in float32. Whole encoders stay as close to their fp32 outputs as the
official ones under autocast, and masks match the fp32 masks at IoU 0.988-0.997 on random
weights (``tests/test_bf16_attention.py``, ``benchmarks/bench_image.py``).

Float32, float64, gradients, dropout and other devices keep the fused kernel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from samkit.layers import common

#: Lower bound of the scores held by one block of queries on the blockwise path.
SMALL_SCORE_BYTES = 4 * 2**20


def score_block_rows(n_k: int, lead: int, kv_bytes: int, element_size: int) -> int:
    """Query rows per block when attention is computed on blocks of queries.

    Each block's scores (``lead`` heads/items x rows x ``n_k`` keys, ``element_size``
    bytes each) are written by one product, read and rewritten by the softmax and read
    by the second product, and each block streams all of one item's keys and values
    (``kv_bytes``). So the scores get at least as many bytes as those keys and values
    (streaming them then costs less than the block's own work), at least
    ``SMALL_SCORE_BYTES`` and at most ``layers.common.TRANSIENT_BYTES``.

    Measured in bf16 on a 2-core Zen 4 (L2 1 MiB a core, L3 32 MiB): SAM 2.1 tiny's
    memory attention for three objects (4,096 queries, seven memories) took 4.78 s
    against 4.99 s with 16 MiB blocks for its self-attention (256 channels, 4 MiB of
    keys and values a head); its cross-attention (28,700 keys of 256 channels and
    64-channel values, 18 MiB a head) was 1.2x faster with 16 MiB blocks than with 8 MiB
    ones; Hiera's global attention and MobileSAM's windows were the same either way
    (within noise). ViT-B's relative-position attention (:mod:`samkit.layers.rel_pos`)
    keeps 16 MiB blocks: with 4 MiB its encoder was 2.5% slower.
    """
    budget = min(common.TRANSIENT_BYTES, max(SMALL_SCORE_BYTES, kv_bytes))
    return max(1, budget // max(1, lead * n_k * element_size))


def blockwise_bf16(q: torch.Tensor) -> bool:
    """Whether attention on ``q`` takes the blockwise bf16 path (bf16 CPU inference,
    eager: a compiled graph gets torch's fused attention, whose memory the compiler
    plans)."""
    return q.dtype == torch.bfloat16 and q.device.type == "cpu" and common.bounded_inference()


def blockwise_operands(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(q, k^T / sqrt(C), v)`` for the blockwise path, each contiguous once: a permuted
    or transposed view (heads split out of a fused qkv, ``k^T``) would be copied by every
    block's bf16 product."""
    kt = (k * k.shape[-1] ** -0.5).transpose(-1, -2).contiguous()
    return q.contiguous(), kt, v.contiguous()


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """``softmax(q k^T / sqrt(C) + attn_mask) v``, as :func:`F.scaled_dot_product_attention`.

    Args:
        q: ``(..., L, C)`` queries; k: ``(..., S, C)`` keys; v: ``(..., S, Cv)`` values
            (leading dimensions broadcast as in torch).
        attn_mask: optional additive float bias, or a bool mask (True: attend),
            broadcastable to ``(..., L, S)``.
        dropout_p: attention dropout (training only; forces the fused kernel).

    Returns:
        ``(..., L, Cv)``.
    """
    if dropout_p > 0 or not blockwise_bf16(q):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
    n_q, n_k = q.shape[-2], k.shape[-2]
    lead = math.prod(torch.broadcast_shapes(q.shape[:-2], k.shape[:-2]))
    kv_bytes = n_k * (q.shape[-1] + v.shape[-1]) * q.element_size()
    rows = min(n_q, score_block_rows(n_k, lead, kv_bytes, q.element_size()))
    q, kt, v = blockwise_operands(q, k, v)
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        blocked = torch.zeros(attn_mask.shape, dtype=q.dtype, device=q.device)
        attn_mask = blocked.masked_fill_(~attn_mask, float("-inf"))
    elif attn_mask is not None:
        attn_mask = attn_mask.to(q.dtype)
    outs = []
    for r0 in range(0, n_q, rows):
        scores = torch.matmul(q[..., r0 : r0 + rows, :], kt)
        if attn_mask is not None:
            per_query = attn_mask.dim() >= 2 and attn_mask.shape[-2] != 1
            mask = attn_mask[..., r0 : r0 + rows, :] if per_query else attn_mask
            if torch.broadcast_shapes(scores.shape, mask.shape) == scores.shape:
                scores += mask
            else:
                scores = scores + mask
        outs.append(torch.matmul(torch.softmax(scores, dim=-1), v))
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-2)
