"""The official ``sam2`` model builders (``build_sam2``, ``build_sam2_hf``) on samkit
presets: official config names and Hugging Face ids map to presets (see
:mod:`samkit.compat`). Differences from the official builders: there is no Hydra, so
``hydra_overrides_extra`` is refused, and ``device`` defaults to ``"cpu"``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from samkit.build import build_model, load_model
from samkit.errors import InvalidArgument, UnknownModel
from samkit.modeling.sam2 import Sam2

__all__ = ["build_sam2", "build_sam2_hf", "sam2_preset_for_config", "sam2_preset_for_hf_id"]

# ------------------------------------------------------------------------------ names
_SIZE_LETTERS = {"t": "tiny", "s": "small", "b+": "base-plus", "l": "large"}
_FAMILIES = ("sam2", "sam2.1")


def _config_table() -> dict[str, str]:
    """Every accepted spelling of an official config -> samkit preset name.

    ``configs/sam2.1/sam2.1_hiera_t.yaml``, ``sam2.1_hiera_t.yaml``, ``sam2.1_hiera_t``
    and ``configs/sam2.1/sam2.1_hiera_t`` all name ``sam2.1-hiera-tiny``; the SAM 2.0
    files also exist at the package root (``sam2_hiera_t.yaml``), the legacy spelling.
    """
    table: dict[str, str] = {}
    for family in _FAMILIES:
        for letter, size in _SIZE_LETTERS.items():
            stem = f"{family}_hiera_{letter}"
            for name in (stem, f"configs/{family}/{stem}"):
                table[name] = table[f"{name}.yaml"] = f"{family}-hiera-{size}"
    return table


_CONFIGS = _config_table()
_HF_MODEL_IDS = {
    f"facebook/{family}-hiera-{size}": f"{family}-hiera-{size}"
    for family in _FAMILIES
    for size in _SIZE_LETTERS.values()
}


def sam2_preset_for_config(config_file: str | os.PathLike[str]) -> str:
    """The samkit preset for an official config name; raises :class:`UnknownModel`."""
    name = os.fspath(config_file).replace("\\", "/")
    try:
        return _CONFIGS[name]
    except KeyError:
        known = ", ".join(sorted({k for k in _CONFIGS if k.startswith("configs/")}))
        raise UnknownModel(
            f"unknown SAM 2 config {name!r}; samkit maps the published model configs "
            f"(with or without the 'configs/<family>/' prefix and '.yaml'): {known}"
        ) from None


def sam2_preset_for_hf_id(model_id: str) -> str:
    """The samkit preset for an official Hugging Face model id; raises
    :class:`UnknownModel`."""
    try:
        return _HF_MODEL_IDS[model_id]
    except KeyError:
        known = ", ".join(_HF_MODEL_IDS)
        raise UnknownModel(f"unknown SAM 2 model id {model_id!r}; known ids: {known}") from None


# ------------------------------------------------------------------------------ builders
def _make(
    preset: str,
    *,
    checkpoint: str | os.PathLike[str] | None,
    pretrained: bool,
    device: str | torch.device = "cpu",
    mode: str = "eval",
    hydra_overrides_extra: Sequence[str] | None = None,
    apply_postprocessing: bool = True,
    **_ignored: Any,
) -> Sam2:
    if hydra_overrides_extra:
        raise InvalidArgument(
            "samkit has no Hydra, so hydra_overrides_extra is not supported (got "
            f"{list(hydra_overrides_extra)!r}); build a samkit.configs.Sam2Config instead "
            "and pass it to samkit.build_model / samkit.load_model"
        )
    if checkpoint is not None or pretrained:
        model = load_model(preset, checkpoint=checkpoint, device=device)
    else:
        model = build_model(preset, device=device)
    # The official builder turns on the single-mask -> multimask fallback through Hydra
    # overrides when post-processing is requested; without them the yaml leaves it off.
    model.sam_mask_decoder.dynamic_multimask_via_stability = bool(apply_postprocessing)
    model.train(mode != "eval")
    return model


def build_sam2(
    config_file: str | os.PathLike[str],
    ckpt_path: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    mode: str = "eval",
    hydra_overrides_extra: Sequence[str] | None = None,
    apply_postprocessing: bool = True,
    **kwargs: Any,
) -> Sam2:
    """Build the SAM 2 model of an official config name (e.g.
    ``"configs/sam2.1/sam2.1_hiera_l.yaml"``).

    With ``ckpt_path`` the official checkpoint (``{"model": state_dict}``) is loaded
    strictly; without it the weights are random, as in the official builder.
    ``apply_postprocessing=False`` turns off the decoder's fallback from an unstable
    single mask to the best multimask output. ``mode="eval"`` (the default) returns the
    model in eval mode, anything else in train mode. Extra keyword arguments are
    ignored (the official builder accepts and ignores them too).

    Raises:
        UnknownModel: ``config_file`` is not a published model's config.
        InvalidArgument: (a ``ValueError``) ``hydra_overrides_extra`` is not empty.
        CheckpointError: the checkpoint cannot be read or does not match.
    """
    return _make(
        sam2_preset_for_config(config_file),
        checkpoint=ckpt_path,
        pretrained=False,
        device=device,
        mode=mode,
        hydra_overrides_extra=hydra_overrides_extra,
        apply_postprocessing=apply_postprocessing,
    )


def build_sam2_hf(model_id: str, **kwargs: Any) -> Sam2:
    """Build a published model by its Hugging Face id (``"facebook/sam2.1-hiera-large"``).

    The weights come from :func:`samkit.load_model` (samkit's cache, or a download of the
    same official file, checked against its sha256). ``kwargs`` are
    :func:`build_sam2`'s (``device``, ``mode``, ``apply_postprocessing``, ...).
    """
    return _make(sam2_preset_for_hf_id(model_id), checkpoint=None, pretrained=True, **kwargs)
