"""Key maps between Hugging Face ``transformers`` SAM / SAM 2 checkpoints and official names.

samkit's models use the parameter names of the official ``segment-anything`` and ``sam2``
packages; the ``facebook/sam-vit-*``, ``facebook/sam2-hiera-*`` and ``facebook/sam2.1-hiera-*``
hub checkpoints store the same tensors under ``transformers`` names. Each conversion is an
explicit table of renaming rules plus a few documented special cases; a key no rule accounts
for raises :class:`~samkit.errors.CheckpointError`.

- :mod:`samkit.hf_keys.sam`: SAM 1 (``SamModel``), both directions;
- :mod:`samkit.hf_keys.sam2`: SAM 2 (``Sam2Model`` / ``Sam2VideoModel``), HF -> official;
- :mod:`samkit.hf_keys._rules`: the rule machinery both use.
"""

from samkit.hf_keys._rules import HF_PROMPT_PE_KEY, HF_SHARED_PE_KEY
from samkit.hf_keys.sam import (
    OFFICIAL_ONLY_CONSTANTS,
    OFFICIAL_PE_KEY,
    hf_to_official_sam,
    is_hf_sam_state_dict,
    official_to_hf_sam,
)
from samkit.hf_keys.sam2 import (
    HF_SAM2_POINT_EMBED_KEY,
    SAM2_HF_GROUPS,
    SAM2_OFFICIAL_PE_KEY,
    SAM2_VIDEO_ONLY_GROUPS,
    check_hf_sam2_complete,
    hf_to_official_sam2,
    is_hf_sam2_state_dict,
)

__all__ = [
    "HF_SHARED_PE_KEY",
    "HF_PROMPT_PE_KEY",
    "OFFICIAL_PE_KEY",
    "OFFICIAL_ONLY_CONSTANTS",
    "hf_to_official_sam",
    "official_to_hf_sam",
    "is_hf_sam_state_dict",
    "HF_SAM2_POINT_EMBED_KEY",
    "SAM2_OFFICIAL_PE_KEY",
    "SAM2_HF_GROUPS",
    "SAM2_VIDEO_ONLY_GROUPS",
    "hf_to_official_sam2",
    "check_hf_sam2_complete",
    "is_hf_sam2_state_dict",
]
