"""Data types of :mod:`samkit.amg`: the output records, the progress and timing objects
of :class:`~samkit.amg.MaskGenerator`, and the compact candidate-mask set it works on."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

import torch

from samkit.masks import box_xyxy_to_xywh, rle_area

__all__ = ["AMGStats", "AMGUpdate", "MaskRecord", "OutputMode"]

OutputMode = Literal["binary_mask", "uncompressed_rle", "coco_rle"]
_OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


class MaskRecord(TypedDict):
    """One generated mask (the official record fields; see the :mod:`samkit.amg` docstring)."""

    segmentation: Any
    area: int
    bbox: list[int]
    predicted_iou: float
    point_coords: list[list[float]]
    stability_score: float
    crop_box: list[int]


@dataclass
class AMGStats:
    """Where the time of one :meth:`MaskGenerator.generate` call went (seconds)."""

    encoder_s: float = 0.0
    decoder_s: float = 0.0
    postprocess_s: float = 0.0
    num_points: int = 0
    num_candidates: int = 0  # masks that passed the IoU, stability and edge filters
    num_masks: int = 0

    @property
    def after_encoder_s(self) -> float:
        """Everything after the image encoder: decoding, filtering, NMS, encoding."""
        return self.decoder_s + self.postprocess_s


@dataclass
class AMGUpdate:
    """One step of :meth:`MaskGenerator.stream`.

    Attributes:
        crop_index: index of the crop being processed (0 = the whole image).
        num_crops: number of crops.
        batch_index: index of the point batch just decoded within the crop.
        num_batches: number of point batches of this crop.
        candidates: masks of this batch that passed the per-batch filters (before NMS),
            as records in the image frame (``segmentation`` is an uncompressed RLE).
        records: ``None`` until the last update, which carries the final records
            (identical to :meth:`MaskGenerator.generate`).
        stats: running timings.
    """

    crop_index: int
    num_crops: int
    batch_index: int
    num_batches: int
    candidates: list[MaskRecord]
    records: list[MaskRecord] | None
    stats: AMGStats


@dataclass
class _MaskSet:
    """Candidate masks of one crop or image, stored compactly (RLE in the image frame)."""

    rles: list[dict[str, Any]] = field(default_factory=list)
    boxes: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 4, dtype=torch.int64))
    iou_preds: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    points: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 2, dtype=torch.float64))
    stability: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    crop_boxes: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 4, dtype=torch.int64))

    def __len__(self) -> int:
        return len(self.rles)

    @staticmethod
    def concat(parts: Sequence[_MaskSet]) -> _MaskSet:
        parts = [p for p in parts if len(p)]
        if not parts:
            return _MaskSet()
        return _MaskSet(
            rles=[r for p in parts for r in p.rles],
            boxes=torch.cat([p.boxes for p in parts]),
            iou_preds=torch.cat([p.iou_preds for p in parts]),
            points=torch.cat([p.points for p in parts]),
            stability=torch.cat([p.stability for p in parts]),
            crop_boxes=torch.cat([p.crop_boxes for p in parts]),
        )

    def select(self, keep: torch.Tensor) -> _MaskSet:
        """Subset (boolean mask or index tensor, order kept as given)."""
        if keep.dtype == torch.bool:
            keep = torch.nonzero(keep).flatten()
        idx = keep.tolist()
        return _MaskSet(
            rles=[self.rles[i] for i in idx],
            boxes=self.boxes[keep],
            iou_preds=self.iou_preds[keep],
            points=self.points[keep],
            stability=self.stability[keep],
            crop_boxes=self.crop_boxes[keep],
        )

    def records(self, segmentations: Sequence[Any]) -> list[MaskRecord]:
        out: list[MaskRecord] = []
        boxes = box_xyxy_to_xywh(self.boxes).tolist()
        crops = box_xyxy_to_xywh(self.crop_boxes).tolist()
        for i, rle in enumerate(self.rles):
            out.append(
                MaskRecord(
                    segmentation=segmentations[i],
                    area=rle_area(rle),
                    bbox=boxes[i],
                    predicted_iou=float(self.iou_preds[i]),
                    point_coords=[self.points[i].tolist()],
                    stability_score=float(self.stability[i]),
                    crop_box=crops[i],
                )
            )
        return out
