"""What every samkit model shares: preprocessing constants and device plumbing."""

from __future__ import annotations

import torch
from torch import nn


class PromptableModel(nn.Module):
    """Base of :class:`~samkit.modeling.sam.Sam` and :class:`~samkit.modeling.sam2.Sam2`.

    Holds the per-channel ``pixel_mean`` / ``pixel_std`` as non-persistent ``(3, 1, 1)``
    buffers (official checkpoints do not store them) and the registry ``name``.
    """

    mask_threshold: float = 0.0
    image_format: str = "RGB"

    def __init__(
        self, pixel_mean: tuple[float, float, float], pixel_std: tuple[float, float, float]
    ) -> None:
        super().__init__()
        self.name: str | None = None  # registry name, set by build_model / load_model
        self._pixel_stats = (tuple(pixel_mean), tuple(pixel_std))
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    def init_non_persistent_buffers(self) -> None:
        """Recompute buffers that checkpoints do not store (after a meta-device build).

        Submodules with their own ``init_non_persistent_buffers`` are refreshed too.
        """
        device = next(self.parameters()).device
        mean, std = self._pixel_stats
        self.pixel_mean = torch.tensor(mean, device=device).view(-1, 1, 1)
        self.pixel_std = torch.tensor(std, device=device).view(-1, 1, 1)
        for module in self.modules():
            if module is not self and hasattr(module, "init_non_persistent_buffers"):
                module.init_non_persistent_buffers()

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device
