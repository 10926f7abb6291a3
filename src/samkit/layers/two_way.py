"""Two-way transformer: prompt tokens and image tokens attend to each other.

Shared by the SAM 1 and SAM 2 mask decoders. Attribute names follow the official
checkpoints (``layers.{i}.self_attn``, ``cross_attn_token_to_image``, ``mlp.lin1`` ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from samkit.errors import InvalidConfig
from samkit.layers.attention import Attention
from samkit.layers.common import MLP, MLPBlock


@dataclass(frozen=True)
class FirstBlockKeys:
    """The prompt-independent image side of a two-way transformer's first block.

    Without a mask prompt the image tokens entering the first block are the same for
    every prompt on an image, and so are their projections in the block's two
    cross-attentions. Computed once per image (:meth:`TwoWayTransformer.prepare`), they
    save each prompt three 4096 x 256 x 128 products (about 5 ms of a SAM decode on two
    CPU cores) and give the same values as computing them per prompt.

    Attributes:
        keys: ``(1, HW, C)`` image tokens (embedding + dense prompt), token-major.
        key_pe: ``(1, HW, C)`` their positional encoding.
        t2i_k: ``(1, H, HW, d)`` token -> image keys, ``k_proj(keys + key_pe)``.
        t2i_v: ``(1, H, HW, d)`` token -> image values, ``v_proj(keys)``.
        i2t_qt: ``(1, H, d, HW)`` image -> token queries, ``q_proj(keys + key_pe)`` scaled
            by ``d**-0.5``, transposed.
    """

    keys: torch.Tensor
    key_pe: torch.Tensor
    t2i_k: torch.Tensor
    t2i_v: torch.Tensor
    i2t_qt: torch.Tensor


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
        return self.forward_prepared(queries, keys, query_pe, key_pe, None)

    def forward_prepared(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
        prepared: FirstBlockKeys | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward`, with the image side's projections taken from ``prepared``
        (computed by :meth:`TwoWayTransformer.prepare` for these ``keys``) when given."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        q = queries + query_pe
        if prepared is not None:
            attn = self.cross_attn_token_to_image.attend_projected(
                q, prepared.t2i_k, prepared.t2i_v
            )
            queries = self.norm2(queries + attn)
            queries = self.norm3(queries + self.mlp(queries))
            q = queries + query_pe
            i2t = self.cross_attn_image_to_token
            return queries, self.norm4(i2t.attend_from_projected(prepared.i2t_qt, q, queries, keys))
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

    @staticmethod
    def _token_major(x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> contiguous ``(B, HW, C)`` (a view for channels-last input)."""
        return x.flatten(2).transpose(1, 2).contiguous()

    @torch.no_grad()
    def prepare(self, image_embedding: torch.Tensor, image_pe: torch.Tensor) -> FirstBlockKeys:
        """The first block's prompt-independent image side for one image.

        ``image_embedding`` ``(1, C, H, W)`` (embedding plus the dense prompt every prompt
        set will use), ``image_pe`` ``(1, C, H, W)``. Pass the result to :meth:`forward`
        with the same two tensors; only for inference (no gradients flow into it).
        """
        if not self.layers:
            raise InvalidConfig("a transformer without blocks has nothing to prepare")
        keys = self._token_major(image_embedding)
        key_pe = self._token_major(image_pe[:1])
        block = self.layers[0]
        t2i, i2t = block.cross_attn_token_to_image, block.cross_attn_image_to_token
        k = keys + key_pe
        d = i2t.internal_dim // i2t.num_heads
        i2t_q = i2t.project_heads(k, i2t.q_proj) * d**-0.5
        return FirstBlockKeys(
            keys=keys,
            key_pe=key_pe,
            t2i_k=t2i.project_heads(k, t2i.k_proj).contiguous(),
            t2i_v=t2i.project_heads(keys, t2i.v_proj).contiguous(),
            i2t_qt=i2t_q.transpose(-1, -2).contiguous(),
        )

    def forward(
        self,
        image_embedding: torch.Tensor,
        image_pe: torch.Tensor,
        point_embedding: torch.Tensor,
        prepared: FirstBlockKeys | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``image_embedding`` (B or 1, C, H, W), ``image_pe`` (1 or B, C, H, W),
        ``point_embedding`` (B, N_tok, C). An image embedding with batch 1 is shared by
        all B prompt sets (one image, many prompts) without being copied per prompt.
        ``prepared``: :meth:`prepare` of this ``image_embedding`` and ``image_pe``
        (inference); the first block then starts from its cached projections."""
        if prepared is not None:
            image_embedding, image_pe = prepared.keys, prepared.key_pe
        else:
            # Token-major copies once: every later op reads them row by row.
            if image_pe.shape[0] > 1 and image_pe.stride(0) == 0:
                image_pe = image_pe[:1]  # an expanded encoding: one copy is enough
            image_embedding = self._token_major(image_embedding)
            image_pe = self._token_major(image_pe)
        queries = point_embedding
        keys = image_embedding
        for i, layer in enumerate(self.layers):
            first = prepared if i == 0 else None
            queries, keys = layer.forward_prepared(queries, keys, point_embedding, image_pe, first)
        q = queries + point_embedding
        k = keys + image_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        if keys.shape[0] != queries.shape[0]:  # depth 0 with a shared image
            keys = keys.expand(queries.shape[0], -1, -1)
        return queries, keys
