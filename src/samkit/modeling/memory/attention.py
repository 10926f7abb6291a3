"""SAM 2 memory attention: condition the current frame's features on past memories.

A stack of pre-norm transformer layers over the current frame's image tokens: RoPE
self-attention, RoPE cross-attention to the memory tokens (encoded past frames, then
object-pointer tokens that get no rotary encoding) and a ReLU MLP, then a final
LayerNorm. Attribute names equal the official checkpoint keys under
``memory_attention.``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from samkit.configs.base import MemoryConfig
from samkit.errors import InvalidArgument, InvalidConfig
from samkit.layers.attention import RoPEAttention
from samkit.layers.common import residual_rowwise

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "glu": F.glu,
}


def _norm(norm: nn.LayerNorm, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``norm(x)`` computed in ``x``'s dtype, returned in ``dtype``: with bf16 weights the
    residual stream stays float32 (as under ``torch.autocast``) and only the branches run
    in bf16."""
    weight, bias = norm.weight.to(x.dtype), norm.bias.to(x.dtype)
    return F.layer_norm(x, norm.normalized_shape, weight, bias, norm.eps).to(dtype)


class MemoryAttentionLayer(nn.Module):
    """One memory-attention layer (batch-first tensors).

    ``x += self_attn(norm1(x))``; ``x += cross_attn_image(norm2(x), memory)``;
    ``x += linear2(act(linear1(norm3(x))))``. Dropout modules (``dropout`` inside the
    MLP, ``dropout1..3`` on the residual branches) act only in training.

    Args:
        d_model: token width ``C``.
        mem_dim: memory width ``C_mem`` (keys/values of the cross-attention).
        num_heads: heads of both attentions.
        dim_feedforward: MLP hidden width.
        dropout: dropout of the attentions and the residual/MLP dropouts.
        activation: ``"relu"``, ``"gelu"`` or ``"glu"``.
        pos_enc_at_attn: add the query position encoding to the self-attention q/k.
        pos_enc_at_cross_attn_queries: add it to the cross-attention queries.
        pos_enc_at_cross_attn_keys: add the memory position encoding to the keys.
        rope_theta: RoPE frequency base.
        feat_sizes: ``(width, height)`` of the current frame's token grid.
    """

    def __init__(
        self,
        d_model: int = 256,
        mem_dim: int = 64,
        num_heads: int = 1,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        pos_enc_at_attn: bool = False,
        pos_enc_at_cross_attn_queries: bool = False,
        pos_enc_at_cross_attn_keys: bool = True,
        rope_theta: float = 10000.0,
        feat_sizes: tuple[int, int] = (64, 64),
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise InvalidConfig(f"activation should be one of {sorted(_ACTIVATIONS)}")
        self.d_model = d_model
        self.dim_feedforward = dim_feedforward
        self.dropout_value = dropout
        self.self_attn = RoPEAttention(
            d_model, num_heads, dropout=dropout, rope_theta=rope_theta, feat_sizes=feat_sizes
        )
        self.cross_attn_image = RoPEAttention(
            d_model,
            num_heads,
            dropout=dropout,
            kv_in_dim=mem_dim,
            rope_theta=rope_theta,
            rope_k_repeat=True,
            feat_sizes=feat_sizes,
        )
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation_str = activation
        self.activation = _ACTIVATIONS[activation]
        self.pos_enc_at_attn = pos_enc_at_attn
        self.pos_enc_at_cross_attn_queries = pos_enc_at_cross_attn_queries
        self.pos_enc_at_cross_attn_keys = pos_enc_at_cross_attn_keys

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        pos: torch.Tensor | None = None,
        query_pos: torch.Tensor | None = None,
        num_k_exclude_rope: int = 0,
    ) -> torch.Tensor:
        """Update the current-frame tokens.

        Args:
            tgt: ``(B, N, C)`` current-frame tokens (row-major grid).
            memory: ``(B, M, C_mem)`` memory tokens: whole memory-frame grids, then
                ``num_k_exclude_rope`` object-pointer tokens.
            pos: ``(B, M, C_mem)`` memory position encoding (needed when
                ``pos_enc_at_cross_attn_keys``).
            query_pos: ``(B, N, C)`` current-frame position encoding (needed when
                ``pos_enc_at_attn`` or ``pos_enc_at_cross_attn_queries``).
            num_k_exclude_rope: trailing memory tokens without rotary encoding.

        Returns:
            ``(B, N, C)`` in ``tgt``'s dtype (the residual stream); the attention and
            MLP branches compute in the dtype of the layer's weights.
        """
        dtype = self.linear1.weight.dtype  # the branches' (tgt may stay float32)
        memory = memory.to(dtype)
        pos = pos.to(dtype) if pos is not None else None
        query_pos = query_pos.to(dtype) if query_pos is not None else None
        x = _norm(self.norm1, tgt, dtype)
        q = x + query_pos if self.pos_enc_at_attn else x
        tgt = tgt + self.dropout1(self.self_attn(q, q, x))

        x = _norm(self.norm2, tgt, dtype)
        q = x + query_pos if self.pos_enc_at_cross_attn_queries else x
        k = memory + pos if self.pos_enc_at_cross_attn_keys else memory
        x = self.cross_attn_image(q, k, memory, num_k_exclude_rope=num_k_exclude_rope)
        tgt = tgt + self.dropout2(x)

        def mlp(t: torch.Tensor) -> torch.Tensor:
            x = self.linear1(_norm(self.norm3, t, dtype))
            return self.dropout3(self.linear2(self.dropout(self.activation(x))))

        # at inference in chunks of tokens (the 4096 x 2048 hidden layer is 32 MiB)
        return residual_rowwise(tgt, mlp, self.dim_feedforward)


class MemoryAttention(nn.Module):
    """``num_layers`` :class:`MemoryAttentionLayer` s (``layers.{i}``) and a final
    LayerNorm (``norm``).

    Inputs and output are sequence-first ``(L, B, C)`` as in the official SAM 2 model;
    with ``batch_first`` (the default) they are transposed to ``(B, L, C)`` for the
    layers and back.

    Args:
        d_model: token width ``C``.
        num_layers: layers.
        pos_enc_at_input: add ``0.1 * curr_pos`` to the input tokens.
        batch_first: whether the layers take batch-first tensors.
        mem_dim, num_heads, dim_feedforward, dropout, activation, pos_enc_at_attn,
        pos_enc_at_cross_attn_queries, pos_enc_at_cross_attn_keys, rope_theta,
        feat_sizes: passed to every :class:`MemoryAttentionLayer`.
    """

    def __init__(
        self,
        d_model: int = 256,
        num_layers: int = 4,
        pos_enc_at_input: bool = True,
        batch_first: bool = True,
        mem_dim: int = 64,
        num_heads: int = 1,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        pos_enc_at_attn: bool = False,
        pos_enc_at_cross_attn_queries: bool = False,
        pos_enc_at_cross_attn_keys: bool = True,
        rope_theta: float = 10000.0,
        feat_sizes: tuple[int, int] = (64, 64),
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.num_layers = num_layers
        self.pos_enc_at_input = pos_enc_at_input
        self.batch_first = batch_first
        self.layers = nn.ModuleList(
            MemoryAttentionLayer(
                d_model=d_model,
                mem_dim=mem_dim,
                num_heads=num_heads,
                dim_feedforward=dim_feedforward,
                dropout=dropout,
                activation=activation,
                pos_enc_at_attn=pos_enc_at_attn,
                pos_enc_at_cross_attn_queries=pos_enc_at_cross_attn_queries,
                pos_enc_at_cross_attn_keys=pos_enc_at_cross_attn_keys,
                rope_theta=rope_theta,
                feat_sizes=feat_sizes,
            )
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    @classmethod
    def from_config(cls, cfg: MemoryConfig) -> MemoryAttention:
        """The memory attention of the official SAM 2 / 2.1 configs."""
        return cls(
            d_model=cfg.d_model,
            num_layers=cfg.num_layers,
            pos_enc_at_input=True,
            batch_first=True,
            mem_dim=cfg.mem_dim,
            num_heads=cfg.num_heads,
            dim_feedforward=cfg.dim_feedforward,
            dropout=cfg.dropout,
            activation="relu",
            pos_enc_at_attn=False,
            pos_enc_at_cross_attn_queries=False,
            pos_enc_at_cross_attn_keys=True,
            rope_theta=cfg.rope_theta,
            feat_sizes=cfg.feat_sizes,
        )

    def forward(
        self,
        curr: torch.Tensor | list[torch.Tensor],
        memory: torch.Tensor,
        curr_pos: torch.Tensor | list[torch.Tensor] | None = None,
        memory_pos: torch.Tensor | None = None,
        num_obj_ptr_tokens: int = 0,
    ) -> torch.Tensor:
        """Attend from the current frame to the memory bank.

        Args:
            curr: ``(N, B, C)`` current-frame tokens, sequence-first, row-major over the
                ``feat_sizes`` grid (or a square one); a one-element list is accepted.
            memory: ``(M, B, C_mem)`` memory tokens, sequence-first: the memory frames'
                grids (each ``N`` tokens) stacked, then ``num_obj_ptr_tokens`` object
                pointer tokens.
            curr_pos: ``(N, B, C)`` position encoding of ``curr`` (or a one-element list).
            memory_pos: ``(M, B, C_mem)`` position encoding of ``memory``.
            num_obj_ptr_tokens: number of trailing pointer tokens in ``memory`` (the
                pointers split into ``C / C_mem`` tokens each), which get no RoPE.

        Returns:
            ``(N, B, C)``, sequence-first, in ``curr``'s dtype (computed in the dtype of
            the module's weights).
        """
        if isinstance(curr, list):
            if len(curr) != 1 or not isinstance(curr_pos, list) or len(curr_pos) != 1:
                raise InvalidArgument("curr and curr_pos lists must both have one element")
            curr, curr_pos = curr[0], curr_pos[0]
        if curr.shape[1] != memory.shape[1]:
            raise InvalidArgument("curr and memory must have the same batch size (dim 1)")
        output = curr
        if self.pos_enc_at_input and curr_pos is not None:
            output = output + 0.1 * curr_pos
        # With weights in reduced precision (``load_model(dtype=torch.bfloat16)``) each
        # layer casts its inputs for its branches; the residual stream stays in curr's dtype.
        if self.batch_first:
            output = output.transpose(0, 1)
            curr_pos = curr_pos.transpose(0, 1) if curr_pos is not None else None
            memory = memory.transpose(0, 1)
            memory_pos = memory_pos.transpose(0, 1) if memory_pos is not None else None

        for layer in self.layers:
            output = layer(
                output,
                memory,
                pos=memory_pos,
                query_pos=curr_pos,
                num_k_exclude_rope=num_obj_ptr_tokens,
            )
        output = _norm(self.norm, output, output.dtype)
        return output.transpose(0, 1) if self.batch_first else output


def build_memory_attention(cfg: MemoryConfig) -> MemoryAttention:
    """The memory attention of the official SAM 2 / 2.1 configs (see ``MemoryConfig``)."""
    return MemoryAttention.from_config(cfg)
