"""SAM 2 video: per-frame tracking on a :class:`~samkit.modeling.sam2.Sam2` model.

:mod:`samkit.video.tracker` holds the stateless per-frame computation (frame features,
memory attention, memory encoding; the SAM heads in :mod:`samkit.video.sam_heads`) on the
typed objects of :mod:`samkit.video.state`; :mod:`samkit.video.memory_bank` chooses the
memories a frame attends to; :mod:`samkit.video.frames` maps frames and prompts into the
model's frame and masks back. The user-facing API is built on them:
:class:`VideoPredictor` (:mod:`samkit.video.predictor`) opens a :class:`VideoSession`
(:mod:`samkit.video.session`; its state and read-outs in :mod:`samkit.video.session_base`),
which takes prompts checked by :mod:`samkit.video.prompts` and yields :class:`FrameResult`
of :mod:`samkit.video.results`, reading frames through :mod:`samkit.video.sources` and
:mod:`samkit.video.io`.
"""

from samkit.video.frames import (
    HOLE_FILL_LOGIT,
    apply_non_overlapping_constraints,
    concat_points,
    fill_holes,
    list_video_frames,
    load_frame,
    mask_to_model,
    model_frame,
    points_to_model,
    prepare_frame,
    to_video_resolution,
    upsample_to_input,
)
from samkit.video.io import VideoFileReader, VideoFileWriter
from samkit.video.memory_bank import select_memories
from samkit.video.predictor import VideoPredictor
from samkit.video.results import FrameOutput, FrameResult, ObjectTrack, Prompt
from samkit.video.session import VideoSession
from samkit.video.state import (
    DEFAULT_OPTIONS,
    NO_OBJ_SCORE,
    FrameFeatures,
    Memory,
    MemorySelection,
    Points,
    TrackerOptions,
    TrackOutput,
    options_for,
)
from samkit.video.tracker import encode_frame, encode_memory, track_step, use_multimask

__all__ = [
    "DEFAULT_OPTIONS",
    "HOLE_FILL_LOGIT",
    "NO_OBJ_SCORE",
    "FrameFeatures",
    "FrameOutput",
    "FrameResult",
    "Memory",
    "MemorySelection",
    "ObjectTrack",
    "Points",
    "Prompt",
    "TrackOutput",
    "TrackerOptions",
    "VideoFileReader",
    "VideoFileWriter",
    "VideoPredictor",
    "VideoSession",
    "apply_non_overlapping_constraints",
    "concat_points",
    "encode_frame",
    "encode_memory",
    "fill_holes",
    "list_video_frames",
    "load_frame",
    "mask_to_model",
    "model_frame",
    "options_for",
    "points_to_model",
    "prepare_frame",
    "select_memories",
    "to_video_resolution",
    "track_step",
    "upsample_to_input",
    "use_multimask",
]
