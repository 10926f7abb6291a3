"""Typed samples shared by datasets, the trainer and the evaluation protocols."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One image with its instance masks.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        masks: ``(M, H, W)`` bool, one per annotated instance (same frame as ``image``).
        image_id: stable identifier (file stem or COCO id as a string).
        levels: optional ``(M,)`` int nesting level per mask for synthetic data
            (0 = whole object, 1 = part, 2 = subpart); ``None`` for real datasets.
    """

    image: np.ndarray
    masks: np.ndarray
    image_id: str
    levels: np.ndarray | None = None
