"""SAM 2 video: the SAM heads of one frame (prompt encoder and mask decoder).

The step of :func:`~samkit.video.tracker.track_step` after the frame's features are
conditioned on the memory bank, moved out of :mod:`samkit.video.tracker` (every name
here is still importable from there): :func:`_sam_heads` runs the prompt encoder and
mask decoder on the conditioned features with the frame's clicks (or a padding click)
and an optional mask prompt, and gives masks, predicted IoUs, the object pointer and
the object score; :func:`_mask_as_output` takes a mask prompt as the prediction (the
heads only give its pointer); :func:`use_multimask` decides whether the heads give
three masks on a frame. The semantics reproduced are listed in
:mod:`samkit.video.tracker`'s docstring.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from samkit.errors import InvalidPrompt
from samkit.modeling.sam2 import Sam2
from samkit.video.state import DEFAULT_OPTIONS, NO_OBJ_SCORE, Points, TrackerOptions

#: A training hook of :func:`~samkit.video.tracker.track_step_with_grad`: ``(B, K, h, w)``
#: candidate logits -> ``(B,)`` indices of the candidates to keep.
CandidateChooser = Callable[[torch.Tensor], torch.Tensor]

#: Logit scale and bias turning a binary mask prompt into output logits (-10 / +10).
MASK_AS_OUTPUT_SCALE = 20.0
MASK_AS_OUTPUT_BIAS = -10.0


@dataclass
class _HeadsOut:
    multimask_logits: torch.Tensor
    ious: torch.Tensor
    low_res: torch.Tensor
    high_res: torch.Tensor
    obj_ptr: torch.Tensor
    object_score_logits: torch.Tensor
    decoder_masks: torch.Tensor


def _gate_pointer(model: Sam2, obj_ptr: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Official flags ``fixed_no_obj_ptr``: an absent object's pointer is ``no_obj_ptr``."""
    lam = present.to(obj_ptr.dtype)
    return lam * obj_ptr + (1 - lam) * model.no_obj_ptr


def _sam_heads(
    model: Sam2,
    pix_feat: torch.Tensor,
    high_res: tuple[torch.Tensor, torch.Tensor],
    points: Points | None,
    mask_prompt: torch.Tensor | None,
    multimask: bool,
    choose_candidate: CandidateChooser | None = None,
) -> _HeadsOut:
    batch = pix_feat.shape[0]
    device = pix_feat.device
    if points is None:  # a lone padding point
        coords = torch.zeros(batch, 1, 2, device=device)
        labels = -torch.ones(batch, 1, dtype=torch.int32, device=device)
    else:
        coords, labels = points.coords.to(device), points.labels.to(device)
        if coords.shape[0] != batch or labels.shape[0] != batch:
            raise InvalidPrompt(f"points are for {coords.shape[0]} objects, expected {batch}")
    encoder = model.sam_prompt_encoder
    if mask_prompt is not None:
        if mask_prompt.dim() != 4 or tuple(mask_prompt.shape[:2]) != (batch, 1):
            raise InvalidPrompt(f"mask prompt must be ({batch}, 1, H, W)")
        mask_prompt = mask_prompt.to(device)
        if tuple(mask_prompt.shape[-2:]) != tuple(encoder.mask_input_size):
            mask_prompt = F.interpolate(
                mask_prompt.float(),
                size=encoder.mask_input_size,
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
    sparse, dense = encoder(points=(coords, labels), boxes=None, masks=mask_prompt)
    out = model.sam_mask_decoder.forward_full(
        image_embeddings=pix_feat,
        image_pe=encoder.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
        high_res_features=high_res,
    )
    present = out.object_score_logits > 0  # (B, 1)
    multimasks = torch.where(present[:, :, None, None], out.masks, NO_OBJ_SCORE).float()
    tokens = out.sam_tokens
    if multimask:
        if choose_candidate is None:
            best = torch.argmax(out.iou, dim=-1)
        else:
            best = choose_candidate(multimasks.detach()).to(device)
        rows = torch.arange(batch, device=device)
        low_res = multimasks[rows, best].unsqueeze(1)
        token = tokens[rows, best] if tokens.shape[1] > 1 else tokens[:, 0]
    else:
        low_res = multimasks
        token = tokens[:, 0]
    s = model.image_size
    high_res_masks = F.interpolate(low_res, size=(s, s), mode="bilinear", align_corners=False)
    obj_ptr = _gate_pointer(model, model.obj_ptr_proj(token), present)
    return _HeadsOut(
        multimasks,
        out.iou,
        low_res,
        high_res_masks,
        obj_ptr,
        out.object_score_logits,
        out.masks.float(),
    )


def _mask_as_output(
    model: Sam2,
    pix_feat: torch.Tensor,
    high_res: tuple[torch.Tensor, torch.Tensor],
    mask_inputs: torch.Tensor,
) -> _HeadsOut:
    """A binary mask prompt taken as the prediction; the SAM heads only give the
    pointer (from the mask downsampled to the decoder's mask-prompt size)."""
    mask = mask_inputs.float()
    high_res_masks = mask * MASK_AS_OUTPUT_SCALE + MASK_AS_OUTPUT_BIAS
    h, w = high_res_masks.shape[-2:]
    low_res = F.interpolate(
        high_res_masks, size=(h // 4, w // 4), mode="bilinear", align_corners=False, antialias=True
    )
    ious = mask.new_ones(mask.shape[0], 1)
    heads = _sam_heads(model, pix_feat, high_res, None, model.mask_downsample(mask), False)
    present = torch.any(mask.flatten(1) > 0.0, dim=1, keepdim=True)
    score = MASK_AS_OUTPUT_SCALE * present.float() + MASK_AS_OUTPUT_BIAS
    obj_ptr = _gate_pointer(model, heads.obj_ptr, present)
    return _HeadsOut(low_res, ious, low_res, high_res_masks, obj_ptr, score, low_res)


def use_multimask(
    is_init_cond_frame: bool, points: Points | None, options: TrackerOptions = DEFAULT_OPTIONS
) -> bool:
    """Whether the SAM heads give three masks on this frame (see :class:`TrackerOptions`)."""
    n = 0 if points is None else points.labels.shape[1]
    return (
        options.multimask_output_in_sam
        and (is_init_cond_frame or options.multimask_output_for_tracking)
        and options.multimask_min_pt_num <= n <= options.multimask_max_pt_num
    )


__all__ = ["MASK_AS_OUTPUT_BIAS", "MASK_AS_OUTPUT_SCALE", "CandidateChooser", "use_multimask"]
