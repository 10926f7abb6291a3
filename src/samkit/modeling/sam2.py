"""SAM 2 / SAM 2.1 composition: Hiera+FPN encoder, SAM heads, and the video modules.

Composition only. Attribute names reproduce the official checkpoint keys
(``image_encoder``, ``memory_attention``, ``memory_encoder``, ``sam_prompt_encoder``,
``sam_mask_decoder``, ``mask_downsample``, ``obj_ptr_proj``, ``obj_ptr_tpos_proj``,
``maskmem_tpos_enc``, ``no_mem_embed``, ``no_mem_pos_enc``, ``no_obj_ptr`` and, in 2.1,
``no_obj_embed_spatial``), so official files load strictly. The image path (this module)
and the video session (:mod:`samkit.video`) use the same object.

Frames: the model input is the image resized to a ``S x S`` square (aspect not kept),
so prompts map to the input frame by ``x * S / W`` and ``y * S / H``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from samkit.configs.base import Sam2Config
from samkit.inference.transforms import bilinear
from samkit.layers.common import MLP
from samkit.modeling.base import PromptableModel
from samkit.modeling.encoders.hiera import Sam2ImageEncoder
from samkit.modeling.mask_decoder import DecoderOutput, MaskDecoder, PreparedImage
from samkit.modeling.prompt_encoder import (
    LABEL_BOX_BOTTOM_RIGHT,
    LABEL_BOX_TOP_LEFT,
    PromptEncoder,
)

HighRes = tuple[torch.Tensor, torch.Tensor]


class Sam2(PromptableModel):
    """A SAM 2-family model (image and video).

    Image path: :meth:`prepare_image` -> :meth:`embed_image` -> :meth:`decode`.
    """

    family: str = "sam2"
    # the official image predictor returns low-res logits clamped to this magnitude
    low_res_logit_limit: float | None = 32.0

    def __init__(
        self,
        *,
        config: Sam2Config,
        image_encoder: Sam2ImageEncoder,
        memory_attention: nn.Module,
        memory_encoder: nn.Module,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
    ) -> None:
        super().__init__(config.pixel_mean, config.pixel_std)
        self.config = config
        self.image_size = config.image_size
        self.image_encoder = image_encoder
        self.memory_attention = memory_attention
        self.memory_encoder = memory_encoder
        self.sam_prompt_encoder = prompt_encoder
        self.sam_mask_decoder = mask_decoder
        hidden = config.neck.d_model
        mem_dim = config.memory.mem_dim
        self.hidden_dim = hidden
        self.mem_dim = mem_dim
        self.num_maskmem = config.num_maskmem
        # mask prompts for the object pointer of a mask-only frame (video)
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(config.num_maskmem, 1, 1, mem_dim))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, hidden))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, hidden))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, hidden))
        self.no_obj_embed_spatial: nn.Parameter | None = None
        if config.no_obj_embed_spatial:
            self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, mem_dim))
        self.obj_ptr_proj = MLP(hidden, hidden, hidden, 3)
        self.obj_ptr_tpos_proj: nn.Module = (
            nn.Linear(hidden, mem_dim) if config.proj_tpos_enc_in_obj_ptrs else nn.Identity()
        )

    # ------------------------------------------------------------ plumbing
    @property
    def prompt_encoder(self) -> PromptEncoder:
        """The SAM prompt encoder (same object as ``sam_prompt_encoder``)."""
        return self.sam_prompt_encoder

    @property
    def mask_decoder(self) -> MaskDecoder:
        """The SAM mask decoder (same object as ``sam_mask_decoder``)."""
        return self.sam_mask_decoder

    @property
    def encoder_dtype(self) -> torch.dtype:
        """Dtype of the image encoder's weights (bf16 when loaded with ``dtype``)."""
        return self.image_encoder.neck.convs[0].conv.weight.dtype

    # -------------------------------------------------------------- images
    def prepare_image(self, rgb: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """``(H, W, 3)`` uint8 RGB -> normalised ``(1, 3, S, S)`` input and its size.

        As the official transform: scale to 0-1, resize to the square with bilinear
        interpolation and antialiasing (what torchvision's ``Resize`` does on tensors),
        then ImageNet mean/std.
        """
        arr = np.ascontiguousarray(rgb)
        if not arr.flags.writeable:  # torch warns on read-only numpy buffers
            arr = arr.copy()
        x = torch.from_numpy(arr).to(self.device)
        x = x.permute(2, 0, 1).float().div(255.0).unsqueeze(0)
        s = self.image_size
        x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return (x - self.pixel_mean) / self.pixel_std, (s, s)

    #: Checkpoint-key prefixes of the parameters :meth:`embed_image` depends on: the
    #: encoder, the decoder's projections of the two high-resolution levels (folded into
    #: the encoder's output at inference) and the no-memory embedding added to the top one.
    EMBEDDING_PREFIXES: tuple[str, ...] = (
        "image_encoder.",
        "sam_mask_decoder.conv_s0.",
        "sam_mask_decoder.conv_s1.",
        "no_mem_embed",
    )

    def input_size_for(self, original_size: tuple[int, int]) -> tuple[int, int]:
        """``(S, S)``: SAM 2 resizes every image to the full square input (no padding)."""
        return (self.image_size, self.image_size)

    def forward_image(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Backbone features of a normalised ``(B, 3, S, S)`` batch, in float32.

        Returns the FPN levels highest resolution first, with the two high-resolution
        levels already projected by the decoder's ``conv_s0`` / ``conv_s1``:
        ``(B, C/8, S/4, S/4)``, ``(B, C/4, S/8, S/8)``, ``(B, C, S/16, S/16)``.
        """
        decoder = self.sam_mask_decoder
        x = x.to(self.encoder_dtype)
        # the neck's lateral convs and conv_s0/conv_s1 folded (see forward_projected); with
        # a bf16 encoder the folded product runs in fp32 on the bf16 trunk features
        heads = {0: decoder.conv_s0, 1: decoder.conv_s1}
        return [t.float() for t in self.image_encoder.forward_projected(x, heads)]

    def embed_image(self, x: torch.Tensor) -> tuple[torch.Tensor, HighRes]:
        """Single-image embedding: ``(B, C, h, w)`` with ``no_mem_embed`` added (no
        memory on a still image) and the high-resolution features ``(s0, s1)``."""
        s0, s1, top = self.forward_image(x)
        return top + self.no_mem_embed.reshape(1, -1, 1, 1), (s0, s1)

    def postprocess_masks(
        self,
        low_res: torch.Tensor,
        input_size: tuple[int, int],
        original_size: tuple[int, int],
    ) -> torch.Tensor:
        """``(B, K, h, w)`` low-res logits -> ``(B, K, H, W)`` original-image logits.

        The input is an unpadded square, so one bilinear resize suffices.
        """
        return bilinear(low_res.float(), original_size)

    # ------------------------------------------------------------- prompts
    @staticmethod
    def _merge_boxes(
        points: tuple[torch.Tensor, torch.Tensor] | None, boxes: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """SAM 2 encodes a box as two labelled corner points placed before the clicks."""
        if boxes is None:
            return points
        corners = boxes.reshape(-1, 2, 2)
        labels = torch.tensor(
            [[LABEL_BOX_TOP_LEFT, LABEL_BOX_BOTTOM_RIGHT]], device=boxes.device
        ).expand(corners.shape[0], 2)
        if points is None:
            return corners, labels
        coords, point_labels = points
        labels = labels.to(point_labels.dtype)
        return torch.cat([corners, coords], dim=1), torch.cat([labels, point_labels], dim=1)

    def _encode_prompts(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        mask_input: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        merged = self._merge_boxes(points, boxes)
        return self.sam_prompt_encoder(points=merged, boxes=None, masks=mask_input)

    def decode_full(
        self,
        image_embeddings: torch.Tensor,
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        high_res_features: HighRes | tuple = (),
        prepared: PreparedImage | None = None,
    ) -> DecoderOutput:
        """Prompt encoder + mask decoder; all outputs (tokens and object scores too).

        ``image_embeddings`` ``(1 or B, C, h, w)``; prompts in the input frame: points
        ``(B, P, 2)`` with labels ``(B, P)``, boxes ``(B, 4)`` XYXY, ``mask_input``
        ``(B, 1, 4h, 4w)`` logits; ``high_res_features`` from :meth:`embed_image`;
        ``prepared``: :meth:`prepare_decoding` of ``image_embeddings``.
        """
        sparse, dense = self._encode_prompts(points, boxes, mask_input)
        return self.sam_mask_decoder.forward_full(
            image_embeddings=image_embeddings,
            image_pe=self.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            high_res_features=tuple(high_res_features) or None,
            prepared=prepared,
        )

    def decode(
        self,
        image_embeddings: torch.Tensor,
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        high_res_features: HighRes | tuple = (),
        prepared: PreparedImage | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-res logits ``(B, K, 4h, 4w)`` and predicted IoU ``(B, K)``.

        With ``multimask_output=False`` an unstable single-mask output is replaced by the
        best multimask output (as the official image predictor does).
        """
        out = self.decode_full(
            image_embeddings,
            points,
            boxes,
            mask_input,
            multimask_output,
            high_res_features,
            prepared,
        )
        return out.masks, out.iou

    def decode_selected(
        self,
        image_embeddings: torch.Tensor,
        select: Callable[[torch.Tensor], torch.Tensor],
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        high_res_features: HighRes | tuple = (),
        prepared: PreparedImage | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`decode` computing logits only for the outputs ``select`` keeps; see
        :meth:`samkit.modeling.sam.Sam.decode_selected`."""
        sparse, dense = self._encode_prompts(points, boxes, mask_input)
        return self.sam_mask_decoder.forward_selected(
            image_embeddings=image_embeddings,
            image_pe=self.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            select=select,
            high_res_features=tuple(high_res_features) or None,
            prepared=prepared,
        )
