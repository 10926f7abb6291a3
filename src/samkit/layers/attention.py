"""Multi-head attention with separate q/k/v projections (the SAM decoder's attention).

One implementation serves SAM 1's two-way transformer and SAM 2's decoder and memory
attention (``kv_in_dim`` lets keys/values come from a narrower memory).

In the mask decoder one side of every cross-attention is tiny (a handful of prompt tokens)
and the other is the 64x64 image. Projecting all 4096 image tokens through 256x128 matrices
is most of the decoder's work, and most of it can be skipped by re-associating the
products onto the small side (exact algebra, only float rounding changes):

* few queries, many keys (token -> image): ``q_h . (W_k,h k + b_k,h)`` equals
  ``(W_k,h^T q_h) . k`` plus a per-query constant that softmax ignores, and
  ``sum_j p_j (W_v,h v_j + b_v,h) = W_v,h (sum_j p_j v_j) + b_v,h`` because each row of
  ``p`` sums to one. Keys and values are never projected.
* many queries, few keys (image -> token): ``(W_q,h q + b_q,h) . K_h`` is ``q`` times a
  ``C x T`` matrix plus a per-key constant, and the output projection folds into the
  values: ``W_o [p_h V_h] = p_h (V_h W_o,h^T)``. Queries are never projected.

The plain path (SDPA on projected heads) is used whenever it is cheaper.

:class:`RoPEAttention` (SAM 2's memory attention) rotates the projected queries and keys
with a 2-D axial rotary encoding first, so neither shortcut applies to them; but its
values (64-channel memories) are narrower than its 256-channel head, so at inference the
values are weighted before they are projected (see :meth:`RoPEAttention._narrow_values`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from samkit.errors import InvalidArgument, InvalidConfig
from samkit.layers.common import bounded_inference
from samkit.layers.rope import AxialRope, apply_rope_qk, axial_rope
from samkit.layers.sdpa import blockwise_bf16, scaled_dot_product_attention, score_block_rows


class Attention(nn.Module):
    """Attention whose internal width is ``embedding_dim // downsample_rate``.

    Keys: ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` (official names).
    Inputs ``(B, N_q, C)``, ``(B, N_k, C_kv)``, ``(B, N_k, C_kv)``; output ``(B, N_q, C)``.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        downsample_rate: int = 1,
        dropout: float = 0.0,
        kv_in_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.kv_in_dim = kv_in_dim if kv_in_dim is not None else embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads != 0:
            raise InvalidConfig("num_heads must divide embedding_dim // downsample_rate")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.v_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)
        self.dropout_p = dropout

    def _separate_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attention output ``(B, N_q, C)``, plus ``residual`` (``(B or 1, N_q, C)``) when
        given: the two-way blocks add the attention to the tokens it updates, and on the
        image -> token path that sum is fused into the last matrix product (one pass over
        the 4096 image tokens fewer)."""
        nq, nk = q.shape[1], k.shape[1]
        small = self.num_heads
        if not (self.training and self.dropout_p > 0):
            # Re-associate when the small side times the heads is narrower than the
            # projection it avoids (and the other side is large enough to matter).
            if nq * small < self.internal_dim and nk >= 256:
                out = self._few_queries(q, k, v)
                return out if residual is None else residual + out
            if nk * small < self.internal_dim and nq >= 256:
                return self._few_keys(q, k, v, residual)
        out = self._plain(q, k, v)
        return out if residual is None else residual + out

    def _plain(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b = max(q.shape[0], k.shape[0], v.shape[0])  # a batch of 1 broadcasts
        q, k, v = (t.expand(b, -1, -1) if t.shape[0] != b else t for t in (q, k, v))
        q = self._separate_heads(self.q_proj(q))
        k = self._separate_heads(self.k_proj(k))
        v = self._separate_heads(self.v_proj(v))
        dropout_p = self.dropout_p if self.training else 0.0
        out = scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))

    def _few_queries(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Token -> image: project the few queries into key space instead of the keys.

        ``k``/``v`` may have batch 1 for a batch of queries (one image, many prompts): the
        scores and the weighted values are then one matrix product each.
        """
        b, nq, _ = q.shape
        h, d = self.num_heads, self.internal_dim // self.num_heads
        qh = self._separate_heads(self.q_proj(q))  # (B, H, Nq, d)
        wk = self.k_proj.weight.reshape(h, d, self.kv_in_dim)  # (H, d, C_kv)
        q_in_k = (qh @ wk) * d**-0.5  # (B, H, Nq, C_kv); the b_k term is constant per query
        if k.shape[0] == 1 and v.shape[0] == 1 and b > 1:
            flat = q_in_k.reshape(b * h * nq, self.kv_in_dim)
            mixed = (flat @ k[0].T).softmax(dim=-1) @ v[0]  # (B*H*Nq, C_kv)
        else:
            scores = q_in_k.reshape(b, h * nq, self.kv_in_dim) @ k.transpose(1, 2)
            mixed = scores.softmax(dim=-1) @ v  # (B, H*Nq, C_kv): weighted raw values
        wv = self.v_proj.weight.reshape(h, d, self.kv_in_dim)
        out = mixed.reshape(b, h, nq, self.kv_in_dim) @ wv.transpose(1, 2)
        out = out + self.v_proj.bias.reshape(h, 1, d)  # (B, H, Nq, d)
        return self.out_proj(out.transpose(1, 2).reshape(b, nq, h * d))

    def _few_keys(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Image -> token: fold the query and output projections into the few keys/values.

        The output bias is folded in too: each head's probabilities sum to one, so adding
        ``b_o / H`` to every projected value adds ``b_o`` to every output row.
        """
        b, nq, c = k.shape[0], q.shape[1], q.shape[2]  # q may have batch 1 (broadcast)
        h, d = self.num_heads, self.internal_dim // self.num_heads
        nk = k.shape[1]
        kh = self._separate_heads(self.k_proj(k))  # (B, H, Nk, d)
        vh = self._separate_heads(self.v_proj(v))  # (B, H, Nk, d)
        wq = self.q_proj.weight.reshape(h, d, c)  # (H, d, C)
        scale = d**-0.5
        m = (kh @ wq) * scale  # (B, H, Nk, C): score of query x is x . m + const
        const = (kh @ self.q_proj.bias.reshape(h, d, 1)).squeeze(-1) * scale  # (B, H, Nk)
        # Scores key-major, (B, H*Nk, Nq): the softmax then runs over a non-last axis of
        # a few keys, which the CPU kernel vectorises over the many queries (several
        # times faster than a softmax over a last axis of a handful of elements).
        if q.shape[0] == 1 and b > 1:  # one image for all prompts: one GEMM for all
            scores = (m.reshape(b * h * nk, c) @ q[0].T).reshape(b, h * nk, nq)
            scores = scores + const.reshape(b, h * nk, 1)
        else:
            scores = torch.baddbmm(
                const.reshape(b, h * nk, 1), m.reshape(b, h * nk, c), q.transpose(1, 2)
            )
        probs = scores.reshape(b, h, nk, nq).softmax(dim=2).reshape(b, h * nk, nq)
        return self._folded_output(probs, vh, residual)

    def _folded_output(
        self, probs: torch.Tensor, vh: torch.Tensor, residual: torch.Tensor | None
    ) -> torch.Tensor:
        """Output of the many queries from key-major probabilities over a few keys, with
        the output projection (and its bias) folded into the values.

        ``probs`` ``(B, H*Nk, Nq)`` (each head's column sums to one), ``vh`` ``(B, H, Nk,
        d)`` projected values, ``residual`` ``(1 or B, Nq, C)`` or ``None``. Returns
        ``(B, Nq, C)``.
        """
        b, h, nk, d = vh.shape
        c = self.out_proj.out_features
        wo = self.out_proj.weight.reshape(c, h, d).permute(1, 2, 0)  # (H, d, C)
        u = (vh @ wo).reshape(b, h * nk, c)  # values already through the output projection
        u = u + self.out_proj.bias / h
        if residual is None:
            return torch.bmm(probs.transpose(1, 2), u)
        return torch.baddbmm(residual, probs.transpose(1, 2), u)

    # ------------------------------------------------------------ cached image side
    # In the mask decoder's first two-way block the image tokens do not depend on the
    # prompt (no mask prompt): their projections can be computed once per image and
    # reused by every prompt (see ``samkit.layers.two_way.FirstBlockKeys``).

    def project_heads(self, x: torch.Tensor, proj: nn.Linear) -> torch.Tensor:
        """``proj(x)`` with its heads split: ``(B, N, C_in)`` -> ``(B, H, N, d)``."""
        return self._separate_heads(proj(x))

    def attend_projected(self, q: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor) -> torch.Tensor:
        """Attention of ``q`` ``(B, N_q, C)`` to keys and values already projected and
        split into heads, ``(1, H, N_k, d)`` each and shared by the B query sets.

        Same arithmetic as the plain path (queries projected, scores, softmax over the
        keys, weighted projected values, output projection). Returns ``(B, N_q, C)``.
        """
        b, nq, _ = q.shape
        h, d = self.num_heads, self.internal_dim // self.num_heads
        qh = self._separate_heads(self.q_proj(q)) * d**-0.5  # (B, H, Nq, d)
        # (H, B*Nq, d): one product per head for all query sets, keys never copied
        rows = qh.transpose(0, 1).reshape(h, b * nq, d)
        probs = (rows @ kh[0].transpose(1, 2)).softmax(dim=-1)  # (H, B*Nq, Nk)
        out = (probs @ vh[0]).reshape(h, b, nq, d).permute(1, 2, 0, 3).reshape(b, nq, h * d)
        return self.out_proj(out)

    def attend_from_projected(
        self,
        qt: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        residual: torch.Tensor,
    ) -> torch.Tensor:
        """``residual`` plus the attention of many image queries, already projected (with
        their bias), scaled by ``d**-0.5``, split into heads and transposed,
        ``qt`` ``(1, H, d, N_q)``, to a few tokens ``k``/``v`` ``(B, N_k, C)``.

        Scores are key-major (softmax over a non-last axis of a few keys, as in
        :meth:`_few_keys`); with few keys the output projection is folded into the
        values. ``residual`` ``(1 or B, N_q, C)``; returns ``(B, N_q, C)``.
        """
        b, nk, c = k.shape
        h, d = self.num_heads, self.internal_dim // self.num_heads
        nq = qt.shape[-1]
        kh = self._separate_heads(self.k_proj(k))  # (B, H, Nk, d)
        vh = self._separate_heads(self.v_proj(v))  # (B, H, Nk, d)
        rows = kh.transpose(0, 1).reshape(h, b * nk, d)
        scores = torch.bmm(rows, qt[0])  # (H, B*Nk, Nq)
        probs = scores.reshape(h, b, nk, nq).softmax(dim=2).transpose(0, 1)  # (B, H, Nk, Nq)
        if nk * h < self.internal_dim:
            return self._folded_output(probs.reshape(b, h * nk, nq), vh, residual)
        out = (probs.transpose(2, 3) @ vh).transpose(1, 2).reshape(b, nq, h * d)
        return residual + self.out_proj(out)


class RoPEAttention(Attention):
    """:class:`Attention` with 2-D axial rotary position encoding on queries and keys.

    Same parameters (and checkpoint keys) as :class:`Attention`; the rotation has no
    weights. The queries must be the tokens of a grid in row-major order: a
    ``feat_sizes = (width, height)`` grid when there are ``width * height`` of them,
    otherwise a square grid of side ``sqrt(N_q)``. The rotation tables are computed on
    first use for each grid size and device and cached outside the module (never in its
    state dict).

    Args:
        embedding_dim: query (and output) width ``C``.
        num_heads: attention heads.
        downsample_rate: internal width is ``embedding_dim // downsample_rate``.
        dropout: attention-probability dropout, applied only in training.
        kv_in_dim: key/value input width ``C_kv`` (default ``embedding_dim``).
        rope_theta: RoPE frequency base.
        rope_k_repeat: keys may be several stacked copies of the query grid (memory
            frames); each copy is rotated like the queries. Needed for cross-attention
            to memories; without it the rotated keys must number exactly ``N_q``.
        feat_sizes: ``(width, height)`` of the expected token grid.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        downsample_rate: int = 1,
        dropout: float = 0.0,
        kv_in_dim: int | None = None,
        rope_theta: float = 10000.0,
        rope_k_repeat: bool = False,
        feat_sizes: tuple[int, int] = (64, 64),
    ) -> None:
        super().__init__(embedding_dim, num_heads, downsample_rate, dropout, kv_in_dim)
        self.head_dim = self.internal_dim // num_heads
        if self.head_dim % 4 != 0:
            raise InvalidConfig("RoPE needs a per-head width divisible by 4")
        self.rope_theta = float(rope_theta)
        self.rope_k_repeat = rope_k_repeat
        self.feat_sizes = (int(feat_sizes[0]), int(feat_sizes[1]))

    def grid_size(self, num_tokens: int) -> tuple[int, int]:
        """``(width, height)`` of the query grid holding ``num_tokens`` tokens."""
        if num_tokens == self.feat_sizes[0] * self.feat_sizes[1]:
            return self.feat_sizes
        side = math.isqrt(num_tokens)
        if side * side != num_tokens:
            raise InvalidArgument(
                f"{num_tokens} query tokens are neither the {self.feat_sizes} grid nor square"
            )
        return side, side

    def rope_tables(self, num_tokens: int, device: torch.device) -> AxialRope:
        """The cached rotation tables of the ``num_tokens``-token query grid."""
        end_x, end_y = self.grid_size(num_tokens)
        return axial_rope(self.head_dim, end_x, end_y, self.rope_theta, device)

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_k_exclude_rope: int = 0
    ) -> torch.Tensor:
        """Batch-first attention with rotated queries/keys.

        Args:
            q: ``(B, N_q, C)`` grid tokens.
            k: ``(B, N_k, C_kv)``: ``N_k - num_k_exclude_rope`` grid tokens (one or, with
                ``rope_k_repeat``, several stacked grids like the queries') followed by
                ``num_k_exclude_rope`` tokens that are not rotated (object pointers).
            v: ``(B, N_k, C_kv)``.
            num_k_exclude_rope: trailing keys without rotary encoding.

        Returns:
            ``(B, N_q, C)``.
        """
        q = self._separate_heads(self.q_proj(q))  # (B, H, N_q, d)
        k = self._separate_heads(self.k_proj(k))  # (B, H, N_k, d)
        rope = self.rope_tables(q.shape[-2], q.device)
        q, k = apply_rope_qk(
            q, k, rope, repeat_k=self.rope_k_repeat, num_k_exclude=num_k_exclude_rope
        )
        if (
            self.kv_in_dim < self.head_dim
            and bounded_inference()
            and not (self.training and self.dropout_p > 0)
            and (q.dtype in (torch.float32, torch.float64) or blockwise_bf16(q))
        ):
            return self._narrow_values(q, k, v)
        v = self._separate_heads(self.v_proj(v))
        dropout_p = self.dropout_p if self.training else 0.0
        out = scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))

    def _narrow_values(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention over raw narrow values, then one folded projection (inference).

        ``softmax(q k^T) (v W_v^T + b_v) W_o^T + b_o`` equals
        ``[softmax(q k^T) v] (W_o W_v)^T + (W_o b_v + b_o)`` because each row of the
        probabilities sums to one. With memories of width ``C_kv = 64`` and heads of width
        ``d = 256`` (SAM 2's memory cross-attention) the probability-weighted sum runs over
        64 channels instead of 256: about a third less arithmetic in the layer's largest
        product. The scores are computed in blocks of queries, each block's softmax taken
        before the next (block sizes from :func:`samkit.layers.sdpa.score_block_rows`: at
        most 16 MiB of scores; at 32 MiB each block's scores and probabilities were fresh
        pages from the OS, page-faulted in on every block). Used in
        float32/float64 and, like :func:`samkit.layers.sdpa.scaled_dot_product_attention`,
        for bf16 inference on the CPU (bf16 products and softmax; the folded projection
        is computed in float32 and applied in bf16).

        Args:
            q: ``(B, H, N_q, d)`` projected, rotated queries.
            k: ``(B, H, N_k, d)`` projected, rotated keys.
            v: ``(B, N_k, C_kv)`` raw (unprojected) values.

        Returns:
            ``(B, N_q, C)``.
        """
        b, h, nq, d = q.shape
        nk, ckv = v.shape[1], v.shape[2]
        q = q * d**-0.5  # scale the (fewer) queries rather than the keys
        vb = v.unsqueeze(1)  # (B, 1, Nk, C_kv): shared by the heads
        # One batch item (object) at a time, so that a block keeps its many query rows
        # however many objects there are (each block streams that item's keys once).
        kv_bytes = nk * (d + ckv) * q.element_size()
        rows = score_block_rows(nk, h, kv_bytes, q.element_size())
        mixed = q.new_empty(b, h, nq, ckv)
        for i in range(b):
            # (H, d, Nk), contiguous: a transposed view would be copied by every block's
            # product (bf16 17 ms against 7.5 ms for a 146 x 256 x 28,736 block, fp32
            # 22 / 17); one item at a time keeps the copy's pages warm
            kt = k[i].transpose(-1, -2).contiguous()
            for start in range(0, nq, rows):
                scores = torch.matmul(q[i, :, start : start + rows], kt)
                mixed[i, :, start : start + rows] = torch.matmul(scores.softmax(dim=-1), vb[i])
        # the folded weights are computed in (at least) float32, then used in q's dtype
        c, dt = self.out_proj.out_features, torch.promote_types(q.dtype, torch.float32)
        wv = self.v_proj.weight.to(dt).reshape(h, d, ckv)
        wo = self.out_proj.weight.to(dt).reshape(c, h, d).permute(1, 0, 2)  # (H, C, d)
        folded = torch.bmm(wo, wv).permute(1, 0, 2).reshape(c, h * ckv)  # (C, H*C_kv)
        bias = self.out_proj.weight.to(dt) @ self.v_proj.bias.to(dt) + self.out_proj.bias.to(dt)
        mixed = mixed.transpose(1, 2).reshape(b, nq, h * ckv)
        return F.linear(mixed, folded.to(q.dtype), bias.to(q.dtype))
