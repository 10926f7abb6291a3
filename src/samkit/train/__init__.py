"""Training utilities: the SAM paper's losses and its simulated interactive prompting,
and the SAM 2 video trainer (:mod:`samkit.train.video`).

Inference code must never import this package; it may import :mod:`samkit.inference` and
:mod:`samkit.modeling`.
"""

from samkit.train.config import TrainConfig, lr_factor
from samkit.train.embedding_cache import EmbeddingCache
from samkit.train.losses import (
    LossOutput,
    dice_loss,
    mask_iou,
    resize_targets,
    sam_loss,
    sigmoid_focal_loss,
)
from samkit.train.params import build_param_groups
from samkit.train.prompts import (
    InteractiveSimulator,
    Prompt,
    RoundRecord,
    make_schedule,
    run_interaction,
)
from samkit.train.trainer import Trainer
from samkit.train.video import VideoTrainConfig, VideoTrainer, clip_loss

__all__ = [
    "EmbeddingCache",
    "InteractiveSimulator",
    "LossOutput",
    "Prompt",
    "RoundRecord",
    "TrainConfig",
    "Trainer",
    "VideoTrainConfig",
    "VideoTrainer",
    "build_param_groups",
    "clip_loss",
    "dice_loss",
    "lr_factor",
    "make_schedule",
    "mask_iou",
    "resize_targets",
    "run_interaction",
    "sam_loss",
    "sigmoid_focal_loss",
]
