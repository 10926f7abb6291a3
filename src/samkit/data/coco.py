"""COCO instance-segmentation annotations as a sequence of :class:`Sample`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from samkit.data.sa1b import load_rgb
from samkit.data.types import Sample
from samkit.masks import decode_rle_objects

__all__ = ["CocoInstancesDataset", "coco_segmentation_to_mask", "coco_segmentation_to_rle"]


def coco_segmentation_to_rle(segmentation: Any, height: int, width: int) -> Any:
    """One COCO ``segmentation`` as a pycocotools compressed RLE object.

    Accepts polygons (list of flat ``[x0, y0, x1, y1, ...]`` lists, image pixels; parts are
    merged), uncompressed RLE (``counts`` list) and compressed RLE (``counts`` str/bytes),
    exactly like ``pycocotools.coco.COCO.annToRLE``.
    """
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation.get("counts"), list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return segmentation


def coco_segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Rasterize one COCO ``segmentation`` (see :func:`coco_segmentation_to_rle`) to an
    ``(H, W)`` bool mask, exactly like ``pycocotools.coco.COCO.annToMask``."""
    rle = coco_segmentation_to_rle(segmentation, height, width)
    return decode_rle_objects(rle).astype(bool)


class CocoInstancesDataset:
    """One :class:`Sample` per image of a COCO ``instances_*.json``.

    Each sample holds all non-crowd instance masks of the image (annotation order), in the
    image frame; ``image_id`` is ``str(coco image id)`` and ``levels`` is ``None``.
    Images with no non-crowd annotation are skipped (nothing to prompt). Crowd regions
    (``iscrowd=1``) are dropped, as are instances whose mask rasterizes to zero pixels, so a
    sample may rarely end up with ``M = 0``. Images are ordered by COCO id.

    Args:
        images_dir: folder holding the ``file_name`` of each image.
        annotations_json: path to the COCO annotations file.
        transform: optional callable applied to each sample.
    """

    def __init__(
        self,
        images_dir: str | os.PathLike[str],
        annotations_json: str | os.PathLike[str],
        *,
        transform: Callable[[Sample], Sample] | None = None,
    ) -> None:
        self.images_dir = Path(images_dir)
        doc = json.loads(Path(annotations_json).read_text(encoding="utf-8"))
        images: dict[int, Mapping[str, Any]] = {img["id"]: img for img in doc.get("images", [])}
        anns: dict[int, list[Mapping[str, Any]]] = {}
        for ann in doc.get("annotations", []):
            if ann.get("iscrowd", 0):
                continue
            anns.setdefault(ann["image_id"], []).append(ann)
        self.image_ids: list[int] = sorted(i for i in anns if i in images)
        self._images = images
        self._anns = anns
        self.transform = transform

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> Sample:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        image_id = self.image_ids[index]
        info = self._images[image_id]
        size = (info["height"], info["width"]) if "height" in info and "width" in info else None
        image = load_rgb(self.images_dir / info["file_name"], size)
        height, width = image.shape[:2]
        if (info.get("height", height), info.get("width", width)) != (height, width):
            raise ValueError(
                f"image {info['file_name']} is {(height, width)}, annotations say "
                f"{(info.get('height'), info.get('width'))}"
            )
        masks = [
            coco_segmentation_to_mask(a["segmentation"], height, width)
            for a in self._anns[image_id]
        ]
        masks = [m for m in masks if m.any()]
        stacked = np.stack(masks) if masks else np.zeros((0, height, width), dtype=bool)
        sample = Sample(image=image, masks=stacked, image_id=str(image_id), levels=None)
        return self.transform(sample) if self.transform is not None else sample
