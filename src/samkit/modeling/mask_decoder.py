"""Mask decoder shared by SAM 1, MobileSAM and (with flags) SAM 2.

Predicts mask logits at 4x the image-embedding resolution (256x256 for a 64x64 embedding)
and a predicted IoU per mask. Token layout: ``[obj_score_token (SAM 2), iou_token,
mask_tokens (1 + num_multimask)]`` followed by the prompt tokens. Output mask 0 is the
single-mask output, outputs 1..3 are the multimask (ambiguity-aware) outputs.

SAM 2 flags: ``use_high_res_features`` adds the stride-8 / stride-4 backbone features
(already projected by ``conv_s1`` / ``conv_s0``) inside the upscaling,
``pred_obj_scores`` adds the object-score token and head (``pred_obj_score_head``, an MLP
with ``pred_obj_scores_mlp``), ``iou_prediction_use_sigmoid`` squashes the IoU head, and
``dynamic_multimask_via_stability`` replaces an unstable single-mask output by the best
multimask output (eval only).

This module holds the decoder's modules, its heads (hypernetwork MLPs, upscaling, IoU and
object-score heads), the chunking of prompt sets and the output selection (multimask,
dynamic single mask, :meth:`MaskDecoder.forward_selected`). The transformer stage (the
token layout, the pass through the two-way transformer, and the prompt-independent
:meth:`MaskDecoder.prepare` / :meth:`MaskDecoder.prepared_for`) is inherited from
:class:`~samkit.modeling.decoder_transformer.DecoderTransformerMixin`; the small
dataclasses and tensor helpers are in :mod:`samkit.modeling.decoder_utils`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from samkit.layers.common import MLP, ConvTranspose2x2, LayerNorm2d, bounded_inference
from samkit.layers.two_way import TwoWayTransformer
from samkit.modeling.decoder_transformer import DecoderTransformerMixin

# PreparedImage and DecoderOutput live in decoder_utils; also importable from here
# (``from samkit.modeling.mask_decoder import PreparedImage`` keeps working).
from samkit.modeling.decoder_utils import (
    DecoderOutput,
    PreparedImage,
    _blocked_high_res,
    _rows,
    _rows_pair,
)

# At inference, prompt sets are decoded in chunks of at most this many image tokens x
# prompt sets (two prompt sets for a 64x64 embedding, eight for 32x32). Each prompt set
# carries its own copies of the image tokens and of the upscaled features (about 4 + 8
# MiB at 64x64), so a 64-prompt batch streams hundreds of MiB through memory per layer;
# chunks of this size stay in the last-level cache. Measured on a 2-core Xeon (decoder
# with upscaling, all outputs kept): SAM's decoder (64x64) 49 ms per prompt in one
# 64-prompt pass, 37 ms in chunks of 2; the demo model (32x32) 13.1 vs 10.0 ms. Prompt
# sets are independent, so the outputs are those of one pass (up to float rounding).
CHUNK_TOKENS = 8192

# At inference the upscaling runs on bands of rows with at most this many low-res pixels
# x prompt sets, so its intermediates (4 x C/4 and 16 x C/8 channels per pixel, about
# 1.5 MiB for 1024 pixels at C = 256) stay in cache between the per-pixel steps.
UPSCALE_PIXELS = 1024


def _chunks(b: int, tokens: int) -> list[slice]:
    """Slices of ``range(b)`` with at most ``max(1, CHUNK_TOKENS // tokens)`` each."""
    size = max(1, CHUNK_TOKENS // max(tokens, 1))
    return [slice(i, min(i + size, b)) for i in range(0, b, size)]


class MaskDecoder(DecoderTransformerMixin, nn.Module):
    """Keys: ``transformer.*``, ``iou_token``, ``mask_tokens``, ``output_upscaling.{0,1,3}``,
    ``output_hypernetworks_mlps.{i}.layers.{j}``, ``iou_prediction_head.layers.{j}``; SAM 2
    adds ``conv_s0``, ``conv_s1``, ``obj_score_token``, ``pred_obj_score_head``."""

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: TwoWayTransformer,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        use_high_res_features: bool = False,
        iou_prediction_use_sigmoid: bool = False,
        pred_obj_scores: bool = False,
        pred_obj_scores_mlp: bool = False,
        use_multimask_token_for_obj_ptr: bool = False,
        dynamic_multimask_via_stability: bool = False,
        dynamic_multimask_stability_delta: float = 0.05,
        dynamic_multimask_stability_thresh: float = 0.98,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.pred_obj_scores = pred_obj_scores
        if pred_obj_scores:
            self.obj_score_token = nn.Embedding(1, transformer_dim)
        self.use_multimask_token_for_obj_ptr = use_multimask_token_for_obj_ptr
        self.use_high_res_features = use_high_res_features
        if use_high_res_features:
            self.conv_s0 = nn.Conv2d(transformer_dim, transformer_dim // 8, kernel_size=1)
            self.conv_s1 = nn.Conv2d(transformer_dim, transformer_dim // 4, kernel_size=1)
        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.dynamic_multimask_stability_delta = dynamic_multimask_stability_delta
        self.dynamic_multimask_stability_thresh = dynamic_multimask_stability_thresh
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
            transformer_dim,
            iou_head_hidden_dim,
            self.num_mask_tokens,
            iou_head_depth,
            sigmoid_output=iou_prediction_use_sigmoid,
        )
        if pred_obj_scores:
            self.pred_obj_score_head: nn.Module = (
                MLP(transformer_dim, transformer_dim, 1, 3)
                if pred_obj_scores_mlp
                else nn.Linear(transformer_dim, 1)
            )

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        high_res_features: tuple[torch.Tensor, torch.Tensor] | None = None,
        prepared: PreparedImage | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode masks for B prompt sets on one or B images.

        Args:
            image_embeddings: ``(1 or B, C, h, w)``; a single embedding is shared by all
                prompt sets without copying it per prompt in user code.
            image_pe: ``(1, C, h, w)`` dense positional encoding.
            sparse_prompt_embeddings: ``(B, N, C)``.
            dense_prompt_embeddings: ``(B, C, h, w)``.
            multimask_output: return outputs 1..3 instead of output 0.
            high_res_features: SAM 2 only: ``(feat_s0 (1 or B, C/8, 4h, 4w),
                feat_s1 (1 or B, C/4, 2h, 2w))`` after ``conv_s0`` / ``conv_s1``.
            prepared: :meth:`prepare` of this embedding (used when it applies).

        Returns:
            mask logits ``(B, K, 4h, 4w)`` and predicted IoU ``(B, K)``, K = 3 or 1.
        """
        out = self.forward_full(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            multimask_output,
            high_res_features,
            prepared,
        )
        return out.masks, out.iou

    def forward_full(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        high_res_features: tuple[torch.Tensor, torch.Tensor] | None = None,
        prepared: PreparedImage | None = None,
    ) -> DecoderOutput:
        """:meth:`forward` plus the output tokens and object-score logits."""
        masks, iou_pred, mask_tokens_out, object_score_logits = self.predict_masks_full(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            high_res_features,
            prepared,
        )
        if multimask_output:
            masks, iou_pred = masks[:, 1:], iou_pred[:, 1:]
        elif self.dynamic_multimask_via_stability and not self.training:
            masks, iou_pred = self._dynamic_multimask(masks, iou_pred)
        else:
            masks, iou_pred = masks[:, 0:1], iou_pred[:, 0:1]
        if multimask_output and self.use_multimask_token_for_obj_ptr:
            tokens = mask_tokens_out[:, 1:]
        else:
            tokens = mask_tokens_out[:, 0:1]
        return DecoderOutput(masks, iou_pred, tokens, object_score_logits)

    def stability_scores(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """IoU of the masks thresholded at +delta and -delta: ``(..., H, W)`` -> ``(...)``
        (1 where both are empty)."""
        flat = mask_logits.flatten(-2)
        delta = self.dynamic_multimask_stability_delta
        inter = (flat > delta).sum(dim=-1).float()
        union = (flat > -delta).sum(dim=-1).float()
        return torch.where(union > 0, inter / union, 1.0)

    def _dynamic_multimask(
        self, masks: torch.Tensor, iou: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All four outputs -> one: output 0 if stable, else the multimask output with
        the highest predicted IoU. ``(B, 4, H, W)``, ``(B, 4)`` -> ``(B, 1, H, W)``, ``(B, 1)``."""
        best = iou[:, 1:].argmax(dim=-1) + 1
        rows = torch.arange(masks.shape[0], device=masks.device)
        stable = self.stability_scores(masks[:, 0]) >= self.dynamic_multimask_stability_thresh
        pick = torch.where(stable, torch.zeros_like(best), best)
        return masks[rows, pick].unsqueeze(1), iou[rows, pick].unsqueeze(1)

    def forward_selected(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        select: Callable[[torch.Tensor], torch.Tensor],
        high_res_features: tuple[torch.Tensor, torch.Tensor] | None = None,
        prepared: PreparedImage | None = None,
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
        b = sparse_prompt_embeddings.shape[0]
        parts = self._split(b, image_embeddings)
        if len(parts) > 1:
            outs = [
                self.forward_selected(
                    _rows(image_embeddings, sl),
                    image_pe,
                    sparse_prompt_embeddings[sl],
                    _rows(dense_prompt_embeddings, sl),
                    multimask_output,
                    select,
                    _rows_pair(high_res_features, sl),
                    prepared,
                )
                for sl in parts
            ]
            return tuple(torch.cat(x, dim=0) for x in zip(*outs, strict=True))  # type: ignore[return-value]
        if not multimask_output and self.dynamic_multimask_via_stability and not self.training:
            # the single output depends on the logits: decode everything, then select
            masks, iou_pred = self.forward(
                image_embeddings,
                image_pe,
                sparse_prompt_embeddings,
                dense_prompt_embeddings,
                multimask_output,
                high_res_features,
                prepared,
            )
            keep = select(iou_pred).to(torch.bool)
            return iou_pred, keep, masks[keep]
        hs, src, (h, w, c) = self._run_transformer(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            prepared,
        )
        first = self._first_output
        sl = slice(1, None) if multimask_output else slice(0, 1)
        iou_pred = self.iou_prediction_head(hs[:, first, :])[:, sl]
        keep = select(iou_pred).to(torch.bool)
        prompts = torch.nonzero(keep.any(dim=1)).flatten()
        if len(prompts) == 0:
            return iou_pred, keep, src.new_zeros(0, 4 * h, 4 * w)
        mask_tokens_out = hs[prompts, first + 1 : first + 1 + self.num_mask_tokens, :]
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )[:, sl]
        if high_res_features is not None and high_res_features[0].shape[0] > 1:
            high_res_features = (high_res_features[0][prompts], high_res_features[1][prompts])
        masks = self._upscale_and_project(
            src[prompts].reshape(-1, h, w, c), hyper_in, high_res_features
        )
        return iou_pred, keep, masks[keep[prompts]]

    def _split(self, b: int, image_embeddings: torch.Tensor) -> list[slice]:
        """Chunks of the B prompt sets for one decoder pass each: cache-sized at
        inference (see ``CHUNK_TOKENS``), everything at once when gradients are needed."""
        if not bounded_inference() or b <= 1:
            return [slice(0, b)]
        h, w = image_embeddings.shape[-2:]
        return _chunks(b, h * w)

    def _upscale_and_project(
        self,
        x: torch.Tensor,
        hyper_in: torch.Tensor,
        high_res_features: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``output_upscaling`` (with SAM 2's high-res skips) then the hypernetwork product.

        ``x``: channels-last ``(B, h, w, C)`` image tokens; ``hyper_in``: ``(B, K, C/8)``;
        ``high_res_features``: ``(feat_s0 (1 or B, C/8, 4h, 4w), feat_s1 (1 or B, C/4,
        2h, 2w))``, added after the first / second transposed convolution. Returns mask
        logits ``(B, K, 4h, 4w)``.

        Same modules and results as running the ``nn.Sequential`` on NCHW. Everything
        after each 2x2 transposed convolution is per pixel (LayerNorm over channels,
        GELU, the next 2x2 convolution, the dot product), so the pixels stay in blocked
        order and only the K-channel logits are shuffled into place at the end; at
        inference this runs on bands of rows (``UPSCALE_PIXELS``) that stay in cache.
        """
        b, h, w, _ = x.shape
        skips = None if high_res_features is None else _blocked_high_res(*high_res_features, h, w)
        rows = max(1, UPSCALE_PIXELS // (b * w)) if bounded_inference() else h
        parts = []
        for r in range(0, h, rows):
            sl = slice(r, min(r + rows, h))
            part = None if skips is None else (skips[0][:, sl], skips[1][:, sl])
            parts.append(self._upscale_rows(x[:, sl], hyper_in, part))
        logits = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # (B, h*w*16, K)
        k = hyper_in.shape[1]
        # (B, h, w, dy1, dx1, dy2, dx2, K) -> (B, K, h, dy1, dy2, w, dx1, dx2)
        logits = logits.reshape(b, h, w, 2, 2, 2, 2, k).permute(0, 7, 1, 3, 5, 2, 4, 6)
        return logits.reshape(b, k, 4 * h, 4 * w)

    def _upscale_rows(
        self,
        x: torch.Tensor,
        hyper_in: torch.Tensor,
        skips: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> torch.Tensor:
        """:meth:`_upscale_and_project` on a band of rows, before the un-shuffle.

        ``x`` ``(B, r, w, C)``; ``skips`` the blocked ``(s0, s1)`` rows of
        :func:`_blocked_high_res`. Returns logits ``(B, r*w*16, K)`` in blocked order.
        """
        dc1, ln1, act1, dc2, act2 = self.output_upscaling
        b = x.shape[0]
        y = dc1.forward_blocked(x)  # (B, r, w, 2, 2, C/4)
        if skips is not None:
            y = y + skips[1]
        y = act1(ln1.forward_channels_last(y))
        y = dc2.forward_blocked(y)  # (B, r, w, 2, 2, 2, 2, C/8)
        if skips is not None:
            y = y + skips[0]
        y = act2(y)
        return y.reshape(b, -1, y.shape[-1]) @ hyper_in.transpose(1, 2)

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        high_res_features: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All ``num_mask_tokens`` outputs: logits ``(B, 4, 4h, 4w)``, IoU ``(B, 4)``."""
        masks, iou_pred, _, _ = self.predict_masks_full(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            high_res_features,
        )
        return masks, iou_pred

    def predict_masks_full(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        high_res_features: tuple[torch.Tensor, torch.Tensor] | None = None,
        prepared: PreparedImage | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """All outputs: logits ``(B, 4, 4h, 4w)``, IoU ``(B, 4)``, mask tokens
        ``(B, 4, C)`` and object-score logits ``(B, 1)``."""
        b = sparse_prompt_embeddings.shape[0]
        parts = self._split(b, image_embeddings)
        if len(parts) > 1:
            outs = [
                self.predict_masks_full(
                    _rows(image_embeddings, sl),
                    image_pe,
                    sparse_prompt_embeddings[sl],
                    _rows(dense_prompt_embeddings, sl),
                    _rows_pair(high_res_features, sl),
                    prepared,
                )
                for sl in parts
            ]
            return tuple(torch.cat(x, dim=0) for x in zip(*outs, strict=True))  # type: ignore[return-value]
        hs, src, (h, w, c) = self._run_transformer(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            prepared,
        )
        first = self._first_output
        iou_token_out = hs[:, first, :]
        mask_tokens_out = hs[:, first + 1 : first + 1 + self.num_mask_tokens, :]

        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            dim=1,
        )  # (B, num_mask_tokens, C/8)
        masks = self._upscale_and_project(src.reshape(b, h, w, c), hyper_in, high_res_features)
        iou_pred = self.iou_prediction_head(iou_token_out)
        if self.pred_obj_scores:
            object_score_logits = self.pred_obj_score_head(hs[:, 0, :])
        else:
            object_score_logits = iou_pred.new_full((b, 1), 10.0)
        return masks, iou_pred, mask_tokens_out, object_score_logits
