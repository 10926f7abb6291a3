"""COCO instance-segmentation annotations as a sequence of :class:`Sample`."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from samkit.data.sa1b import load_rgb
from samkit.data.types import Sample
from samkit.errors import InvalidDataset
from samkit.masks import decode_rle_objects
from samkit.masks.rle import check_coco_rle

__all__ = [
    "CocoInstancesDataset",
    "check_coco_segmentation",
    "coco_segmentation_to_mask",
    "coco_segmentation_to_rle",
]


def coco_segmentation_to_rle(segmentation: Any, height: int, width: int) -> Any:
    """One COCO ``segmentation`` as a pycocotools compressed RLE object.

    Accepts polygons (list of flat ``[x0, y0, x1, y1, ...]`` lists, image pixels; parts are
    merged), uncompressed RLE (``counts`` list) and compressed RLE (``counts`` str/bytes),
    exactly like ``pycocotools.coco.COCO.annToRLE``. Anything else (including polygons
    of fewer than 3 points, which pycocotools cannot rasterise), and RLEs whose size is not the
    image's or whose runs do not cover it exactly, is refused before pycocotools sees it
    (its C code trusts the input).

    Raises:
        InvalidDataset: what is wrong with the segmentation.
    """
    check_coco_segmentation(segmentation, height, width)
    try:
        if isinstance(segmentation, list):
            return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        if isinstance(segmentation["counts"], list):
            return mask_utils.frPyObjects(dict(segmentation), height, width)
        return segmentation
    except ValueError as exc:
        raise InvalidDataset(str(exc)) from None


def check_coco_segmentation(segmentation: Any, height: int, width: int) -> None:
    """The checks of :func:`coco_segmentation_to_rle` without rasterising anything:
    polygons of at least 3 finite points, or an RLE of the image's ``(height, width)``
    whose runs cover it exactly.

    Raises:
        InvalidDataset: what is wrong with the segmentation.
    """
    try:
        if isinstance(segmentation, list):
            _check_polygons(segmentation)
            return
        if not isinstance(segmentation, Mapping):
            raise InvalidDataset(
                f"a segmentation is a list of polygons or an RLE object, "
                f"not {type(segmentation).__name__}"
            )
        size = check_coco_rle(segmentation)
        if size != (height, width):
            raise InvalidDataset(f"RLE size {list(size)} is not the image's [{height}, {width}]")
    except ValueError as exc:
        raise InvalidDataset(str(exc)) from None


def _check_polygons(polygons: list[Any]) -> None:
    """At least one polygon, each a flat list of an even number (>= 6) of finite numbers."""
    if not polygons:
        raise InvalidDataset("an empty polygon list")
    for poly in polygons:
        if not isinstance(poly, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in poly
        ):
            raise InvalidDataset("a polygon must be a flat list of numbers [x0, y0, x1, y1, ...]")
        if len(poly) < 6 or len(poly) % 2:
            raise InvalidDataset(
                f"a polygon needs at least 3 points (an even count >= 6 of numbers), "
                f"got {len(poly)} numbers"
            )


def coco_segmentation_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Rasterize one COCO ``segmentation`` (see :func:`coco_segmentation_to_rle`) to an
    ``(H, W)`` bool mask, exactly like ``pycocotools.coco.COCO.annToMask``."""
    rle = coco_segmentation_to_rle(segmentation, height, width)
    return decode_rle_objects(rle).astype(bool)


def _is_id(value: Any) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def _read_instances(path: Path) -> tuple[dict[Any, Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The ``images`` (by id) and ``annotations`` of a COCO instances file, with the
    fields the dataset uses checked.

    Raises:
        InvalidDataset: not JSON, not a COCO instances document, or an image /
            annotation without the fields it needs (named by its position).
        OSError: the file cannot be read.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidDataset(f"{path} is not a JSON file: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidDataset(
            f"{path} is not a COCO instances file (an object with 'images' and "
            f"'annotations'; this is a JSON {type(doc).__name__}, e.g. a detections list?)"
        )
    images_list, annotations = doc.get("images", []), doc.get("annotations", [])
    if not isinstance(images_list, list) or not isinstance(annotations, list):
        raise InvalidDataset(f"{path}: 'images' and 'annotations' must be lists")
    images: dict[Any, Mapping[str, Any]] = {}
    for i, img in enumerate(images_list):
        if not isinstance(img, dict) or not _is_id(img.get("id")):
            raise InvalidDataset(f"{path}: images[{i}] needs an 'id' (an integer or a string)")
        if not isinstance(img.get("file_name"), str):
            raise InvalidDataset(f"{path}: images[{i}] needs a 'file_name'")
        for key in ("height", "width"):
            if key in img and (not isinstance(img[key], int) or isinstance(img[key], bool)):
                raise InvalidDataset(f"{path}: images[{i}].{key} must be an integer")
        images[img["id"]] = img
    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict) or not _is_id(ann.get("image_id")):
            raise InvalidDataset(
                f"{path}: annotations[{i}] needs an 'image_id' (an integer or a string)"
            )
        if not ann.get("iscrowd", 0) and "segmentation" not in ann:
            raise InvalidDataset(
                f"{path}: annotations[{i}] (id {ann.get('id')!r}) has no 'segmentation'"
            )
    return images, annotations


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
        self.annotations_json = Path(annotations_json)
        images, annotations = _read_instances(self.annotations_json)
        anns: dict[Any, list[Mapping[str, Any]]] = {}
        for ann in annotations:
            if ann.get("iscrowd", 0):
                continue
            anns.setdefault(ann["image_id"], []).append(ann)
        # by id (integer ids first if a file mixes integers and strings)
        ids = (i for i in anns if i in images)
        self.image_ids: list[Any] = sorted(ids, key=lambda i: (isinstance(i, str), i))
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
            raise InvalidDataset(
                f"image {info['file_name']} is {(height, width)}, annotations say "
                f"{(info.get('height'), info.get('width'))}"
            )
        masks = []
        for ann in self._anns[image_id]:
            try:
                masks.append(coco_segmentation_to_mask(ann["segmentation"], height, width))
            except InvalidDataset as exc:
                raise InvalidDataset(
                    f"{self.annotations_json}: annotation id {ann.get('id')!r} of image "
                    f"{image_id!r}: {exc}"
                ) from None
        masks = [m for m in masks if m.any()]
        stacked = np.stack(masks) if masks else np.zeros((0, height, width), dtype=bool)
        sample = Sample(image=image, masks=stacked, image_id=str(image_id), levels=None)
        return self.transform(sample) if self.transform is not None else sample
