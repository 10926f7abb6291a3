"""The transformer stage of :class:`~samkit.modeling.mask_decoder.MaskDecoder`.

:class:`DecoderTransformerMixin`, a base class of ``MaskDecoder`` (methods only: it adds
no modules, parameters or checkpoint keys; ``MaskDecoder.__init__`` makes the
attributes it reads), holds the methods moved out of :mod:`samkit.modeling.mask_decoder`
that run the output and prompt tokens through the two-way transformer
(:meth:`~DecoderTransformerMixin._run_transformer`, with the token layout
``[obj_score_token (SAM 2), iou_token, mask_tokens]`` and :attr:`_first_output`), and
the prompt-independent work on one image that this pass can reuse across decodes
(:meth:`~DecoderTransformerMixin.prepare`, :meth:`~DecoderTransformerMixin.prepared_for`,
giving and checking a :class:`~samkit.modeling.decoder_utils.PreparedImage`). The
heads, upscaling, chunking and output selection stay in
:mod:`samkit.modeling.mask_decoder`.
"""

from __future__ import annotations

import torch
from torch import nn

from samkit.errors import InvalidArgument
from samkit.layers.common import bounded_inference
from samkit.layers.two_way import FirstBlockKeys, TwoWayTransformer
from samkit.modeling.decoder_utils import PreparedImage, _version_key


class DecoderTransformerMixin:
    """The two-way transformer pass of the mask decoder, and its prepared first block.

    Mixed into :class:`~samkit.modeling.mask_decoder.MaskDecoder`, which sets the
    attributes below in its constructor.
    """

    transformer: TwoWayTransformer
    iou_token: nn.Embedding
    mask_tokens: nn.Embedding
    obj_score_token: nn.Embedding  # with pred_obj_scores only
    pred_obj_scores: bool

    @property
    def _first_output(self) -> int:
        """Index of the IoU token in the output tokens (1 when an object-score token
        comes first)."""
        return 1 if self.pred_obj_scores else 0

    def _prepared_key(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> tuple[tuple[int, int], ...]:
        block = self.transformer.layers[0]
        tensors = [image_embeddings, image_pe, dense_prompt_embeddings]
        for attn in (block.cross_attn_token_to_image, block.cross_attn_image_to_token):
            tensors += [attn.q_proj.weight, attn.q_proj.bias, attn.k_proj.weight]
            tensors += [attn.k_proj.bias, attn.v_proj.weight, attn.v_proj.bias]
        return tuple(_version_key(t) for t in tensors)

    def prepare(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> PreparedImage | None:
        """The prompt-independent part of decoding on one image (inference only).

        Args:
            image_embeddings: ``(1, C, h, w)`` embedding.
            image_pe: ``(1, C, h, w)`` dense positional encoding.
            dense_prompt_embeddings: ``(1, C, h, w)`` dense prompt of the prompts to come
                (the no-mask embedding, usually an expanded view).

        Returns ``None`` when there is nothing to share (no transformer blocks,
        gradients on, or traced by ``torch.compile``).
        """
        if not bounded_inference() or self.transformer.depth == 0:
            return None
        if image_embeddings.shape[0] != 1 or dense_prompt_embeddings.shape[0] != 1:
            raise InvalidArgument("prepare takes one image embedding and one dense prompt")
        src = image_embeddings + dense_prompt_embeddings
        return PreparedImage(
            features=image_embeddings,
            key=self._prepared_key(image_embeddings, image_pe, dense_prompt_embeddings),
            first_block=self.transformer.prepare(src, image_pe),
        )

    def prepared_for(
        self,
        prepared: PreparedImage | None,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
    ) -> FirstBlockKeys | None:
        """``prepared.first_block`` if it was made for these inputs (the same embedding
        tensor, one dense prompt for all prompt sets, unchanged weights), else ``None``
        (always, with gradients or under ``torch.compile``)."""
        if prepared is None or not bounded_inference():
            return None
        if prepared.features is not image_embeddings:
            return None
        if dense_prompt_embeddings.shape[0] > 1 and dense_prompt_embeddings.stride(0) != 0:
            return None  # a dense prompt per prompt set (mask prompts)
        key = self._prepared_key(image_embeddings, image_pe, dense_prompt_embeddings)
        if prepared.key != key:
            return None
        return prepared.first_block

    def _run_transformer(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        prepared: PreparedImage | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int]]:
        """Output + prompt tokens through the two-way transformer.

        Returns tokens ``(B, [1 +] 1 + num_mask_tokens + N, C)``, image tokens
        ``(B, h*w, C)`` and ``(h, w, C)``.
        """
        b = sparse_prompt_embeddings.shape[0]
        parts = [self.iou_token.weight, self.mask_tokens.weight]
        if self.pred_obj_scores:
            parts.insert(0, self.obj_score_token.weight)
        output_tokens = torch.cat(parts, dim=0).unsqueeze(0).expand(b, -1, -1)
        tokens = torch.cat([output_tokens, sparse_prompt_embeddings], dim=1)
        first = self.prepared_for(prepared, image_embeddings, image_pe, dense_prompt_embeddings)
        if first is not None:
            _, c, h, w = image_embeddings.shape
            hs, src = self.transformer(image_embeddings, image_pe[:1], tokens, prepared=first)
            return hs, src, (h, w, c)
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


__all__ = ["DecoderTransformerMixin"]
