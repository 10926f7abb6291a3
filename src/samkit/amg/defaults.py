"""Default filtering thresholds of :class:`~samkit.amg.MaskGenerator`: the model
preset's calibrated ones, else its family's official ones."""

from __future__ import annotations

from samkit.configs import MaskGeneratorDefaults, get_preset
from samkit.errors import UnknownModel
from samkit.modeling import SamModel

__all__ = ["generator_defaults"]

# Default filtering thresholds per model family (the official values of each release).
_FAMILY_DEFAULTS = {
    "sam": MaskGeneratorDefaults(pred_iou_thresh=0.88, stability_score_thresh=0.95),
    "sam2": MaskGeneratorDefaults(pred_iou_thresh=0.8, stability_score_thresh=0.95),
}


def generator_defaults(model: SamModel) -> MaskGeneratorDefaults:
    """The thresholds :class:`MaskGenerator` uses when none are given: those calibrated
    for the model's registered preset (``ModelPreset.amg``), else its family's official
    ones (SAM 1: predicted IoU 0.88, SAM 2: 0.8; stability 0.95 at offset 1.0)."""
    name = getattr(model, "name", None)
    try:
        calibrated = get_preset(name).amg if name is not None else None
    except UnknownModel:
        calibrated = None
    if calibrated is not None:
        return calibrated
    family = getattr(model, "family", "sam")
    return _FAMILY_DEFAULTS.get(family, _FAMILY_DEFAULTS["sam"])
