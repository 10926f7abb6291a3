"""The model registry: preset name -> :class:`ModelPreset`.

Presets are plain frozen dataclasses built at import (no I/O, no torch work).
"""

from __future__ import annotations

from samkit.configs.base import (
    ModelPreset,
    PromptEncoderConfig,
    SamConfig,
    TinyViTConfig,
    ViTConfig,
    WeightSpec,
)
from samkit.errors import UnknownModel

_SAM1_HOST = "https://dl.fbaipublicfiles.com/segment_anything/"

_REGISTRY: dict[str, ModelPreset] = {}
_ALIASES: dict[str, str] = {}


def register(preset: ModelPreset) -> ModelPreset:
    """Add a preset (and its aliases) to the registry; names must be unique."""
    for name in (preset.name, *preset.aliases):
        if name in _REGISTRY or name in _ALIASES:
            raise ValueError(f"model name {name!r} is already registered")
    _REGISTRY[preset.name] = preset
    for alias in preset.aliases:
        _ALIASES[alias] = preset.name
    return preset


def list_models() -> list[str]:
    """Names of all registered presets, in registration order."""
    return list(_REGISTRY)


def get_preset(name: str) -> ModelPreset:
    """Look up a preset by name or alias; raises :class:`UnknownModel`."""
    key = _ALIASES.get(name, name)
    try:
        return _REGISTRY[key]
    except KeyError:
        known = ", ".join(list_models())
        raise UnknownModel(f"unknown model {name!r}; known models: {known}") from None


register(
    ModelPreset(
        name="sam-vit-b",
        config=SamConfig(encoder=ViTConfig(768, 12, 12, (2, 5, 8, 11))),
        weights=WeightSpec(
            url=_SAM1_HOST + "sam_vit_b_01ec64.pth",
            filename="sam_vit_b_01ec64.pth",
            sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
            size=375042383,
            hf_id="facebook/sam-vit-base",
        ),
        description="SAM ViT-B (91M encoder parameters)",
        aliases=("vit_b",),
    )
)
register(
    ModelPreset(
        name="sam-vit-l",
        config=SamConfig(encoder=ViTConfig(1024, 24, 16, (5, 11, 17, 23))),
        weights=WeightSpec(
            url=_SAM1_HOST + "sam_vit_l_0b3195.pth",
            filename="sam_vit_l_0b3195.pth",
            sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
            size=1249524607,
            hf_id="facebook/sam-vit-large",
        ),
        description="SAM ViT-L (308M encoder parameters)",
        aliases=("vit_l",),
    )
)
register(
    ModelPreset(
        name="sam-vit-h",
        config=SamConfig(encoder=ViTConfig(1280, 32, 16, (7, 15, 23, 31))),
        weights=WeightSpec(
            url=_SAM1_HOST + "sam_vit_h_4b8939.pth",
            filename="sam_vit_h_4b8939.pth",
            sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
            size=2564550879,
            hf_id="facebook/sam-vit-huge",
        ),
        description="SAM ViT-H (636M encoder parameters)",
        aliases=("vit_h", "default"),
    )
)
register(
    ModelPreset(
        name="mobile-sam",
        config=SamConfig(encoder=TinyViTConfig()),
        weights=WeightSpec(
            url="https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt",
            filename="mobile_sam.pt",
            sha256="6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
            size=40728226,
            hf_id=None,  # no transformers-format MobileSAM exists
        ),
        description="MobileSAM: TinyViT-5M encoder distilled from SAM ViT-H",
        aliases=("vit_t",),
    )
)

# samkit's own demo model: a 6-block ViT at a 256-pixel input with 8-pixel patches (a 32x32
# embedding) and the standard 256-d prompt encoder and mask decoder, trained from scratch
# on the synthetic nested-shapes generator by scripts/train_demo.sh. Its weights ship
# inside the package so samkit works offline; see docs/model_card_samkit_demo.md.
DEMO_CONFIG = SamConfig(
    encoder=ViTConfig(
        embed_dim=128,
        depth=6,
        num_heads=4,
        global_attn_indexes=(2, 5),
        window_size=8,
        patch_size=8,
        img_size=256,
    ),
    prompt_encoder=PromptEncoderConfig(image_embedding_size=32, input_image_size=256),
    image_size=256,
)
register(
    ModelPreset(
        name="samkit-demo",
        config=DEMO_CONFIG,
        weights=WeightSpec(
            url="",
            filename="samkit-demo.safetensors",
            sha256="ac9508be8e365ce8003b52eab47df43126bad16268f07d74accaadf4cb5aea31",
            size=12117896,
            bundled="assets/samkit-demo.safetensors",
        ),
        description="samkit's demo model, trained on synthetic shapes (not a general model)",
        aliases=("demo",),
    )
)
