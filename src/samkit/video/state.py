"""Typed state of SAM 2 tracking: prompts, options, frame features, memories, outputs.

The per-frame computation (:mod:`samkit.video.tracker`) takes and returns these objects;
the video session (:mod:`samkit.video.session`) keeps them per object. Every tensor of a
:class:`Memory` or :class:`TrackOutput` has one row per object of the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import torch

from samkit.errors import InvalidArgument, InvalidConfig
from samkit.modeling.sam2 import Sam2

#: Mask logit given to an object predicted absent (and to objects with no output).
NO_OBJ_SCORE = -1024.0


class Points(NamedTuple):
    """Point prompts of a batch of objects, in the model's input frame (pixels of the
    ``S x S`` resized frame).

    ``coords`` ``(B, P, 2)`` float ``(x, y)``; ``labels`` ``(B, P)`` int: 1 positive,
    0 negative, 2 / 3 box top-left / bottom-right corner (a box is two points placed
    first), -1 padding. A plain tuple, so it can be passed where samkit takes
    ``(coords, labels)``.
    """

    coords: torch.Tensor
    labels: torch.Tensor


@dataclass(frozen=True)
class TrackerOptions:
    """Tracking flags. The defaults are what every official SAM 2 / 2.1 config sets
    together with ``build_sam2_video_predictor`` (post-processing on).

    Attributes:
        binarize_mask_from_pts_for_mem_enc: encode ``logits > 0`` (not their sigmoid)
            into memory on frames with clicks.
        memory_temporal_stride: stride ``r`` of the non-conditioning memory frames
            (the frame just before is always taken).
        max_cond_frames_in_attn: attend to at most this many temporally closest
            conditioning frames (-1: all). Unselected ones may still enter as previous
            frames.
        only_obj_ptrs_in_the_past: take conditioning-frame pointers only from frames
            not after the current one (in the tracking direction).
        non_overlap_masks_for_mem_enc: before encoding memory, keep at each pixel only
            the highest-scoring object's logit (the others clamped to -10).
        multimask_output_in_sam, multimask_min_pt_num, multimask_max_pt_num,
        multimask_output_for_tracking: multimask output when the frame has between
            ``min`` and ``max`` points (a box is two), on initial conditioning frames
            and (with ``multimask_output_for_tracking``) on every frame.
    """

    binarize_mask_from_pts_for_mem_enc: bool = True
    memory_temporal_stride: int = 1
    max_cond_frames_in_attn: int = -1
    only_obj_ptrs_in_the_past: bool = True
    non_overlap_masks_for_mem_enc: bool = False
    multimask_output_in_sam: bool = True
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1
    multimask_output_for_tracking: bool = True

    def __post_init__(self) -> None:
        if self.memory_temporal_stride < 1:
            raise InvalidConfig(
                "memory_temporal_stride must be >= 1", field="memory_temporal_stride"
            )
        if self.max_cond_frames_in_attn != -1 and self.max_cond_frames_in_attn < 2:
            raise InvalidConfig(
                "max_cond_frames_in_attn must be -1 or >= 2", field="max_cond_frames_in_attn"
            )


DEFAULT_OPTIONS = TrackerOptions()


def options_for(model: Sam2) -> TrackerOptions:
    """The official video predictor's flags for ``model``: :data:`DEFAULT_OPTIONS` with
    the model config's ``multimask_output_for_tracking`` (a ``SAM2Base`` argument, so a
    property of the trained model, not a user preference)."""
    flag = model.config.multimask_output_for_tracking
    return replace(DEFAULT_OPTIONS, multimask_output_for_tracking=flag)


@dataclass
class FrameFeatures:
    """Backbone features of one frame (batch 1), as the tracker consumes them.

    Attributes:
        vision_feats: top-level (stride 16) features, sequence-first ``(h*w, 1, C)``.
        vision_pos: their sine position encoding, ``(h*w, 1, C)``.
        high_res_features: the stride-4 and stride-8 levels after the decoder's
            ``conv_s0`` / ``conv_s1``: ``(1, C/8, 4h, 4w)``, ``(1, C/4, 2h, 2w)``.
        feat_size: ``(h, w)`` of the top level.
    """

    vision_feats: torch.Tensor
    vision_pos: torch.Tensor
    high_res_features: tuple[torch.Tensor, torch.Tensor]
    feat_size: tuple[int, int]

    @property
    def top(self) -> torch.Tensor:
        """The top-level features as a map ``(1, C, h, w)``."""
        h, w = self.feat_size
        return self.vision_feats.permute(1, 2, 0).reshape(1, -1, h, w)

    def to(self, device: torch.device | str) -> FrameFeatures:
        """A copy on ``device``."""
        s0, s1 = self.high_res_features
        return FrameFeatures(
            self.vision_feats.to(device),
            self.vision_pos.to(device),
            (s0.to(device), s1.to(device)),
            self.feat_size,
        )


@dataclass
class Memory:
    """What a tracked frame leaves in the memory bank, for a batch of objects.

    Attributes:
        frame_index: the frame it was computed on.
        is_conditioning: whether it is a conditioning (prompted) frame's memory.
        maskmem_features: ``(B, mem_dim, h, w)`` encoded memory (bfloat16 by default,
            as the official predictor stores it; used in float32).
        maskmem_pos_enc: ``(B, mem_dim, h, w)`` its spatial position encoding.
        obj_ptr: ``(B, hidden_dim)`` object pointers.
        object_score_logits: ``(B, 1)`` presence logits (> 0: present).
    """

    frame_index: int
    is_conditioning: bool
    maskmem_features: torch.Tensor
    maskmem_pos_enc: torch.Tensor
    obj_ptr: torch.Tensor
    object_score_logits: torch.Tensor

    @property
    def num_objects(self) -> int:
        return self.obj_ptr.shape[0]

    @property
    def has_spatial(self) -> bool:
        """Whether the encoded memory is kept (streaming mode keeps only the pointers of
        frames far behind, :func:`~samkit.video.memory_bank.pointer_only`)."""
        return self.maskmem_features.numel() > 0

    @staticmethod
    def cat(memories: Sequence[Memory]) -> Memory:
        """Objects of several memories of the same frame, concatenated in order."""
        if not memories:
            raise InvalidArgument("no memories to concatenate")
        first = memories[0]
        for m in memories[1:]:
            if m.frame_index != first.frame_index or m.is_conditioning != first.is_conditioning:
                raise InvalidArgument("can only concatenate memories of the same frame and kind")
        return Memory(
            first.frame_index,
            first.is_conditioning,
            torch.cat([m.maskmem_features for m in memories]),
            torch.cat([m.maskmem_pos_enc for m in memories]),
            torch.cat([m.obj_ptr for m in memories]),
            torch.cat([m.object_score_logits for m in memories]),
        )

    def select(self, rows: Sequence[int] | slice) -> Memory:
        """The memory of a subset of the objects (rows of the batch)."""
        index = rows if isinstance(rows, slice) else torch.as_tensor(list(rows), dtype=torch.long)
        return Memory(
            self.frame_index,
            self.is_conditioning,
            self.maskmem_features[index],
            self.maskmem_pos_enc[index],
            self.obj_ptr[index],
            self.object_score_logits[index],
        )


@dataclass
class TrackOutput:
    """One frame's prediction for a batch of ``B`` objects (``S`` the model input size).

    Attributes:
        low_res_masks: ``(B, 1, S/4, S/4)`` logits of the chosen mask (``NO_OBJ_SCORE``
            where the object is absent).
        high_res_masks: ``(B, 1, S, S)`` the same, bilinearly upsampled.
        multimask_logits: ``(B, M, S/4, S/4)`` all decoder outputs (M = 3 or 1).
        ious: ``(B, M)`` their predicted IoU (all ones for mask prompts).
        obj_ptr: ``(B, hidden_dim)`` object pointer.
        object_score_logits: ``(B, 1)`` presence logits.
        maskmem_features, maskmem_pos_enc: ``(B, mem_dim, h, w)`` float32 memory, when
            it was encoded (``run_mem_encoder``).
        decoder_masks: ``(B, M, S/4, S/4)`` the decoder's logits before absent objects
            are set to ``NO_OBJ_SCORE`` (what training computes mask losses on), or
            ``None``.
    """

    low_res_masks: torch.Tensor
    high_res_masks: torch.Tensor
    multimask_logits: torch.Tensor
    ious: torch.Tensor
    obj_ptr: torch.Tensor
    object_score_logits: torch.Tensor
    maskmem_features: torch.Tensor | None = None
    maskmem_pos_enc: torch.Tensor | None = None
    decoder_masks: torch.Tensor | None = None

    def to_memory(
        self,
        frame_index: int,
        is_conditioning: bool,
        storage_dtype: torch.dtype | None = torch.bfloat16,
    ) -> Memory:
        """The :class:`Memory` of this output (its memory must have been encoded).

        ``storage_dtype``: dtype the memory features are kept in (bfloat16 as in the
        official predictor; ``None`` keeps float32).
        """
        if self.maskmem_features is None or self.maskmem_pos_enc is None:
            raise InvalidArgument("this output has no encoded memory (run_mem_encoder=False)")
        feats = self.maskmem_features
        if storage_dtype is not None:
            feats = feats.to(storage_dtype)
        return Memory(
            frame_index,
            is_conditioning,
            feats,
            self.maskmem_pos_enc,
            self.obj_ptr,
            self.object_score_logits,
        )


@dataclass
class MemorySelection:
    """The memories one frame attends to (see :func:`select_memories`).

    Attributes:
        spatial: ``(slot, memory)`` pairs, conditioning memories (slot 0) first, then
            previous frames (slot 1 = the oldest, ``num_maskmem - 1`` = the latest).
        pointers: ``(temporal position, memory)`` pairs whose object pointers are used.
    """

    spatial: list[tuple[int, Memory]] = field(default_factory=list)
    pointers: list[tuple[int, Memory]] = field(default_factory=list)


__all__ = [
    "DEFAULT_OPTIONS",
    "NO_OBJ_SCORE",
    "FrameFeatures",
    "Memory",
    "MemorySelection",
    "Points",
    "TrackOutput",
    "TrackerOptions",
    "options_for",
]
