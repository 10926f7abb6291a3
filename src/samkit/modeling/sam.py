"""SAM 1 / MobileSAM composition: image encoder + prompt encoder + mask decoder.

Composition only: preprocessing constants live here as non-persistent buffers (they are
not in official checkpoints); prediction state lives in :mod:`samkit.inference`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from samkit.errors import InvalidImage
from samkit.inference.transforms import (
    image_to_tensor,
    postprocess_masks,
    preprocess_shape,
    resize_longest_side,
)
from samkit.modeling.base import PromptableModel
from samkit.modeling.mask_decoder import MaskDecoder, PreparedImage
from samkit.modeling.prompt_encoder import PromptEncoder


class Sam(PromptableModel):
    """A SAM-family model with a single-scale image encoder.

    ``image_encoder`` maps a normalised, padded ``(B, 3, S, S)`` image to ``(B, C, h, w)``.
    """

    family: str = "sam"
    low_res_logit_limit: float | None = None  # returned low-res logits are not clamped

    def __init__(
        self,
        *,
        image_encoder: nn.Module,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        pixel_mean: tuple[float, float, float],
        pixel_std: tuple[float, float, float],
        image_size: int = 1024,
    ) -> None:
        super().__init__(pixel_mean, pixel_std)
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.image_size = image_size

    @property
    def encoder_dtype(self) -> torch.dtype:
        """Dtype of the image encoder's weights (bf16 when loaded with ``dtype``)."""
        return next(self.image_encoder.parameters()).dtype

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise a ``(B, 3, H, W)`` 0-255 image and zero-pad it to ``(B, 3, S, S)``."""
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        return nn.functional.pad(x, (0, self.image_size - w, 0, self.image_size - h))

    def prepare_image(self, rgb: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """``(H, W, 3)`` uint8 RGB -> padded, normalised ``(1, 3, S, S)`` input and the
        resized size ``(H', W')`` (longest side ``S``, aspect kept, PIL bilinear)."""
        x = image_to_tensor(resize_longest_side(rgb, self.image_size), self.device)
        return self.preprocess(x), (int(x.shape[-2]), int(x.shape[-1]))

    #: Checkpoint-key prefixes of the parameters :meth:`embed_image` depends on.
    EMBEDDING_PREFIXES: tuple[str, ...] = ("image_encoder.",)

    def input_size_for(self, original_size: tuple[int, int]) -> tuple[int, int]:
        """``(H', W')`` an ``(H, W)`` image is resized to: longest side ``image_size``,
        aspect kept (the rest of the square input is padding)."""
        return preprocess_shape(original_size[0], original_size[1], self.image_size)

    def embed_image(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Embedding ``(B, C, h, w)`` and the (empty, for SAM 1) high-res features."""
        return self.encode_image(x), ()

    def postprocess_masks(
        self,
        low_res: torch.Tensor,
        input_size: tuple[int, int],
        original_size: tuple[int, int],
    ) -> torch.Tensor:
        """``(B, K, h, w)`` low-res logits -> ``(B, K, H, W)`` original-image logits."""
        return postprocess_masks(low_res, input_size, original_size, self.image_size)

    @torch.no_grad()
    def forward(
        self, batched_input: list[dict[str, Any]], multimask_output: bool
    ) -> list[dict[str, torch.Tensor]]:
        """The official ``Sam.forward``: prompts on already-resized images, end to end.

        Args:
            batched_input: one dict per image: ``image`` ``(3, H', W')`` 0-255 tensor
                already resized so that its longest side is ``image_size``
                (``ResizeLongestSide``), ``original_size`` ``(H, W)``, and optionally
                ``point_coords`` ``(B, N, 2)`` with ``point_labels`` ``(B, N)``,
                ``boxes`` ``(B, 4)`` and ``mask_inputs`` ``(B, 1, 4h, 4w)``, all in the
                resized image's frame.
            multimask_output: three candidates per prompt set instead of one.

        Returns:
            One dict per image: ``masks`` ``(B, K, H, W)`` bool, ``iou_predictions``
            ``(B, K)``, ``low_res_logits`` ``(B, K, 4h, 4w)``. Images are encoded one at
            a time (the official stacks them: same values, less memory).
        """
        outputs = []
        for record in batched_input:
            image = record["image"]
            if (
                not isinstance(image, torch.Tensor)
                or image.dim() != 3
                or image.shape[0] != 3
                or max(image.shape[-2:]) > self.image_size
            ):
                raise InvalidImage(
                    f"'image' must be a (3, H, W) tensor with H, W <= {self.image_size}"
                )
            x = self.preprocess(image[None].to(self.device, torch.float32))
            features = self.encode_image(x)
            points = None
            if "point_coords" in record:
                points = (record["point_coords"], record["point_labels"])
            low_res, iou = self.decode(
                features,
                points=points,
                boxes=record.get("boxes"),
                mask_input=record.get("mask_inputs"),
                multimask_output=multimask_output,
            )
            masks = self.postprocess_masks(
                low_res, tuple(image.shape[-2:]), tuple(record["original_size"])
            )
            outputs.append(
                {
                    "masks": masks > self.mask_threshold,
                    "iou_predictions": iou,
                    "low_res_logits": low_res,
                }
            )
        return outputs

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """Run the image encoder on a preprocessed image in the encoder's dtype.

        Returns ``(B, C, h, w)`` float32 features.
        """
        return self.image_encoder(x.to(self.encoder_dtype)).float()

    def decode_selected(
        self,
        image_embeddings: torch.Tensor,
        select: Callable[[torch.Tensor], torch.Tensor],
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        high_res_features: tuple[torch.Tensor, ...] = (),
        prepared: PreparedImage | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`decode` that computes mask logits only for the outputs ``select`` keeps.

        ``select`` maps the predicted IoU ``(B, K)`` to a ``(B, K)`` bool tensor. Returns
        IoU ``(B, K)``, keep ``(B, K)`` and the kept low-res logits ``(n_kept, 4h, 4w)``
        (row-major order of keep), equal to the corresponding outputs of :meth:`decode`.
        """
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        return self.mask_decoder.forward_selected(
            image_embeddings=image_embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            select=select,
            prepared=prepared,
        )

    def decode(
        self,
        image_embeddings: torch.Tensor,
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        high_res_features: tuple[torch.Tensor, ...] = (),
        prepared: PreparedImage | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder on ``(1 or B, C, h, w)`` embeddings.

        Prompts are in the model's input frame (``high_res_features`` must be empty for
        SAM 1; the argument keeps one signature across families). ``prepared``:
        :meth:`prepare_decoding` of ``image_embeddings`` (used without a mask prompt).
        Returns low-res logits ``(B, K, 4h, 4w)`` and predicted IoU ``(B, K)``.
        """
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        return self.mask_decoder(
            image_embeddings=image_embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            prepared=prepared,
        )
