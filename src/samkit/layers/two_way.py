"""Two-way transformer: prompt tokens and image tokens attend to each other.

Shared by the SAM 1 and SAM 2 mask decoders. Attribute names follow the official
checkpoints (``layers.{i}.self_attn``, ``cross_attn_token_to_image``, ``mlp.lin1`` ...).
"""

from __future__ import annotations

import torch
from torch import nn

from samkit.layers.attention import Attention
from samkit.layers.common import MLP, MLPBlock


class TwoWayAttentionBlock(nn.Module):
    """Self-attention on tokens, token->image, MLP on tokens, image->token.

    ``skip_first_layer_pe`` drops the positional encoding from the first self-attention
    (used by the first block only). ``sam2_mlp`` names the MLP's layers as SAM 2's
    checkpoints do (``mlp.layers.{0,1}`` instead of ``mlp.lin1``/``mlp.lin2``); the
    computation is the same.
    """

    def __init__(
        self,
        *,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
        sam2_mlp: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm2 = nn.LayerNorm(embedding_dim)
        if sam2_mlp:
            self.mlp: nn.Module = MLP(
                embedding_dim, mlp_dim, embedding_dim, 2, activation=activation
            )
        else:
            self.mlp = MLPBlock(embedding_dim, mlp_dim, activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``queries`` (B, N_tok, C) and ``keys`` (B or 1, HW, C) with matching
        encodings (``key_pe`` (1, HW, C) broadcasts). Keys with batch 1 are shared by all
        B prompt sets until this block writes per-prompt keys; returns keys (B, HW, C)."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        q = queries + query_pe
        k = keys + key_pe  # keys only change at the end of the block: add the encoding once
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))

        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        keys = self.norm4(self.cross_attn_image_to_token(k, q, queries, residual=keys))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """``depth`` two-way blocks then a final token->image attention.

    Inputs: ``image_embedding`` and ``image_pe`` (B, C, H, W), ``point_embedding``
    (B, N_tok, C). Returns (tokens (B, N_tok, C), image tokens (B, HW, C)).
    """

    def __init__(
        self,
        *,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        sam2_mlp: bool = False,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                activation=activation,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
                sam2_mlp=sam2_mlp,
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self,
        image_embedding: torch.Tensor,
        image_pe: torch.Tensor,
        point_embedding: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``image_embedding`` (B or 1, C, H, W), ``image_pe`` (1 or B, C, H, W),
        ``point_embedding`` (B, N_tok, C). An image embedding with batch 1 is shared by
        all B prompt sets (one image, many prompts) without being copied per prompt."""
        # Token-major copies once: every later op reads them row by row.
        if image_pe.shape[0] > 1 and image_pe.stride(0) == 0:
            image_pe = image_pe[:1]  # an expanded encoding: one copy is enough
        image_embedding = image_embedding.flatten(2).transpose(1, 2).contiguous()
        image_pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        queries = point_embedding
        keys = image_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, image_pe)
        q = queries + point_embedding
        k = keys + image_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        if keys.shape[0] != queries.shape[0]:  # depth 0 with a shared image
            keys = keys.expand(queries.shape[0], -1, -1)
        return queries, keys
