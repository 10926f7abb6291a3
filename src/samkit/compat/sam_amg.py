"""The official ``segment_anything.SamAutomaticMaskGenerator`` interface on
:class:`samkit.MaskGenerator` (see :mod:`samkit.compat`)."""

from __future__ import annotations

import numpy as np

from samkit.compat._generator import CompatGenerator
from samkit.modeling.sam import Sam

__all__ = ["SamAutomaticMaskGenerator"]


class SamAutomaticMaskGenerator(CompatGenerator):
    """The official SAM 1 ``SamAutomaticMaskGenerator`` on :class:`samkit.MaskGenerator`.

    Arguments and defaults are the official ones (``pred_iou_thresh`` 0.88); records
    are the official dicts (``segmentation``, ``area``, ``bbox``, ``predicted_iou``,
    ``point_coords``, ``stability_score``, ``crop_box``). Settings are read and written
    through to the underlying generator (``self.generator``); the model's train / eval
    mode is left as it was, as officially.
    """

    def __init__(
        self,
        model: Sam,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
    ) -> None:
        # the official arguments are MaskGenerator's, by the same names
        settings = {k: v for k, v in locals().items() if k not in ("self", "model")}
        self._wrap(model, settings)
        self.predictor = self.generator.predictor
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
