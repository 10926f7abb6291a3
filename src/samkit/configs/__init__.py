"""Frozen dataclass presets and the model registry (nothing runs at import)."""

from samkit.configs.base import (
    MaskDecoderConfig,
    MaskGeneratorDefaults,
    ModelPreset,
    PromptEncoderConfig,
    SamConfig,
    TinyViTConfig,
    ViTConfig,
    WeightSpec,
)
from samkit.configs.registry import get_preset, list_models, register

__all__ = [
    "MaskDecoderConfig",
    "MaskGeneratorDefaults",
    "ModelPreset",
    "PromptEncoderConfig",
    "SamConfig",
    "TinyViTConfig",
    "ViTConfig",
    "WeightSpec",
    "get_preset",
    "list_models",
    "register",
]
