"""The official ``SAM2AutomaticMaskGenerator`` interface on :class:`samkit.MaskGenerator`
(see :mod:`samkit.compat`). ``min_mask_region_area`` always applies (the official
generator needs its CUDA extension for it)."""

from __future__ import annotations

from typing import Any

import numpy as np

from samkit.compat._generator import GENERATOR_FIELDS, CompatGenerator
from samkit.compat.sam2_build import build_sam2_hf
from samkit.compat.sam2_predictor import SAM2ImagePredictor
from samkit.errors import InvalidArgument
from samkit.modeling.sam2 import Sam2

__all__ = ["SAM2AutomaticMaskGenerator"]


class SAM2AutomaticMaskGenerator(CompatGenerator):
    """The official ``SAM2AutomaticMaskGenerator`` interface on :class:`samkit.MaskGenerator`.

    Arguments and defaults are the official ones; records are the official dicts
    (``segmentation``, ``area``, ``bbox``, ``predicted_iou``, ``point_coords``,
    ``stability_score``, ``crop_box``). ``mask_threshold`` must be 0.0 (samkit
    binarises at the model's threshold). Settings are read and written through to the
    underlying generator (``self.generator``).
    """

    forwarded = (*GENERATOR_FIELDS, "multimask_output", "use_m2m")

    def __init__(
        self,
        model: Sam2,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.8,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        mask_threshold: float = 0.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        use_m2m: bool = False,
        multimask_output: bool = True,
        **kwargs: Any,
    ) -> None:
        # the official arguments are MaskGenerator's, by the same names (but the model,
        # a threshold samkit fixes, and options meant for the model builder)
        settings = {
            k: v
            for k, v in locals().items()
            if k not in ("self", "model", "mask_threshold", "kwargs")
        }
        if mask_threshold != 0.0:
            raise InvalidArgument(
                f"mask_threshold={mask_threshold!r} is not supported: samkit's generator "
                "binarises masks at the model's threshold (0.0)"
            )
        self.predictor = SAM2ImagePredictor(
            model, max_hole_area=min_mask_region_area, max_sprinkle_area=min_mask_region_area
        )
        self.mask_threshold = mask_threshold
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self._wrap(model, settings)

    @classmethod
    def from_pretrained(cls, model_id: str, **kwargs: Any) -> SAM2AutomaticMaskGenerator:
        """A generator for a published model id (see :func:`build_sam2_hf`); ``kwargs``
        go to both the builder and the constructor, as officially."""
        return cls(build_sam2_hf(model_id, **kwargs), **kwargs)
