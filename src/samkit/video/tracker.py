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

Frames: :func:`load_frame` / :func:`prepare_frame` decode and normalise a frame the way
the official JPEG-folder loader does (PIL bicubic resize of the whole frame to the
model's square input, aspect not kept).

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

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage

from samkit.modeling.sam2 import Sam2

#: A training hook of :func:`track_step_with_grad`: ``(B, K, h, w)`` candidate logits ->
#: ``(B,)`` indices of the candidates to keep.
CandidateChooser = Callable[[torch.Tensor], torch.Tensor]

#: Mask logit given to an object predicted absent (and to objects with no output).
NO_OBJ_SCORE = -1024.0

#: Logit scale and bias turning a binary mask prompt into output logits (-10 / +10).
MASK_AS_OUTPUT_SCALE = 20.0
MASK_AS_OUTPUT_BIAS = -10.0

#: Value a filled hole gets in :func:`fill_holes` (a small positive logit).
HOLE_FILL_LOGIT = 0.1

_JPEG_SUFFIXES = (".jpg", ".jpeg", ".JPG", ".JPEG")
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


# ------------------------------------------------------------------------ data types
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
            raise ValueError("memory_temporal_stride must be >= 1")
        if self.max_cond_frames_in_attn != -1 and self.max_cond_frames_in_attn < 2:
            raise ValueError("max_cond_frames_in_attn must be -1 or >= 2")


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

    @staticmethod
    def cat(memories: Sequence[Memory]) -> Memory:
        """Objects of several memories of the same frame, concatenated in order."""
        if not memories:
            raise ValueError("no memories to concatenate")
        first = memories[0]
        for m in memories[1:]:
            if m.frame_index != first.frame_index or m.is_conditioning != first.is_conditioning:
                raise ValueError("can only concatenate memories of the same frame and kind")
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
            raise ValueError("this output has no encoded memory (run_mem_encoder=False)")
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


# ----------------------------------------------------------------------------- frames
def prepare_frame(
    rgb: np.ndarray | Image.Image, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """An RGB frame -> normalised ``(3, S, S)`` float32 tensor, as the official JPEG
    loader: PIL bicubic resize of the whole frame to ``S x S``, ``/ 255`` in float64,
    then ``(x - mean) / std`` in float32."""
    img = rgb if isinstance(rgb, Image.Image) else Image.fromarray(np.asarray(rgb))
    img = img.convert("RGB").resize((image_size, image_size), Image.BICUBIC)
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit RGB frame, got {arr.dtype}")
    x = torch.from_numpy(arr / 255.0).permute(2, 0, 1).float()
    mean_t = torch.tensor(tuple(mean), dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(tuple(std), dtype=torch.float32)[:, None, None]
    return (x - mean_t) / std_t


def load_frame(
    path: str | os.PathLike, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> tuple[torch.Tensor, tuple[int, int]]:
    """Read an image file -> (normalised ``(3, S, S)`` tensor, original ``(H, W)``)."""
    with Image.open(path) as img:
        rgb = img.convert("RGB")
    return prepare_frame(rgb, image_size, mean, std), (rgb.height, rgb.width)


def list_frame_files(folder: str | os.PathLike) -> list[Path]:
    """The JPEG frames of a folder (``<index>.jpg``), sorted by their integer stem."""
    paths = [p for p in Path(folder).iterdir() if p.suffix in _JPEG_SUFFIXES]
    if not paths:
        raise FileNotFoundError(f"no JPEG frames in {folder}")
    return sorted(paths, key=lambda p: int(p.stem))


def model_frame(model: Sam2, rgb: np.ndarray | Image.Image) -> torch.Tensor:
    """:func:`prepare_frame` with the model's input size and pixel statistics, as a
    ``(1, 3, S, S)`` batch on the model's device."""
    mean, std = model.config.pixel_mean, model.config.pixel_std
    return prepare_frame(rgb, model.image_size, mean, std).unsqueeze(0).to(model.device)


# ------------------------------------------------------------------------- prompts
def points_to_model(
    points: torch.Tensor | Sequence[Sequence[float]] | None,
    labels: torch.Tensor | Sequence[int] | None,
    video_size: tuple[int, int],
    image_size: int,
    box: torch.Tensor | Sequence[float] | None = None,
) -> Points:
    """Clicks (and a box) of one object in video pixels -> :class:`Points` ``(1, P, ..)``
    in the model's input frame (``x * S / W``, ``y * S / H``), the box's two corners
    first with labels 2 and 3, as the official ``add_new_points_or_box`` does."""
    if (points is None) != (labels is None):
        raise ValueError("points and labels must be given together")
    coords = torch.zeros(0, 2) if points is None else torch.as_tensor(points, dtype=torch.float32)
    labs = torch.zeros(0, dtype=torch.int32)
    if labels is not None:
        labs = torch.as_tensor(labels, dtype=torch.int32)
    if coords.shape[0] != labs.shape[0] or (coords.numel() and coords.shape[-1] != 2):
        raise ValueError("points must be (P, 2) with one label each")
    coords = coords.reshape(1, -1, 2)
    labs = labs.reshape(1, -1)
    if box is not None:
        corners = torch.as_tensor(box, dtype=torch.float32).reshape(1, 2, 2)
        coords = torch.cat([corners, coords], dim=1)
        labs = torch.cat([torch.tensor([[2, 3]], dtype=torch.int32), labs], dim=1)
    if coords.shape[1] == 0:
        raise ValueError("give at least one point or a box")
    h, w = video_size
    coords = coords / torch.tensor([w, h]) * image_size
    return Points(coords, labs)


def concat_points(old: Points | None, new: Points) -> Points:
    """Append clicks to an object's earlier ones (the official ``clear_old_points=False``)."""
    if old is None:
        return new
    return Points(torch.cat([old.coords, new.coords], 1), torch.cat([old.labels, new.labels], 1))


def mask_to_model(mask: torch.Tensor | np.ndarray, image_size: int) -> torch.Tensor:
    """A binary ``(H, W)`` mask of one object -> ``(1, 1, S, S)`` float mask prompt:
    resized with antialiased bilinear interpolation and thresholded at 0.5 (as the
    official ``add_new_mask``), unchanged if already ``S x S``."""
    m = torch.as_tensor(mask)
    if m.dim() != 2:
        raise ValueError("mask must be (H, W)")
    m = m.to(torch.bool).float()[None, None]
    if tuple(m.shape[-2:]) == (image_size, image_size):
        return m
    m = F.interpolate(
        m, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True
    )
    return (m >= 0.5).float()


# --------------------------------------------------------------------- post-processing
def fill_holes(mask_logits: torch.Tensor, max_area: int) -> torch.Tensor:
    """Fill small background holes of ``(B, 1, H, W)`` logits (the video predictor's
    ``fill_hole_area``): 8-connected regions of ``logits <= 0`` with at most
    ``max_area`` pixels get logit 0.1. (The official computes the components with a
    CUDA extension and silently skips this step without it; this runs on the CPU with
    scipy.) Returns a new tensor, or the input when ``max_area <= 0``."""
    if max_area <= 0:
        return mask_logits
    background = (mask_logits <= 0).reshape(-1, *mask_logits.shape[-2:]).cpu().numpy()
    holes = np.zeros_like(background)
    for i, region in enumerate(background):
        labels, n = ndimage.label(region, structure=_EIGHT_CONNECTED)
        if n == 0:
            continue
        small = np.bincount(labels.ravel(), minlength=n + 1) <= max_area
        small[0] = False
        holes[i] = small[labels]
    is_hole = torch.from_numpy(holes).reshape(mask_logits.shape).to(mask_logits.device)
    return torch.where(is_hole, HOLE_FILL_LOGIT, mask_logits)


def apply_non_overlapping_constraints(mask_logits: torch.Tensor) -> torch.Tensor:
    """Objects on the batch dimension ``(B, 1, H, W)``: keep each pixel's logit only for
    the highest-scoring object; the others are clamped to at most -10."""
    if mask_logits.shape[0] == 1:
        return mask_logits
    winner = torch.argmax(mask_logits, dim=0, keepdim=True)
    rows = torch.arange(mask_logits.shape[0], device=mask_logits.device)[:, None, None, None]
    return torch.where(winner == rows, mask_logits, mask_logits.clamp(max=-10.0))


def to_video_resolution(mask_logits: torch.Tensor, video_size: tuple[int, int]) -> torch.Tensor:
    """``(B, 1, h, w)`` logits -> ``(B, 1, H, W)`` at the video's size (bilinear)."""
    if tuple(mask_logits.shape[-2:]) == tuple(video_size):
        return mask_logits
    return F.interpolate(mask_logits, size=video_size, mode="bilinear", align_corners=False)


def upsample_to_input(model: Sam2, low_res: torch.Tensor) -> torch.Tensor:
    """Low-res logits -> ``(B, 1, S, S)`` at the model's input size (bilinear), e.g. to
    re-encode a stored low-res prediction into memory with :func:`encode_memory`."""
    s = model.image_size
    return F.interpolate(low_res.float(), size=(s, s), mode="bilinear", align_corners=False)


# ------------------------------------------------------------------------ the model
def encode_frame_with_grad(model: Sam2, image: torch.Tensor) -> FrameFeatures:
    """Backbone features of one normalised frame ``(3, S, S)`` or ``(1, 3, S, S)``, in
    the caller's autograd mode (training); :func:`encode_frame` is the inference form."""
    x = image.unsqueeze(0) if image.dim() == 3 else image
    if x.shape[0] != 1:
        raise ValueError("encode_frame takes one frame")
    s0, s1, top = model.forward_image(x.to(model.device))
    pos = model.image_encoder.position_encoding(top)
    h, w = top.shape[-2:]
    return FrameFeatures(
        vision_feats=top.flatten(2).permute(2, 0, 1),
        vision_pos=pos.flatten(2).permute(2, 0, 1),
        high_res_features=(s0, s1),
        feat_size=(h, w),
    )


def _select_closest_cond(
    frame_index: int, cond: Mapping[int, Memory], max_num: int
) -> tuple[dict[int, Memory], dict[int, Memory]]:
    """Up to ``max_num`` conditioning memories closest in time: the closest before the
    frame, the closest at or after it, then the nearest others."""
    if max_num == -1 or len(cond) <= max_num:
        return dict(cond), {}
    selected: dict[int, Memory] = {}
    before = max((t for t in cond if t < frame_index), default=None)
    if before is not None:
        selected[before] = cond[before]
    after = min((t for t in cond if t >= frame_index), default=None)
    if after is not None:
        selected[after] = cond[after]
    rest = sorted((t for t in cond if t not in selected), key=lambda t: abs(t - frame_index))
    for t in rest[: max_num - len(selected)]:
        selected[t] = cond[t]
    return selected, {t: m for t, m in cond.items() if t not in selected}


def _by_frame(memories: Iterable[Memory] | Mapping[int, Memory]) -> Mapping[int, Memory]:
    if isinstance(memories, Mapping):
        return memories  # read only; may be lazy (the session's batched memories)
    out: dict[int, Memory] = {}
    for m in memories:
        if m.frame_index in out:
            raise ValueError(f"two memories for frame {m.frame_index}")
        out[m.frame_index] = m
    return out


def select_memories(
    frame_index: int,
    cond_memories: Iterable[Memory] | Mapping[int, Memory],
    non_cond_memories: Iterable[Memory] | Mapping[int, Memory],
    *,
    num_maskmem: int,
    max_obj_ptrs: int,
    num_frames: int,
    track_in_reverse: bool = False,
    use_signed_tpos: bool = True,
    options: TrackerOptions = DEFAULT_OPTIONS,
) -> MemorySelection:
    """Which memories a non-initial frame attends to, and their temporal positions
    (see the module docstring). ``max_obj_ptrs`` is the model's
    ``max_obj_ptrs_in_encoder``; pointer positions are signed (``frame - t``, negated
    in reverse) with ``use_signed_tpos`` (SAM 2.1), absolute otherwise."""
    cond = _by_frame(cond_memories)
    non_cond = _by_frame(non_cond_memories)
    selected, unselected = _select_closest_cond(frame_index, cond, options.max_cond_frames_in_attn)
    result = MemorySelection()
    result.spatial = [(0, m) for m in selected.values()]
    stride = options.memory_temporal_stride
    step = -1 if track_in_reverse else 1  # time direction of "previous" frames
    for slot in range(1, num_maskmem):
        back = num_maskmem - slot  # frames before the current one
        if back == 1:
            t = frame_index - step
        elif not track_in_reverse:
            t = ((frame_index - 2) // stride) * stride - (back - 2) * stride
        else:
            t = -(-(frame_index + 2) // stride) * stride + (back - 2) * stride
        mem = non_cond.get(t, unselected.get(t))
        if mem is not None:
            result.spatial.append((slot, mem))

    limit = min(num_frames, max_obj_ptrs)
    sign = -1 if track_in_reverse else 1
    if options.only_obj_ptrs_in_the_past:
        ptr_cond = {
            t: m
            for t, m in selected.items()
            if (t >= frame_index if track_in_reverse else t <= frame_index)
        }
    else:
        ptr_cond = selected
    for t, m in ptr_cond.items():
        pos = (frame_index - t) * sign if use_signed_tpos else abs(frame_index - t)
        result.pointers.append((pos, m))
    for t_diff in range(1, limit):
        t = frame_index - step * t_diff
        if t < 0 or t >= num_frames:
            break
        mem = non_cond.get(t, unselected.get(t))
        if mem is not None:
            result.pointers.append((t_diff, mem))
    return result


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
        raise ValueError("a non-initial frame needs at least one conditioning memory")
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
        raise ValueError(
            f"memory of frame {mem.frame_index} has {mem.num_objects} objects, "
            f"the frame is tracked for {batch}"
        )


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
            raise ValueError(f"points are for {coords.shape[0]} objects, expected {batch}")
    encoder = model.sam_prompt_encoder
    if mask_prompt is not None:
        if mask_prompt.dim() != 4 or tuple(mask_prompt.shape[:2]) != (batch, 1):
            raise ValueError(f"mask prompt must be ({batch}, 1, H, W)")
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
        raise ValueError("give points or a mask on a frame, not both")
    if prev_sam_mask_logits is not None and point_inputs is None:
        raise ValueError("prev_sam_mask_logits goes with new point_inputs")
    cond_memories = _by_frame(cond_memories)
    batch = _batch_size(num_objects, point_inputs, mask_inputs, cond_memories)
    high_res = features.high_res_features
    if mask_inputs is not None:
        if mask_inputs.dim() != 4 or tuple(mask_inputs.shape[:2]) != (batch, 1):
            raise ValueError(f"mask_inputs must be ({batch}, 1, S, S)")
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
    raise ValueError("cannot tell the number of objects: give prompts or num_objects")


__all__ = [
    "DEFAULT_OPTIONS",
    "HOLE_FILL_LOGIT",
    "NO_OBJ_SCORE",
    "CandidateChooser",
    "FrameFeatures",
    "Memory",
    "MemorySelection",
    "Points",
    "TrackOutput",
    "TrackerOptions",
    "apply_non_overlapping_constraints",
    "concat_points",
    "encode_frame",
    "encode_frame_with_grad",
    "encode_memory",
    "encode_memory_with_grad",
    "fill_holes",
    "list_frame_files",
    "load_frame",
    "mask_to_model",
    "model_frame",
    "points_to_model",
    "prepare_frame",
    "select_memories",
    "sine_1d",
    "to_video_resolution",
    "track_step",
    "track_step_with_grad",
    "upsample_to_input",
    "use_multimask",
]
