"""What the two official-interface mask generators of :mod:`samkit.compat` share: the
wrapped :class:`samkit.MaskGenerator`, its records as the official dicts, settings read
and written through to it, and the model's train / eval mode left as it was."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["GENERATOR_FIELDS", "CompatGenerator", "mode_kept"]

#: Settings of both official generators, forwarded to the samkit generator.
GENERATOR_FIELDS = (
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
)


@contextlib.contextmanager
def mode_kept(model: nn.Module) -> Iterator[None]:
    """Restore ``model``'s train / eval mode on exit: samkit's predictors and generators
    switch it to eval, the official ones leave it alone."""
    training = model.training
    try:
        yield
    finally:
        model.train(training)


class CompatGenerator:
    """Base of the official-interface generators: ``self.generator`` is the samkit one."""

    #: settings read and written through to ``self.generator`` (see ``__init_subclass__``)
    forwarded: tuple[str, ...] = GENERATOR_FIELDS

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls.forwarded:
            setattr(cls, name, _forwarded(name))

    def _wrap(self, model: nn.Module, settings: Mapping[str, Any]) -> None:
        """``self.generator = MaskGenerator(model, **settings)``, the model's mode kept."""
        from samkit.amg import MaskGenerator

        with mode_kept(model):
            self.generator = MaskGenerator(model, **settings)

    @torch.no_grad()
    def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
        """All masks of an ``HxWx3`` uint8 RGB image, as a list of record dicts."""
        return [dict(r) for r in self.generator.generate(image)]


def _forwarded(name: str) -> property:
    def get(self: CompatGenerator) -> Any:
        return getattr(self.generator, name)

    def set_(self: CompatGenerator, value: Any) -> None:
        setattr(self.generator, name, value)

    return property(get, set_, doc=f"``{name}`` of the underlying samkit generator.")
