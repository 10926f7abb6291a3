"""Mask decoder shared by SAM 1, MobileSAM and (with flags) SAM 2.

Predicts mask logits at 4x the image-embedding resolution (256x256 for a 64x64 embedding)
and a predicted IoU per mask. Token layout: ``[iou_token, mask_tokens (1 + num_multimask)]``
followed by the prompt tokens. Output mask 0 is the single-mask output, outputs 1..3 are
the multimask (ambiguity-aware) outputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from samkit.layers.common import MLP, ConvTranspose2x2, LayerNorm2d
from samkit.layers.two_way import TwoWayTransformer


class MaskDecoder(nn.Module):
    """Keys: ``transformer.*``, ``iou_token``, ``mask_tokens``, ``output_upscaling.{0,1,3}``,
    ``output_hypernetworks_mlps.{i}.layers.{j}``, ``iou_prediction_head.layers.{j}``."""

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: TwoWayTransformer,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            ConvTranspose2x2(transformer_dim, transformer_dim // 4),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            ConvTranspose2x2(transformer_dim // 4, transformer_dim // 8),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth
        )

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode masks for B prompt sets on one or B images.

        Args:
            image_embeddings: ``(1 or B, C, h, w)``; a single embedding is shared by all
                prompt sets without copying it per prompt in user code.
            image_pe: ``(1, C, h, w)`` dense positional encoding.
            sparse_prompt_embeddings: ``(B, N, C)``.
            dense_prompt_embeddings: ``(B, C, h, w)``.
            multimask_output: return outputs 1..3 instead of output 0.

        Returns:
            mask logits ``(B, K, 4h, 4w)`` and predicted IoU ``(B, K)``, K = 3 or 1.
        """
        masks, iou_pred = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        sl = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, sl], iou_pred[:, sl]

    def forward_selected(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        select: Callable[[torch.Tensor], torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like :meth:`forward`, but mask logits only for the outputs ``select`` keeps.

        The IoU head does not depend on the mask logits, so ``select`` sees the
        predicted IoU ``(B, K)`` first and returns a ``(B, K)`` bool tensor; the
        upscaling (the most expensive part of the decoder) then runs only for prompts
        with at least one kept output. Logits of the kept outputs equal those of
        :meth:`forward`.

        Returns:
            predicted IoU ``(B, K)``, ``keep`` ``(B, K)`` bool, and the kept logits
            ``(n_kept, 4h, 4w)`` in row-major order of ``keep``.
        """
        hs, src, (h, w, c) = self._run_transformer(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        sl = slice(1, None) if multimask_output else slice(0, 1)
        iou_pred = self.iou_prediction_head(hs[:, 0, :])[:, sl]
        keep = select(iou_pred).to(torch.bool)
        prompts = torch.nonzero(keep.any(dim=1)).flatten()
        if len(prompts) == 0:
            return iou_pred, keep, src.new_zeros(0, 4 * h, 4 * w)
        mask_tokens_out = hs[prompts, 1 : 1 + self.num_mask_tokens, :]
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )[:, sl]
        masks = self._upscale_and_project(src[prompts].reshape(-1, h, w, c), hyper_in)
        return iou_pred, keep, masks[keep[prompts]]

    def _upscale_and_project(self, x: torch.Tensor, hyper_in: torch.Tensor) -> torch.Tensor:
        """``output_upscaling`` then the hypernetwork dot product.

        ``x``: channels-last ``(B, h, w, C)`` image tokens; ``hyper_in``: ``(B, K, C/8)``.
        Returns mask logits ``(B, K, 4h, 4w)``.

        Same modules and results as running the ``nn.Sequential`` on NCHW. Everything
        after each 2x2 transposed convolution is per pixel (LayerNorm over channels,
        GELU, the next 2x2 convolution, the dot product), so the pixels stay in blocked
        order and only the K-channel logits are shuffled into place at the end.
        """
        dc1, ln1, act1, dc2, act2 = self.output_upscaling
        b, h, w, _ = x.shape
        y = act1(ln1.forward_channels_last(dc1.forward_blocked(x)))  # (B,h,w,2,2,C/4)
        y = act2(dc2.forward_blocked(y))  # (B, h, w, 2, 2, 2, 2, C/8)
        k = hyper_in.shape[1]
        logits = y.reshape(b, -1, y.shape[-1]) @ hyper_in.transpose(1, 2)  # (B, h*w*16, K)
        # (B, h, w, dy1, dx1, dy2, dx2, K) -> (B, K, h, dy1, dy2, w, dx1, dx2)
        logits = logits.reshape(b, h, w, 2, 2, 2, 2, k).permute(0, 7, 1, 3, 5, 2, 4, 6)
        return logits.reshape(b, k, 4 * h, 4 * w)

    def _run_transformer(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int]]:
        """Output + prompt tokens through the two-way transformer.

        Returns tokens ``(B, 1 + num_mask_tokens + N, C)``, image tokens ``(B, h*w, C)``
        and ``(h, w, C)``.
        """
        b = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(b, -1, -1)
        tokens = torch.cat([output_tokens, sparse_prompt_embeddings], dim=1)
        if image_embeddings.shape[0] == 1 and (b == 1 or dense_prompt_embeddings.stride(0) == 0):
            # One image and the same dense prompt for every prompt set (no mask input):
            # the transformer shares the image tokens until they become prompt-specific.
            src = image_embeddings + dense_prompt_embeddings[:1]
        else:
            if image_embeddings.shape[0] != b:
                image_embeddings = image_embeddings.expand(b, -1, -1, -1)
            src = image_embeddings + dense_prompt_embeddings
        _, c, h, w = src.shape
        hs, src = self.transformer(src, image_pe[:1], tokens)
        return hs, src, (h, w, c)

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All ``num_mask_tokens`` outputs: logits ``(B, 4, 4h, 4w)``, IoU ``(B, 4)``."""
        b = sparse_prompt_embeddings.shape[0]
        hs, src, (h, w, c) = self._run_transformer(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings
        )
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : 1 + self.num_mask_tokens, :]

        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )  # (B, num_mask_tokens, C/8)
        masks = self._upscale_and_project(src.reshape(b, h, w, c), hyper_in)
        iou_pred = self.iou_prediction_head(iou_token_out)
        return masks, iou_pred
