"""The official ``SAM2AutomaticMaskGenerator`` interface on :class:`samkit.MaskGenerator`
(see :mod:`samkit.compat`). ``min_mask_region_area`` always applies (the official
generator needs its CUDA extension for it)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from samkit.compat.sam2_build import build_sam2_hf
from samkit.compat.sam2_predictor import SAM2ImagePredictor
from samkit.modeling.sam2 import Sam2

__all__ = ["SAM2AutomaticMaskGenerator"]

_GENERATOR_FIELDS = (
    "point_grids",
    "points_per_batch",
    "pred_iou_thresh",
    "stability_score_thresh",
    "stability_score_offset",
    "box_nms_thresh",
    "crop_n_layers",
    "crop_nms_thresh",
    "crop_overlap_ratio",
    "min_mask_region_area",
    "output_mode",
    "multimask_output",
    "use_m2m",
)


class SAM2AutomaticMaskGenerator:
    """The official ``SAM2AutomaticMaskGenerator`` interface on :class:`samkit.MaskGenerator`.

    Arguments and defaults are the official ones; records are the official dicts
    (``segmentation``, ``area``, ``bbox``, ``predicted_iou``, ``point_coords``,
    ``stability_score``, ``crop_box``). ``mask_threshold`` must be 0.0 (samkit
    binarises at the model's threshold). Settings are read and written through to the
    underlying generator (``self.generator``).
    """

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
        from samkit.amg import MaskGenerator

        if mask_threshold != 0.0:
            raise ValueError(
                f"mask_threshold={mask_threshold!r} is not supported: samkit's generator "
                "binarises masks at the model's threshold (0.0)"
            )
        self.predictor = SAM2ImagePredictor(
            model, max_hole_area=min_mask_region_area, max_sprinkle_area=min_mask_region_area
        )
        self.mask_threshold = mask_threshold
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        training = model.training  # samkit's generator puts the model in eval mode
        self.generator = MaskGenerator(
            model,
            points_per_side=points_per_side,
            points_per_batch=points_per_batch,
            pred_iou_thresh=pred_iou_thresh,
            stability_score_thresh=stability_score_thresh,
            stability_score_offset=stability_score_offset,
            box_nms_thresh=box_nms_thresh,
            crop_n_layers=crop_n_layers,
            crop_nms_thresh=crop_nms_thresh,
            crop_overlap_ratio=crop_overlap_ratio,
            crop_n_points_downscale_factor=crop_n_points_downscale_factor,
            point_grids=point_grids,
            min_mask_region_area=min_mask_region_area,
            output_mode=output_mode,  # type: ignore[arg-type]
            multimask_output=multimask_output,
            use_m2m=use_m2m,
        )
        model.train(training)  # the official generator leaves the mode alone

    @classmethod
    def from_pretrained(cls, model_id: str, **kwargs: Any) -> SAM2AutomaticMaskGenerator:
        """A generator for a published model id (see :func:`build_sam2_hf`); ``kwargs``
        go to both the builder and the constructor, as officially."""
        return cls(build_sam2_hf(model_id, **kwargs), **kwargs)

    @torch.no_grad()
    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """All masks of an ``HxWx3`` uint8 RGB image, as a list of record dicts."""
        return [dict(r) for r in self.generator.generate(image)]


def forward_settings(cls: type, names: tuple[str, ...]) -> None:
    """Give ``cls`` a property per name that reads and writes ``self.generator.<name>``
    (the compat generators' settings live on the samkit generator they wrap)."""

    def forward(name: str) -> property:
        def get(self: Any) -> Any:
            return getattr(self.generator, name)

        def set_(self: Any, value: Any) -> None:
            setattr(self.generator, name, value)

        return property(get, set_, doc=f"``{name}`` of the underlying samkit generator.")

    for name in names:
        setattr(cls, name, forward(name))


forward_settings(SAM2AutomaticMaskGenerator, _GENERATOR_FIELDS)
