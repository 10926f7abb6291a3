"""SAM 2 per-frame tracking: one frame of the video model, for a batch of objects.

This module is the computation under a video session, with no session state: the
caller keeps the memories and decides which frames are conditioning frames. It
reproduces the official ``SAM2Base.track_step`` as configured by the official SAM 2 and
SAM 2.1 yaml files and ``build_sam2_video_predictor`` (its post-processing flags on),
on a :class:`~samkit.modeling.sam2.Sam2` model:

1. :func:`encode_frame`: backbone features of one frame (:class:`FrameFeatures`).
2. :func:`track_step`: condition the frame's features on the memory bank (or add the
   no-memory embedding on an initial conditioning frame), run the SAM heads with the
   frame's prompts, and optionally encode the prediction into a new memory
   (:class:`TrackOutput`; :meth:`TrackOutput.to_memory` gives the :class:`Memory`).

The batch dimension is the objects: every tensor of a :class:`Memory` or
:class:`TrackOutput` has one row per object, and one :func:`track_step` call tracks all
of them on one frame. Rows never interact (unless ``non_overlap_masks_for_mem_enc``),
so tracking objects together gives what tracking them one by one gives (the official
predictor of ``sam2`` 1.1 runs each object alone). A batch shares its memory frames (one
:class:`Memory` per frame holds every object), so objects whose memory frames differ
(their own conditioning frames, an object added after propagation) are tracked in
separate calls or regrouped with :meth:`Memory.select` / :meth:`Memory.cat`. Prompts
are a batch too; objects with different numbers of clicks must be run separately, since
a padding click would change the result.

Frames, prompts and post-processing (:mod:`samkit.video.frames`): :func:`load_frame` /
:func:`prepare_frame` decode and normalise a frame the way the official JPEG-folder
loader does (PIL bicubic resize of the whole frame to the model's square input, aspect
not kept). The typed inputs and outputs are in :mod:`samkit.video.state`, the memory
selection (:func:`select_memories`) in :mod:`samkit.video.memory_bank`, and the SAM
heads (prompt encoder and mask decoder on the conditioned features, :func:`use_multimask`,
``CandidateChooser``, ``MASK_AS_OUTPUT_*``) in :mod:`samkit.video.sam_heads` (still
importable from here).

Semantics reproduced, with the flags of every official config (see
:class:`TrackerOptions`):

* Memory bank of a non-initial frame: every conditioning frame (temporal slot 0), then
  up to ``num_maskmem - 1`` previous non-conditioning frames: the frame just before
  (slot ``num_maskmem - 1``) and, for slot ``t``, the frame ``num_maskmem - t`` strides
  back on the stride grid (``memory_temporal_stride``; 1 in the official predictor).
  Each memory's position encoding gets ``maskmem_tpos_enc[num_maskmem - slot - 1]``.
  Missing frames are skipped.
* Object pointers: those of the conditioning frames not in the future of the tracking
  direction, then of up to ``min(num_frames, max_obj_ptrs_in_encoder) - 1`` previous
  frames (non-conditioning memories, or unselected conditioning ones), stopping at the
  video's ends. SAM 2.1 encodes each pointer's signed temporal distance with a 1-D sine
  table of width ``hidden_dim`` projected by ``obj_ptr_tpos_proj``; SAM 2.0 gives them a
  zero position. A pointer of width ``hidden_dim`` becomes ``hidden_dim / mem_dim``
  tokens (the memory attention applies no RoPE to them).
* SAM heads: multimask output (three masks, the best predicted IoU picked, and its
  token for the pointer) when the frame has at most one click (a box counts as two),
  on any frame; otherwise one mask, replaced by the best multimask output when
  unstable. An absent object (object score <= 0) gets ``NO_OBJ_SCORE`` logits and the
  learned ``no_obj_ptr`` pointer.
* Mask prompts are used as the output (logits -10 / +10); a pointer is still computed
  by the SAM heads from the mask, and presence follows the mask.
* Memory encoding: the full-resolution mask logits through a sigmoid (binarised instead
  on frames with clicks), times 20 minus 10; SAM 2.1 adds ``no_obj_embed_spatial`` to
  the memory of an absent object.

The official predictor keeps memory features in bfloat16 (:meth:`TrackOutput.to_memory`
does the same by default); masks, pointers and scores stay float32.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from samkit.errors import InvalidArgument, InvalidPrompt
from samkit.modeling.sam2 import Sam2
from samkit.video.frames import apply_non_overlapping_constraints
from samkit.video.memory_bank import by_frame, select_memories

# The SAM heads moved to samkit.video.sam_heads; their names stay importable from here.
from samkit.video.sam_heads import MASK_AS_OUTPUT_BIAS as MASK_AS_OUTPUT_BIAS
from samkit.video.sam_heads import MASK_AS_OUTPUT_SCALE as MASK_AS_OUTPUT_SCALE
from samkit.video.sam_heads import CandidateChooser, _mask_as_output, _sam_heads, use_multimask
from samkit.video.sam_heads import _gate_pointer as _gate_pointer
from samkit.video.sam_heads import _HeadsOut as _HeadsOut
from samkit.video.state import (
    DEFAULT_OPTIONS,
    FrameFeatures,
    Memory,
    Points,
    TrackerOptions,
    TrackOutput,
    options_for,
)


# ------------------------------------------------------------------------ the model
def encode_frame_with_grad(model: Sam2, image: torch.Tensor) -> FrameFeatures:
    """Backbone features of one normalised frame ``(3, S, S)`` or ``(1, 3, S, S)``, in
    the caller's autograd mode (training); :func:`encode_frame` is the inference form."""
    x = image.unsqueeze(0) if image.dim() == 3 else image
    if x.shape[0] != 1:
        raise InvalidArgument("encode_frame takes one frame")
    s0, s1, top = model.forward_image(x.to(model.device))
    pos = model.image_encoder.position_encoding(top)
    h, w = top.shape[-2:]
    return FrameFeatures(
        vision_feats=top.flatten(2).permute(2, 0, 1),
        vision_pos=pos.flatten(2).permute(2, 0, 1),
        high_res_features=(s0, s1),
        feat_size=(h, w),
    )


def sine_1d(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """1-D sine/cosine encoding ``(N,) -> (N, dim)``: sines then cosines of
    ``pos / temperature ** (2 * (i // 2) / (dim / 2))`` for ``i < dim / 2``."""
    half = dim // 2
    freq = torch.arange(half, dtype=torch.float32, device=positions.device)
    freq = temperature ** (2 * (freq // 2) / half)
    angles = positions.unsqueeze(-1) / freq
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def _condition_on_memory(
    model: Sam2,
    frame_index: int,
    features: FrameFeatures,
    batch: int,
    *,
    is_init_cond_frame: bool,
    cond_memories: Iterable[Memory] | Mapping[int, Memory],
    non_cond_memories: Iterable[Memory] | Mapping[int, Memory],
    num_frames: int,
    track_in_reverse: bool,
    options: TrackerOptions,
) -> torch.Tensor:
    """The frame's top-level features fused with the memory bank, ``(B, C, h, w)``."""
    h, w = features.feat_size
    hidden, mem_dim = model.hidden_dim, model.mem_dim
    curr = features.vision_feats.expand(-1, batch, -1)
    if model.num_maskmem == 0:  # memory disabled: SAM on each frame
        return curr.permute(1, 2, 0).reshape(batch, hidden, h, w)
    if is_init_cond_frame:
        # no memory yet: the official configs add the no-memory embedding directly
        fused = curr + model.no_mem_embed
        return fused.permute(1, 2, 0).reshape(batch, hidden, h, w)

    cfg = model.config
    sel = select_memories(
        frame_index,
        cond_memories,
        non_cond_memories,
        num_maskmem=model.num_maskmem,
        max_obj_ptrs=cfg.max_obj_ptrs_in_encoder,
        num_frames=num_frames,
        track_in_reverse=track_in_reverse,
        use_signed_tpos=cfg.use_signed_tpos_enc_to_obj_ptrs,
        options=options,
    )
    if not any(slot == 0 for slot, _ in sel.spatial):
        raise InvalidArgument("a non-initial frame needs at least one conditioning memory")
    device, dtype = curr.device, curr.dtype
    tokens: list[torch.Tensor] = []
    pos: list[torch.Tensor] = []
    for slot, mem in sel.spatial:
        _check_batch(mem, batch)
        feats = mem.maskmem_features.to(device=device, dtype=dtype)
        tokens.append(feats.flatten(2).permute(2, 0, 1))
        enc = mem.maskmem_pos_enc.to(device=device, dtype=dtype).flatten(2).permute(2, 0, 1)
        pos.append(enc + model.maskmem_tpos_enc[model.num_maskmem - slot - 1])

    num_ptr_tokens = 0
    if sel.pointers:
        for _, mem in sel.pointers:
            _check_batch(mem, batch)
        ptrs = torch.stack([m.obj_ptr.to(device=device, dtype=dtype) for _, m in sel.pointers])
        n = ptrs.shape[0]
        if cfg.add_tpos_enc_to_obj_ptrs:
            # official: divided by (limit - 1), which is 0 for a one-frame video
            t_max = max(min(num_frames, cfg.max_obj_ptrs_in_encoder) - 1, 1)
            rel = torch.tensor([p for p, _ in sel.pointers], dtype=torch.float32, device=device)
            tpos_dim = hidden if cfg.proj_tpos_enc_in_obj_ptrs else mem_dim
            ptr_pos = model.obj_ptr_tpos_proj(sine_1d(rel / t_max, tpos_dim).to(dtype))
            ptr_pos = ptr_pos.unsqueeze(1).expand(-1, batch, mem_dim)
        else:
            ptr_pos = ptrs.new_zeros(n, batch, mem_dim)
        if mem_dim < hidden:
            # each pointer becomes hidden / mem_dim tokens of width mem_dim
            split = hidden // mem_dim
            ptrs = ptrs.reshape(n, batch, split, mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
            ptr_pos = ptr_pos.repeat_interleave(split, dim=0)
        tokens.append(ptrs)
        pos.append(ptr_pos)
        num_ptr_tokens = ptrs.shape[0]

    fused = model.memory_attention(
        curr=curr,
        curr_pos=features.vision_pos.expand(-1, batch, -1),
        memory=torch.cat(tokens, dim=0),
        memory_pos=torch.cat(pos, dim=0),
        num_obj_ptr_tokens=num_ptr_tokens,
    )
    return fused.permute(1, 2, 0).reshape(batch, hidden, h, w)


def _check_batch(mem: Memory, batch: int) -> None:
    if mem.num_objects != batch:
        raise InvalidArgument(
            f"memory of frame {mem.frame_index} has {mem.num_objects} objects, "
            f"the frame is tracked for {batch}"
        )


@torch.inference_mode()
def encode_frame(model: Sam2, image: torch.Tensor) -> FrameFeatures:
    """Backbone features of one normalised frame ``(3, S, S)`` or ``(1, 3, S, S)``
    (:func:`encode_frame_with_grad` under ``torch.inference_mode``)."""
    return encode_frame_with_grad(model, image)


def encode_memory_with_grad(
    model: Sam2,
    features: FrameFeatures,
    high_res_masks: torch.Tensor,
    object_score_logits: torch.Tensor,
    *,
    is_mask_from_pts: bool,
    options: TrackerOptions = DEFAULT_OPTIONS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode ``(B, 1, S, S)`` mask logits of a frame into memory: float32
    ``(maskmem_features, maskmem_pos_enc)``, each ``(B, mem_dim, h, w)``.

    ``is_mask_from_pts``: the masks come from clicks (binarised instead of a sigmoid
    with ``binarize_mask_from_pts_for_mem_enc``). ``object_score_logits`` ``(B, 1)``:
    SAM 2.1 marks absent objects with ``no_obj_embed_spatial``. Runs in the caller's
    autograd mode (training); :func:`encode_memory` is the inference form.
    """
    masks = high_res_masks.float()
    if options.non_overlap_masks_for_mem_enc:
        masks = apply_non_overlapping_constraints(masks)
    if options.binarize_mask_from_pts_for_mem_enc and is_mask_from_pts:
        probs = (masks > 0).float()
    else:
        probs = torch.sigmoid(masks)
    cfg = model.config
    if cfg.sigmoid_scale_for_mem_enc != 1.0:
        probs = probs * cfg.sigmoid_scale_for_mem_enc
    if cfg.sigmoid_bias_for_mem_enc != 0.0:
        probs = probs + cfg.sigmoid_bias_for_mem_enc
    feats, pos = model.memory_encoder(features.top, probs, skip_mask_sigmoid=True)
    if model.no_obj_embed_spatial is not None:
        absent = (object_score_logits.to(feats.device) <= 0).to(feats.dtype)  # (B, 1)
        feats = feats + absent[:, :, None, None] * model.no_obj_embed_spatial[:, :, None, None]
    batch = masks.shape[0]
    return feats, pos.expand(batch, -1, -1, -1)


@torch.inference_mode()
def encode_memory(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`encode_memory_with_grad` (same arguments) under ``torch.inference_mode``."""
    return encode_memory_with_grad(*args, **kwargs)


def track_step_with_grad(
    model: Sam2,
    frame_index: int,
    features: FrameFeatures,
    *,
    is_init_cond_frame: bool,
    point_inputs: Points | None = None,
    mask_inputs: torch.Tensor | None = None,
    cond_memories: Iterable[Memory] | Mapping[int, Memory] = (),
    non_cond_memories: Iterable[Memory] | Mapping[int, Memory] = (),
    num_frames: int,
    track_in_reverse: bool = False,
    run_mem_encoder: bool = True,
    prev_sam_mask_logits: torch.Tensor | None = None,
    num_objects: int | None = None,
    options: TrackerOptions | None = None,
    choose_candidate: CandidateChooser | None = None,
) -> TrackOutput:
    """Track a batch of objects on one frame, in the caller's autograd mode (what
    training back-propagates through; :func:`track_step` is the inference form).

    Args:
        model: the SAM 2 / 2.1 model (eval mode).
        frame_index: index of the frame in the video.
        features: :func:`encode_frame` of the frame.
        is_init_cond_frame: a frame prompted before it was ever tracked: segmented from
            its prompts alone, with no memory.
        point_inputs: clicks (and boxes as corner points) in the model's input frame,
            ``(B, P, 2)`` / ``(B, P)``.
        mask_inputs: ``(B, 1, S, S)`` binary mask prompts, used as the output
            (exclusive with ``point_inputs``).
        cond_memories: memories of the conditioning frames (all objects of the batch,
            in one :class:`Memory` per frame); needed unless ``is_init_cond_frame``.
        non_cond_memories: memories of tracked frames (iterable of :class:`Memory` or a
            mapping frame -> memory); only the ones the frame attends to are read.
        num_frames: number of frames in the video (bounds the pointer window).
        track_in_reverse: tracking backwards in time (previous frames are later ones).
        run_mem_encoder: encode the prediction into memory (``maskmem_*`` of the output).
        prev_sam_mask_logits: ``(B, 1, S/4, S/4)`` earlier low-res logits of this frame,
            fed to the decoder with new clicks (the official predictor clamps them to
            +-32 first); needs ``point_inputs``.
        num_objects: batch size when there are no prompts (default: from the prompts
            or the first conditioning memory).
        options: tracking flags (default: the official video predictor's for this
            model, :func:`options_for`).
        choose_candidate: training hook. When the decoder returns several candidates,
            it gets their ``(B, K, S/4, S/4)`` low-res logits (detached) and returns the
            ``(B,)`` indices to keep (the mask the memory is encoded from and the token
            the object pointer is read from) instead of the highest predicted IoU's; the
            video trainer's teacher forcing passes the best match to the ground truth.
            The outputs' ``ious`` stay the predicted ones.
    """
    if options is None:
        options = options_for(model)
    if point_inputs is not None and mask_inputs is not None:
        raise InvalidPrompt("give points or a mask on a frame, not both")
    if prev_sam_mask_logits is not None and point_inputs is None:
        raise InvalidArgument("prev_sam_mask_logits goes with new point_inputs")
    cond_memories = by_frame(cond_memories)
    batch = _batch_size(num_objects, point_inputs, mask_inputs, cond_memories)
    high_res = features.high_res_features
    if mask_inputs is not None:
        if mask_inputs.dim() != 4 or tuple(mask_inputs.shape[:2]) != (batch, 1):
            raise InvalidPrompt(f"mask_inputs must be ({batch}, 1, S, S)")
        pix_feat = features.top.expand(batch, -1, -1, -1)
        heads = _mask_as_output(model, pix_feat, high_res, mask_inputs.to(pix_feat.device))
    else:
        pix_feat = _condition_on_memory(
            model,
            frame_index,
            features,
            batch,
            is_init_cond_frame=is_init_cond_frame,
            cond_memories=cond_memories,
            non_cond_memories=non_cond_memories,
            num_frames=num_frames,
            track_in_reverse=track_in_reverse,
            options=options,
        )
        heads = _sam_heads(
            model,
            pix_feat,
            high_res,
            point_inputs,
            prev_sam_mask_logits,
            use_multimask(is_init_cond_frame, point_inputs, options),
            choose_candidate,
        )
    out = TrackOutput(
        low_res_masks=heads.low_res,
        high_res_masks=heads.high_res,
        multimask_logits=heads.multimask_logits,
        ious=heads.ious,
        obj_ptr=heads.obj_ptr,
        object_score_logits=heads.object_score_logits,
        decoder_masks=heads.decoder_masks,
    )
    if run_mem_encoder and model.num_maskmem > 0:
        out.maskmem_features, out.maskmem_pos_enc = encode_memory_with_grad(
            model,
            features,
            heads.high_res,
            heads.object_score_logits,
            is_mask_from_pts=point_inputs is not None,
            options=options,
        )
    return out


@torch.inference_mode()
def track_step(*args: Any, **kwargs: Any) -> TrackOutput:
    """:func:`track_step_with_grad` (same arguments) under ``torch.inference_mode``: what
    the video predictor runs."""
    return track_step_with_grad(*args, **kwargs)


def _batch_size(
    num_objects: int | None,
    points: Points | None,
    mask_inputs: torch.Tensor | None,
    cond_memories: Mapping[int, Memory],
) -> int:
    if num_objects is not None:
        return num_objects
    if points is not None:
        return points.coords.shape[0]
    if mask_inputs is not None:
        return mask_inputs.shape[0]
    for mem in cond_memories.values():
        return mem.num_objects
    raise InvalidArgument("cannot tell the number of objects: give prompts or num_objects")


__all__ = [
    "CandidateChooser",
    "encode_frame",
    "encode_frame_with_grad",
    "encode_memory",
    "encode_memory_with_grad",
    "sine_1d",
    "track_step",
    "track_step_with_grad",
    "use_multimask",
]
