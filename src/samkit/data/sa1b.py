"""SA-1B format I/O: one JSON of COCO-RLE instance masks next to each image.

Layout (as released with Segment Anything)::

    root/sa_1.jpg
    root/sa_1.json   # {"image": {...}, "annotations": [{...}, ...]}

Each annotation holds ``segmentation = {"size": [h, w], "counts": <compressed RLE str>}``
(pycocotools encoding, column-major), ``area`` (pixels), ``bbox`` (``[x, y, w, h]`` in
image pixels, float), ``predicted_iou``, ``stability_score``, ``point_coords``
(``[[x, y]]``, image pixels) and ``crop_box`` (``[x, y, w, h]``). Extra per-mask fields
may be added; the optional integer ``level`` (0 whole, 1 part, 2 subpart) written by the
synthetic generator is read back into :attr:`Sample.levels`.

Generated masks (``samkit auto``) use the same layout; their reading and writing, and
the COCO export, are in :mod:`samkit.data.amg_json` (re-exported here).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps
from pycocotools import mask as mask_utils

from samkit.data.amg_json import (  # generated-mask JSONs, COCO export: importable here too
    AMG_RECORD_KEYS,
    COCO_CATEGORY,
    COCO_DESCRIPTION,
    export_coco,
    read_amg_json,
    write_amg_json,
)
from samkit.data.types import Sample
from samkit.errors import InvalidArgument, InvalidDataset, InvalidImage, InvalidMask
from samkit.fileio import atomic_write_json, read_head
from samkit.inference.transforms import DAMAGED_IMAGE_ERRORS, pil_to_rgb
from samkit.masks import masks_to_coco_rle, rle_area, rle_decode
from samkit.masks.rle import decode_rle_objects

__all__ = [
    "AMG_RECORD_KEYS",
    "COCO_CATEGORY",
    "COCO_DESCRIPTION",
    "IMAGE_EXTENSIONS",
    "LEVEL_KEY",
    "SA1BDataset",
    "decode_rle",
    "decode_rle_objects",
    "encode_masks",
    "export_coco",
    "load_rgb",
    "read_amg_json",
    "read_sa1b",
    "write_amg_json",
    "write_sa1b",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
"""Image suffixes (compared in any case) :class:`SA1BDataset` pairs with a JSON of the
same stem; the images ``samkit auto`` reads, so its output folders are datasets too."""


def _images_by_stem(folder: Path) -> dict[str, Path]:
    """Image files of ``folder`` (suffix in :data:`IMAGE_EXTENSIONS`, any case) by stem;
    for a stem with several, the first suffix of that tuple (then the name) wins."""
    found: dict[str, tuple[int, str, Path]] = {}
    try:
        entries = list(folder.iterdir())
    except OSError:
        return {}
    for p in entries:
        suffix = p.suffix.lower()
        if suffix in IMAGE_EXTENSIONS and p.is_file():
            rank = (IMAGE_EXTENSIONS.index(suffix), p.name, p)
            if p.stem not in found or rank[:2] < found[p.stem][:2]:
                found[p.stem] = rank
    return {stem: rank[2] for stem, rank in found.items()}


LEVEL_KEY = "level"
"""Per-annotation key holding the nesting level (synthetic data); read into ``Sample.levels``."""


def load_rgb(path: str | os.PathLike[str], size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB, the way ``samkit segment`` and
    ``samkit auto`` read it (:func:`samkit.inference.transforms.load_image`): EXIF
    orientation applied, alpha / palette / gray converted, 16-bit images scaled to 8 bits
    (``v / 257``) rather than clipped.

    Args:
        path: the image file.
        size: ``(H, W)`` of the annotations that go with the image, if known. Masks made
            by samkit (and by most tools) are in the EXIF-oriented frame; when ``size``
            matches the stored pixels but not the oriented ones (annotations drawn on the
            raw pixels, as some COCO-style datasets are), the orientation is not applied.
            A 180-degree orientation keeps the size and is always applied.

    Raises ``OSError`` for a missing or unreadable file and
    :class:`~samkit.errors.InvalidImage` (a ``ValueError``) for an image over Pillow's
    decompression-bomb limit or of an unsupported mode (Pillow's own decompression-bomb
    error is a bare ``Exception``).
    """
    try:
        with Image.open(path) as im:
            oriented = ImageOps.exif_transpose(im)
            if size is not None and tuple(size) != (oriented.height, oriented.width):
                if tuple(size) == (im.height, im.width):
                    oriented = im
            return np.array(pil_to_rgb(oriented), dtype=np.uint8, copy=True)
    except OSError:
        raise  # missing or unreadable (truncated, not an image): the caller's to report
    except DAMAGED_IMAGE_ERRORS as exc:  # over the pixel limit, damaged headers or chunks
        raise InvalidImage(f"cannot read image {path}: {exc or type(exc).__name__}") from exc


def oriented_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(H, W)`` of an image file as :func:`load_rgb` returns it without ``size``
    (EXIF orientation applied); reads the header only."""
    with Image.open(path) as im:
        width, height = im.size
        if im.getexif().get(_EXIF_ORIENTATION) in (5, 6, 7, 8):  # transposed
            return width, height
        return height, width


_EXIF_ORIENTATION = 0x0112


def encode_masks(masks: np.ndarray) -> list[dict[str, Any]]:
    """Encode ``(M, H, W)`` bool masks as JSON-ready COCO compressed RLEs.

    Returns ``M`` dicts ``{"size": [H, W], "counts": str}`` (pycocotools encoding with the
    ``counts`` bytes decoded as ASCII); see :func:`samkit.masks.masks_to_coco_rle`.
    """
    return masks_to_coco_rle(np.asarray(masks))


def decode_rle(segmentations: Sequence[Mapping[str, Any]], height: int, width: int) -> np.ndarray:
    """Decode RLEs (compressed ``counts`` str/bytes, or uncompressed ``counts`` list) to
    ``(M, H, W)`` bool masks; see :func:`samkit.masks.rle_decode`."""
    masks = np.zeros((len(segmentations), height, width), dtype=bool)
    for i, seg in enumerate(segmentations):
        size = tuple(int(s) for s in seg["size"])
        if size != (height, width):
            raise InvalidMask(f"RLE size {size} does not match image ({height}, {width})")
        masks[i] = rle_decode(seg)
    return masks


def _inside_point(mask: np.ndarray) -> list[list[float]]:
    """One ``[[x, y]]`` point on the mask (the mask pixel nearest its centroid)."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return [[0.0, 0.0]]
    cy, cx = ys.mean(), xs.mean()
    i = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    return [[float(xs[i]), float(ys[i])]]


def write_sa1b(
    image_path: str | os.PathLike[str],
    masks: np.ndarray,
    out_json: str | os.PathLike[str],
    *,
    image_id: str | int | None = None,
    levels: Sequence[int] | np.ndarray | None = None,
    extra: Mapping[str, Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """Write the SA-1B JSON for ``image_path`` and its ``(M, H, W)`` bool ``masks``.

    Args:
        image_path: existing image file; its size must equal the masks' ``(H, W)``.
        masks: ``(M, H, W)`` bool, image frame.
        out_json: destination, written atomically. ``image.file_name`` is stored relative
            to the JSON's folder.
        image_id: stored as ``image.image_id``; defaults to the image file stem.
        levels: optional ``(M,)`` ints stored per annotation under ``"level"``.
        extra: optional per-mask fields, ``{key: sequence of length M}``; they override the
            defaults (``predicted_iou=1.0``, ``stability_score=1.0``, ``point_coords`` = mask
            pixel nearest the centroid, ``crop_box`` = whole image).

    Returns:
        The JSON document written.
    """
    image_path = Path(image_path)
    out_json = Path(out_json)
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise InvalidMask(f"masks must be (M, H, W), got shape {masks.shape}")
    height, width = oriented_size(image_path)
    m = masks.shape[0]
    if masks.shape[1:] != (height, width):
        raise InvalidMask(f"masks {masks.shape[1:]} do not match image {(height, width)}")
    if levels is not None and len(levels) != m:
        raise InvalidArgument(f"levels has {len(levels)} entries for {m} masks")
    for key, values in (extra or {}).items():
        if len(values) != m:
            raise InvalidArgument(f"extra field {key!r} has {len(values)} entries for {m} masks")

    segs = encode_masks(masks)
    raw = [{"size": s["size"], "counts": s["counts"].encode("ascii")} for s in segs]
    boxes = mask_utils.toBbox(raw) if m else []  # (M, 4) float XYWH
    annotations = []
    for i in range(m):
        ann: dict[str, Any] = {
            "id": i,
            "segmentation": segs[i],
            "area": rle_area(segs[i]),
            "bbox": [float(v) for v in boxes[i]],
            "predicted_iou": 1.0,
            "stability_score": 1.0,
            "point_coords": _inside_point(masks[i]),
            "crop_box": [0.0, 0.0, float(width), float(height)],
        }
        if levels is not None:
            ann[LEVEL_KEY] = int(levels[i])
        for key, values in (extra or {}).items():
            value = values[i]
            ann[key] = value.tolist() if isinstance(value, np.ndarray | np.generic) else value
        annotations.append(ann)

    rel = os.path.relpath(image_path.resolve(), out_json.resolve().parent)
    doc = {
        "image": {
            "image_id": image_id if image_id is not None else image_path.stem,
            "width": int(width),
            "height": int(height),
            "file_name": Path(rel).as_posix(),
        },
        "annotations": annotations,
    }
    atomic_write_json(out_json, doc)
    return doc


def _find_image(json_path: Path, file_name: str | None) -> Path:
    if file_name:
        candidate = json_path.parent / file_name
        if candidate.is_file():
            return candidate
    candidate = _images_by_stem(json_path.parent).get(json_path.stem)
    if candidate is not None:
        return candidate
    raise FileNotFoundError(f"no image found for {json_path} (file_name={file_name!r})")


def _annotated_size(info: Mapping[str, Any], anns: Sequence[Any]) -> tuple[int, int] | None:
    """``(H, W)`` the annotations are drawn in: ``image.height/width``, else the first
    RLE's ``size``; ``None`` when neither is there."""
    if isinstance(info.get("height"), int) and isinstance(info.get("width"), int):
        return info["height"], info["width"]
    for ann in anns:
        seg = ann.get("segmentation") if isinstance(ann, dict) else None
        if isinstance(seg, dict) and isinstance(seg.get("size"), list | tuple):
            size = seg["size"]
            if len(size) == 2 and all(isinstance(v, int) for v in size):
                return int(size[0]), int(size[1])
    return None


def _linked_image(json_path: Path) -> Path | None:
    """The existing file that ``image.file_name`` of an SA-1B JSON names (relative to the
    JSON's folder), read from the file's head only (``image`` comes first in samkit's
    and the official files); ``None`` when there is none."""
    head = read_head(json_path)
    try:
        start = head.index("{", head.index('"image"'))
        info, _ = json.JSONDecoder().raw_decode(head, start)
    except ValueError:
        return None
    name = info.get("file_name") if isinstance(info, dict) else None
    if not isinstance(name, str) or not name:
        return None
    candidate = json_path.parent / name
    return candidate if candidate.is_file() else None


def read_sa1b(json_path: str | os.PathLike[str]) -> Sample:
    """Read one SA-1B JSON and its image into a :class:`Sample`.

    The image is ``image.file_name`` relative to the JSON's folder, else the file with the
    JSON's stem and an image suffix. ``image_id`` is ``str(image.image_id)`` (the JSON stem
    when absent). ``levels`` is filled only when every annotation has a ``"level"``.
    """
    json_path = Path(json_path)
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
    except ValueError as exc:  # not JSON, or not UTF-8
        raise InvalidDataset(f"cannot read {json_path}: {exc}") from exc
    info = doc.get("image", {}) if isinstance(doc, dict) else None
    # "annotations" is required (an image without objects has an empty list): a JSON
    # without it (e.g. {}) is some other file, not an image with nothing to segment
    anns = doc.get("annotations") if isinstance(doc, dict) else None
    if not isinstance(info, dict) or not isinstance(anns, list):
        raise InvalidDataset(
            f"{json_path} is not an SA-1B annotation file "
            "(an object with an 'image' object and an 'annotations' list)"
        )
    image = load_rgb(_find_image(json_path, info.get("file_name")), _annotated_size(info, anns))
    height, width = image.shape[:2]
    masks = np.zeros((len(anns), height, width), dtype=bool)
    for i, ann in enumerate(anns):
        seg = ann.get("segmentation") if isinstance(ann, dict) else None
        if seg is None:
            raise InvalidDataset(
                f"{json_path}: annotation {i} has no 'segmentation' key "
                "(an RLE 'segmentation' with size and counts)"
            )
        if not isinstance(seg, dict):
            raise InvalidDataset(
                f"{json_path}: annotation {i} needs an RLE 'segmentation' (size, counts), "
                f"not a {type(seg).__name__}"
            )
        try:
            masks[i] = decode_rle([seg], height, width)[0]
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidDataset(
                f"{json_path}: annotation {i}: bad RLE 'segmentation': {exc}"
            ) from None
    levels = None
    if anns and all(LEVEL_KEY in a for a in anns):
        values = [a[LEVEL_KEY] for a in anns]
        for i, v in enumerate(values):
            if not isinstance(v, int) or isinstance(v, bool):
                raise InvalidDataset(
                    f"{json_path}: annotation {i}: {LEVEL_KEY!r} must be an integer, got {v!r}"
                )
        levels = np.asarray(values, dtype=np.int64)
    image_id = str(info.get("image_id", json_path.stem))
    return Sample(image=image, masks=masks, image_id=image_id, levels=levels)


class SA1BDataset:
    """Torch-free sequence of :class:`Sample` over a folder in SA-1B layout.

    Discovers ``*.json`` files (``recursive=True``: in subfolders too) that have an image
    with the same stem next to them (suffixes of :data:`IMAGE_EXTENSIONS`, any case) or
    whose ``image.file_name`` names an existing file (``samkit auto --out`` writes its
    JSONs away from the images), in sorted path order. ``transform`` (e.g. an
    :class:`~samkit.data.augment.Augment`) is applied to each sample read.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        recursive: bool = False,
        transform: Callable[[Sample], Sample] | None = None,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {self.root}")
        pattern = "**/*.json" if recursive else "*.json"
        images: dict[Path, dict[str, Path]] = {}
        paths = []
        for p in self.root.glob(pattern):
            if p.parent not in images:
                images[p.parent] = _images_by_stem(p.parent)
            if p.stem in images[p.parent] or _linked_image(p) is not None:
                paths.append(p)
        self.json_paths: list[Path] = sorted(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.json_paths)

    def __getitem__(self, index: int) -> Sample:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        sample = read_sa1b(self.json_paths[index])
        return self.transform(sample) if self.transform is not None else sample
