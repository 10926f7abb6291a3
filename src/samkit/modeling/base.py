"""What every samkit model shares: preprocessing constants and device plumbing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from samkit.modeling.mask_decoder import PreparedImage


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

    def prepare_decoding(
        self, image_embeddings: torch.Tensor, reuse: PreparedImage | None = None
    ) -> PreparedImage | None:
        """The prompt-independent decoder work for one ``(1, C, h, w)`` embedding.

        Pass the result as ``prepared=`` to ``decode`` / ``decode_selected`` with the same
        embedding tensor: prompts without a mask prompt then skip that work (see
        :class:`~samkit.modeling.mask_decoder.PreparedImage`). ``reuse`` is returned
        as it is when it is still valid for this embedding (same tensor, unchanged
        weights). ``None`` with gradients on.
        """
        _, dense = self.prompt_encoder(points=None, boxes=None, masks=None)
        pe = self.prompt_encoder.get_dense_pe()
        if self.mask_decoder.prepared_for(reuse, image_embeddings, pe, dense) is not None:
            return reuse
        return self.mask_decoder.prepare(image_embeddings, pe, dense)
