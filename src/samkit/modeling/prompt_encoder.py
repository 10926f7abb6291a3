"""Prompt encoder shared by SAM 1, MobileSAM and SAM 2.

Turns points, boxes and a low-resolution mask into sparse tokens ``(B, N, C)`` and a dense
embedding ``(B, C, h, w)``. Coordinates are in the model's *input* frame (the resized
image, ``input_image_size`` pixels, x right, y down). Keys follow the official checkpoints:
``pe_layer.positional_encoding_gaussian_matrix``, ``point_embeddings.{0..3}``,
``not_a_point_embed``, ``mask_downscaling.{0,1,3,4,6}``, ``no_mask_embed``.
"""

from __future__ import annotations

import torch
from torch import nn

from samkit.layers.common import LayerNorm2d
from samkit.layers.position import PositionEmbeddingRandom

# Point labels understood by the prompt encoder.
LABEL_PAD = -1
LABEL_NEGATIVE = 0
LABEL_POSITIVE = 1
LABEL_BOX_TOP_LEFT = 2
LABEL_BOX_BOTTOM_RIGHT = 3


class PromptEncoder(nn.Module):
    """Encode prompts for the mask decoder.

    ``box_corner_labels`` (SAM 2): points labelled 2 / 3 get the box-corner embeddings,
    so a box can also be given as two labelled points. SAM 1's encoder embeds only
    labels -1, 0 and 1 (other labels keep the bare positional encoding), and so does
    this one without the flag.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int,
        box_corner_labels: bool = True,
    ) -> None:
        super().__init__()
        self.box_corner_labels = box_corner_labels
        self.embed_dim = embed_dim
        self.image_embedding_size = image_embedding_size
        self.input_image_size = input_image_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.num_point_embeddings = 4  # negative, positive, box top-left, box bottom-right
        self.point_embeddings = nn.ModuleList(
            nn.Embedding(1, embed_dim) for _ in range(self.num_point_embeddings)
        )
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)
        self._dense_pe_cache: tuple[tuple, torch.Tensor] | None = None

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image-embedding grid, ``(1, C, h, w)``.

        It depends only on the (loaded) Fourier matrix, so it is cached and recomputed
        when that buffer changes (new weights, another device or dtype) or in training.
        """
        matrix = self.pe_layer.positional_encoding_gaussian_matrix
        version = -1 if matrix.is_inference() else matrix._version
        key = (matrix.data_ptr(), version, matrix.device, matrix.dtype)
        cached = self._dense_pe_cache
        if self.training or torch.is_grad_enabled() or cached is None or cached[0] != key:
            pe = self.pe_layer(self.image_embedding_size).unsqueeze(0)
            if self.training or torch.is_grad_enabled():
                return pe
            # Cached channels-last: the decoder reads it token-major ((1, h*w, C)), which
            # is then a view rather than a transposing copy on every decode.
            pe = pe.contiguous(memory_format=torch.channels_last)
            self._dense_pe_cache = cached = (key, pe)
        return cached[1]

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """``points`` (B, N, 2) in input pixels, ``labels`` (B, N) -> (B, N[+1], C)."""
        points = points + 0.5  # pixel centres
        if pad:
            points = torch.cat([points, points.new_zeros(points.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, -labels.new_ones(labels.shape[0], 1)], dim=1)
        emb = self.pe_layer.forward_with_coords(points, self.input_image_size)
        labels = labels[..., None]
        emb = torch.where(labels == LABEL_PAD, self.not_a_point_embed.weight, emb)
        tables = self.point_embeddings if self.box_corner_labels else self.point_embeddings[:2]
        for value, table in enumerate(tables):
            emb = torch.where(labels == value, emb + table.weight, emb)
        return emb

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """``boxes`` (B, 4) XYXY in input pixels -> two corner tokens (B, 2, C)."""
        coords = (boxes + 0.5).reshape(-1, 2, 2)
        emb = self.pe_layer.forward_with_coords(coords, self.input_image_size)
        emb[:, 0, :] += self.point_embeddings[LABEL_BOX_TOP_LEFT].weight[0]
        emb[:, 1, :] += self.point_embeddings[LABEL_BOX_BOTTOM_RIGHT].weight[0]
        return emb

    def _embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """``masks`` (B, 1, 4h, 4w) logits -> (B, C, h, w)."""
        return self.mask_downscaling(masks)

    @staticmethod
    def _batch_size(
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> int:
        if points is not None:
            return points[0].shape[0]
        if boxes is not None:
            return boxes.shape[0]
        if masks is not None:
            return masks.shape[0]
        return 1

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return sparse ``(B, N, C)`` and dense ``(B, C, h, w)`` embeddings.

        A padding point is appended to point prompts when no box is given, as in the
        official encoder (the decoder was trained that way).
        """
        bs = self._batch_size(points, boxes, masks)
        weight = self.point_embeddings[0].weight
        sparse = weight.new_empty((bs, 0, self.embed_dim))
        if points is not None:
            coords, labels = points
            sparse = torch.cat([sparse, self._embed_points(coords, labels, pad=boxes is None)], 1)
        if boxes is not None:
            sparse = torch.cat([sparse, self._embed_boxes(boxes)], dim=1)
        if masks is not None:
            dense = self._embed_masks(masks)
        else:
            h, w = self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, h, w)
        return sparse, dense
