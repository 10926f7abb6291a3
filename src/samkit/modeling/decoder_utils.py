"""Non-module pieces of :class:`~samkit.modeling.mask_decoder.MaskDecoder`'s inference.

The small dataclasses it takes and returns (:class:`PreparedImage`, the prompt-independent
work on one image; :class:`DecoderOutput`, everything predicted for B prompt sets) and the
tensor helpers of chunked / prepared decoding: per-chunk row slicing (:func:`_rows`,
:func:`_rows_pair`), the version keys that tell whether a :class:`PreparedImage` still
applies (:func:`_version_key`) and the blocked reordering of SAM 2's skip features
(:func:`_blocked_high_res`). The chunk sizes themselves (``CHUNK_TOKENS``,
``UPSCALE_PIXELS``) stay in :mod:`samkit.modeling.mask_decoder`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from samkit.layers.two_way import FirstBlockKeys

__all__ = ["DecoderOutput", "PreparedImage"]


def _rows(t: torch.Tensor | None, sl: slice) -> torch.Tensor | None:
    """``t[sl]`` for a per-prompt-set tensor; a batch-1 (shared) tensor as it is."""
    if t is None or t.shape[0] == 1:
        return t
    return t[sl]


def _version_key(t: torch.Tensor) -> tuple[int, int]:
    """Storage address and in-place version of ``t`` (-1 for inference tensors)."""
    return t.data_ptr(), -1 if t.is_inference() else t._version


@dataclass(frozen=True)
class PreparedImage:
    """Prompt-independent decoder work for one image embedding (no mask prompt).

    Made by :meth:`MaskDecoder.prepare` (or a model's ``prepare_decoding``) and passed
    back with every decode of prompts without a mask prompt on the same embedding; the
    predictor keeps one per image. The decoder uses it only for the exact embedding
    tensor it was made from (``features``, compared by identity) and while that tensor,
    the weights, positional encoding and dense prompt it depends on are unchanged
    (``key``: storage and in-place version counters; inference tensors changed in place
    inside ``torch.inference_mode`` have no counter and are not noticed); otherwise it
    decodes as if it had not been given. Results equal those without it to float
    rounding.
    """

    features: torch.Tensor
    key: tuple[tuple[int, int], ...]
    first_block: FirstBlockKeys


@dataclass(frozen=True)
class DecoderOutput:
    """Everything the decoder predicts for B prompt sets (K = 3 or 1 outputs).

    ``masks`` low-res logits ``(B, K, 4h, 4w)``; ``iou`` ``(B, K)``; ``sam_tokens``
    ``(B, K', C)`` output tokens for SAM 2's object pointer (K' = 3 with multimask
    output and ``use_multimask_token_for_obj_ptr``, else 1); ``object_score_logits``
    ``(B, 1)`` (> 0: the object is present; a constant 10 without an object-score head).
    """

    masks: torch.Tensor
    iou: torch.Tensor
    sam_tokens: torch.Tensor
    object_score_logits: torch.Tensor


def _rows_pair(
    pair: tuple[torch.Tensor, torch.Tensor] | None, sl: slice
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """:func:`_rows` on both of SAM 2's high-resolution feature maps."""
    if pair is None:
        return None
    return (_rows(pair[0], sl), _rows(pair[1], sl))  # type: ignore[return-value]


def _blocked_high_res(
    feat_s0: torch.Tensor, feat_s1: torch.Tensor, h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reorder SAM 2's skip features into the upscaling's blocked pixel order.

    ``feat_s1`` ``(B, C1, 2h, 2w)`` -> ``(B, h, w, 2, 2, C1)`` (pixel ``(2i+dy, 2j+dx)``);
    ``feat_s0`` ``(B, C0, 4h, 4w)`` -> ``(B, h, w, 2, 2, 2, 2, C0)`` (pixel
    ``(4i+2*dy1+dy2, 4j+2*dx1+dx2)`` at index ``[i, j, dy1, dx1, dy2, dx2]``).
    """
    b1, c1 = feat_s1.shape[:2]
    s1 = feat_s1.reshape(b1, c1, h, 2, w, 2).permute(0, 2, 4, 3, 5, 1)
    b0, c0 = feat_s0.shape[:2]
    s0 = feat_s0.reshape(b0, c0, h, 2, 2, w, 2, 2).permute(0, 2, 5, 3, 6, 4, 7, 1)
    return s0, s1
