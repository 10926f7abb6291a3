"""The memory bank: which memories a frame attends to, and how a session groups objects.

:func:`select_memories` reproduces the official ``SAM2Base`` rules (conditioning frames
first, then the previous frames on the stride grid, object pointers within the pointer
window); the rest serves :class:`~samkit.video.session.VideoSession`, which tracks
objects whose memory banks hold the same frames in one batched step.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from samkit.errors import InvalidArgument
from samkit.video.results import FrameOutput, ObjectTrack
from samkit.video.state import DEFAULT_OPTIONS, Memory, MemorySelection, TrackerOptions


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


def by_frame(memories: Iterable[Memory] | Mapping[int, Memory]) -> Mapping[int, Memory]:
    """Memories keyed by their frame (a mapping is returned as it is); two memories of
    one frame are an error."""
    if isinstance(memories, Mapping):
        return memories  # read only; may be lazy (the session's batched memories)
    out: dict[int, Memory] = {}
    for m in memories:
        if m.frame_index in out:
            raise InvalidArgument(f"two memories for frame {m.frame_index}")
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
    (the rules are listed in :mod:`samkit.video.tracker`'s docstring). ``max_obj_ptrs`` is the model's
    ``max_obj_ptrs_in_encoder``; pointer positions are signed (``frame - t``, negated
    in reverse) with ``use_signed_tpos`` (SAM 2.1), absolute otherwise."""
    cond = by_frame(cond_memories)
    non_cond = by_frame(non_cond_memories)
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
        # a pointer-only memory (streaming mode, pruned by a pass in the other
        # direction) has nothing to attend to: that slot stays empty
        if mem is not None and mem.has_spatial:
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


def stored_memories(outputs: dict[int, FrameOutput]) -> dict[int, Memory]:
    """frame -> memory of the outputs that hold one (fresh prompts have none yet)."""
    return {t: o.memory for t, o in outputs.items() if o.memory is not None}


def memory_frames(outputs: dict[int, FrameOutput]) -> tuple[tuple[int, bool], ...]:
    """``(frame, has spatial memory)`` of the outputs that hold a memory, by frame."""
    return tuple(
        (t, o.memory.has_spatial) for t, o in sorted(outputs.items()) if o.memory is not None
    )


def group_by_memory_frames(tracks: list[ObjectTrack]) -> list[list[ObjectTrack]]:
    """Group objects whose memory banks hold the same frames (same conditioning frames,
    same tracked frames, spatial memories kept for the same ones): each group attends to
    the same memory frames at the same temporal positions, so it is tracked in one
    batched step, as the official predictor does for all its objects. Objects prompted
    on different frames form separate groups. Order: first object of each group."""
    groups: dict[tuple, list[ObjectTrack]] = {}
    for track in tracks:
        key = (memory_frames(track.cond), memory_frames(track.non_cond))
        groups.setdefault(key, []).append(track)
    return list(groups.values())


class BatchedMemories(Mapping[int, Memory]):
    """The memories of several objects with the same memory frames, concatenated along
    the batch on access (only the frames a step reads are concatenated)."""

    def __init__(self, outputs: list[dict[int, FrameOutput]]) -> None:
        self._outputs = outputs
        # frame -> None, in the first object's order (all objects hold the same frames)
        self._frames = dict.fromkeys(t for t, o in outputs[0].items() if o.memory is not None)
        self._cache: dict[int, Memory] = {}

    def __getitem__(self, frame: int) -> Memory:
        mem = self._cache.get(frame)
        if mem is None:
            parts = [out[frame].memory for out in self._outputs]  # KeyError if absent
            if any(p is None for p in parts):
                raise KeyError(frame)
            mem = Memory.cat(parts)  # type: ignore[arg-type]
            self._cache[frame] = mem
        return mem

    def __iter__(self) -> Iterator[int]:
        return iter(self._frames)

    def __len__(self) -> int:
        return len(self._frames)

    def __contains__(self, frame: object) -> bool:
        return frame in self._frames


def own_rows(memory: Memory) -> Memory:
    """One object's rows of a batched memory, copied so that the object's memory does
    not keep the whole batch alive (the position encoding stays shared)."""
    pos = memory.maskmem_pos_enc
    return Memory(
        memory.frame_index,
        memory.is_conditioning,
        memory.maskmem_features.clone(),
        pos,
        memory.obj_ptr.clone(),
        memory.object_score_logits.clone(),
    )


def relabelled(memory: Memory, *, is_conditioning: bool) -> Memory:
    """The same memory filed as a conditioning or a non-conditioning one."""
    return Memory(
        memory.frame_index,
        is_conditioning,
        memory.maskmem_features,
        memory.maskmem_pos_enc,
        memory.obj_ptr,
        memory.object_score_logits,
    )


def pointer_only(memory: Memory) -> Memory:
    """The memory without its spatial features (only its object pointer is used)."""
    if memory.maskmem_features.numel() == 0:
        return memory
    return Memory(
        memory.frame_index,
        memory.is_conditioning,
        memory.maskmem_features.new_empty(0),
        memory.maskmem_pos_enc.new_empty(0),
        memory.obj_ptr,
        memory.object_score_logits,
    )


def prune_streaming(
    tracks: Iterable[ObjectTrack],
    frame: int,
    reverse: bool,
    *,
    spatial_back: int,
    ptr_back: int,
) -> None:
    """Streaming mode: drop what tracking after ``frame`` (in this direction) can no
    longer read: spatial memories ``spatial_back`` or more frames behind (kept as
    pointer-only memories), memories and tracking records ``ptr_back`` or more frames
    behind (beyond the pointer window), and the mask logits of every tracked frame but
    ``frame``. Prompted frames are kept whole."""
    step = -1 if reverse else 1
    for track in tracks:
        for t in list(track.non_cond):
            if t in track.prompts:
                continue
            back = (frame - t) * step
            if back < 0:
                continue  # ahead of the tracking direction
            if back >= ptr_back:
                del track.non_cond[t]
                continue
            out = track.non_cond[t]
            if back >= spatial_back and out.memory is not None:
                out.memory = pointer_only(out.memory)
            if t != frame:  # results are not kept; a fresh tensor frees the old one
                out.low_res_logits = out.low_res_logits.new_empty(0)
        for t in list(track.tracked):
            if (frame - t) * step >= ptr_back:
                del track.tracked[t]


__all__ = [
    "BatchedMemories",
    "by_frame",
    "group_by_memory_frames",
    "memory_frames",
    "own_rows",
    "pointer_only",
    "prune_streaming",
    "relabelled",
    "select_memories",
    "stored_memories",
]
