"""Training utilities: the SAM paper's losses and its simulated interactive prompting.

Inference code must never import this package; it may import :mod:`samkit.inference` and
:mod:`samkit.modeling`.
"""

from samkit.train.losses import (
    LossOutput,
    dice_loss,
    mask_iou,
    resize_targets,
    sam_loss,
    sigmoid_focal_loss,
)
from samkit.train.prompts import (
    InteractiveSimulator,
    Prompt,
    RoundRecord,
    make_schedule,
    run_interaction,
)

__all__ = [
    "InteractiveSimulator",
    "LossOutput",
    "Prompt",
    "RoundRecord",
    "dice_loss",
    "make_schedule",
    "mask_iou",
    "resize_targets",
    "run_interaction",
    "sam_loss",
    "sigmoid_focal_loss",
]
