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

Generated masks (``samkit auto``, :class:`samkit.amg.MaskGenerator`) use the same layout:
:func:`write_amg_json` / :func:`read_amg_json` store and load the generator's records
(their ``bbox`` keeps the generator's convention, see :func:`write_amg_json`), and
:func:`export_coco` merges a folder of such per-image JSONs into one COCO instances file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from samkit.data.types import Sample
from samkit.fileio import atomic_write_bytes
from samkit.masks import masks_to_coco_rle, rle_area, rle_decode, rle_to_coco
from samkit.masks.rle import decode_rle_objects

__all__ = [
    "AMG_RECORD_KEYS",
    "COCO_CATEGORY",
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

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")
"""Image suffixes :class:`SA1BDataset` pairs with a JSON of the same stem."""

LEVEL_KEY = "level"
"""Per-annotation key holding the nesting level (synthetic data); read into ``Sample.levels``."""


def load_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB (alpha / palette / gray converted).

    Raises ``OSError`` for a missing or unreadable file and ``ValueError`` for an image
    over Pillow's decompression-bomb limit (Pillow's own error is a bare ``Exception``).
    """
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except Image.DecompressionBombError as exc:
        raise ValueError(f"cannot read image {path}: {exc}") from exc


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
            raise ValueError(f"RLE size {size} does not match image ({height}, {width})")
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
        raise ValueError(f"masks must be (M, H, W), got shape {masks.shape}")
    with Image.open(image_path) as im:
        width, height = im.size
    m = masks.shape[0]
    if masks.shape[1:] != (height, width):
        raise ValueError(f"masks {masks.shape[1:]} do not match image {(height, width)}")
    if levels is not None and len(levels) != m:
        raise ValueError(f"levels has {len(levels)} entries for {m} masks")
    for key, values in (extra or {}).items():
        if len(values) != m:
            raise ValueError(f"extra field {key!r} has {len(values)} entries for {m} masks")

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
    _write_json(out_json, doc)
    return doc


def _write_json(path: Path, doc: Mapping[str, Any]) -> None:
    """Serialise ``doc`` (compact, UTF-8) and write it atomically."""
    atomic_write_bytes(path, json.dumps(doc).encode("utf-8"))


AMG_RECORD_KEYS: tuple[str, ...] = (
    "segmentation",
    "area",
    "bbox",
    "predicted_iou",
    "point_coords",
    "stability_score",
    "crop_box",
)
"""Fields of a generated-mask record (:class:`samkit.amg.MaskRecord`), in SA-1B order."""

COCO_CATEGORY: dict[str, Any] = {"id": 1, "name": "object"}
"""The single, class-agnostic category of :func:`export_coco`."""


def _plain(value: Any) -> Any:
    """NumPy / torch scalars and arrays -> JSON-ready Python numbers and lists."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    return value


def _floats(value: Any, n: int | None, field: str) -> list[float]:
    """``value`` flattened to a list of floats, which must have ``n`` entries (``None``: any)."""
    values = [float(v) for v in np.asarray(_plain(value), dtype=np.float64).reshape(-1)]
    if n is not None and len(values) != n:
        raise ValueError(f"{field} must have {n} numbers, got {len(values)}")
    return values


def _coco_segmentation(segmentation: Any, height: int, width: int) -> dict[str, Any]:
    """Binary mask, uncompressed RLE or COCO RLE -> COCO RLE ``{"size", "counts": str}``."""
    if isinstance(segmentation, Mapping):
        if "size" not in segmentation or "counts" not in segmentation:
            raise ValueError("an RLE segmentation needs 'size' and 'counts'")
        rle = rle_to_coco(segmentation)
    else:
        mask = segmentation
        if not isinstance(mask, torch.Tensor):
            mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ValueError(f"a binary-mask segmentation must be (H, W), got {tuple(mask.shape)}")
        rle = masks_to_coco_rle(mask[None])[0]
    if [int(v) for v in rle["size"]] != [height, width]:
        raise ValueError(f"segmentation size {list(rle['size'])} != image [{height}, {width}]")
    return rle


def write_amg_json(
    path: str | os.PathLike[str],
    records: Sequence[Mapping[str, Any]],
    image_info: Mapping[str, Any],
) -> dict[str, Any]:
    """Write generated masks as one SA-1B JSON (atomically).

    Args:
        path: destination ``.json``.
        records: :class:`samkit.amg.MaskRecord`-like mappings with the fields of
            :data:`AMG_RECORD_KEYS`; ``segmentation`` may be an ``(H, W)`` bool mask
            (array or tensor), an uncompressed RLE (``counts`` a list) or a COCO RLE
            (``counts`` str/bytes): it is stored as COCO RLE with ``counts`` a str.
            ``area``, ``bbox`` (``[x, y, w, h]``), ``point_coords`` and ``crop_box`` are
            stored as given (the generator's ``bbox`` has ``w = x_max - x_min`` of the
            inclusive pixel box, as in the official generator, one less than
            ``pycocotools.mask.toBbox``); other fields of a record are kept.
        image_info: ``width``, ``height``, ``file_name`` (usually relative to the JSON's
            folder) and optionally ``image_id`` (default: the stem of ``file_name``).

    Returns:
        The document written: ``{"image": {...}, "annotations": [...]}`` with
        annotation ``id`` 0, 1, ... in record order.

    Raises:
        ValueError: a missing field, or a segmentation whose size is not the image's.
    """
    try:
        width, height = int(image_info["width"]), int(image_info["height"])
        file_name = str(image_info["file_name"])
    except KeyError as exc:
        raise ValueError(f"image_info needs {exc.args[0]!r}") from None
    image = {
        "image_id": _plain(image_info.get("image_id", Path(file_name).stem)),
        "file_name": file_name,
        "width": width,
        "height": height,
    }
    annotations = []
    for i, record in enumerate(records):
        missing = [key for key in AMG_RECORD_KEYS if key not in record]
        if missing:
            raise ValueError(f"record {i} has no {', '.join(missing)}")
        try:
            ann: dict[str, Any] = {
                "id": i,
                "segmentation": _coco_segmentation(record["segmentation"], height, width),
                "area": int(_plain(record["area"])),
                "bbox": _floats(record["bbox"], 4, "bbox"),
                "predicted_iou": float(_plain(record["predicted_iou"])),
                "point_coords": [
                    _floats(p, 2, "point_coords") for p in _plain(record["point_coords"])
                ],
                "stability_score": float(_plain(record["stability_score"])),
                "crop_box": _floats(record["crop_box"], 4, "crop_box"),
            }
        except (TypeError, ValueError) as exc:
            raise ValueError(f"record {i}: {exc}") from None
        for key, value in record.items():
            if key not in ann:
                ann[key] = _plain(value)
        annotations.append(ann)
    doc = {"image": image, "annotations": annotations}
    _write_json(Path(path), doc)
    return doc


def read_amg_json(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read an SA-1B JSON of generated masks (no image is opened).

    Returns:
        ``(image_info, records)``: the ``"image"`` object (``image_id``, ``file_name``,
        ``width``, ``height``) and the annotations as records (COCO-RLE ``segmentation``
        with ``counts`` a str, plus ``id`` and any extra fields), in file order.

    Raises:
        ValueError: not JSON, or not an SA-1B document (no ``image``/``annotations``, an
            annotation without ``segmentation``, ``area`` or ``bbox``).
        OSError: the file cannot be read.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a JSON file: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("image"), dict):
        raise ValueError(f"{path} is not an SA-1B JSON (no 'image' object)")
    annotations = doc.get("annotations")
    if not isinstance(annotations, list):
        raise ValueError(f"{path} is not an SA-1B JSON (no 'annotations' list)")
    info = dict(doc["image"])
    for key in ("width", "height"):
        if not isinstance(info.get(key), int):
            raise ValueError(f"{path}: image.{key} is missing or not an integer")
    info.setdefault("image_id", path.stem)
    info.setdefault("file_name", "")
    records = []
    for i, ann in enumerate(annotations):
        if not isinstance(ann, dict) or any(k not in ann for k in ("segmentation", "area", "bbox")):
            raise ValueError(f"{path}: annotation {i} lacks segmentation, area or bbox")
        record = dict(ann)
        seg = record["segmentation"]
        if isinstance(seg, dict) and isinstance(seg.get("counts"), str | bytes):
            record["segmentation"] = rle_to_coco(seg)
        records.append(record)
    return info, records


def export_coco(
    json_paths_or_folder: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_path: str | os.PathLike[str],
) -> dict[str, Any]:
    """Merge per-image SA-1B JSONs of generated masks into one COCO instances file.

    Args:
        json_paths_or_folder: a folder (its ``*.json``, not recursive; ``out_path`` itself
            is left out) or a sequence of JSON files.
        out_path: the COCO file to write (atomically); its folder must exist. It must not
            be one of the inputs.

    The inputs are sorted by file name (then full path), so ids are deterministic: image
    ``id`` 1..N in that order, annotation ``id`` 1..M image by image in file order. Each
    image is ``{"id", "file_name", "width", "height"}`` with ``file_name`` re-based to
    ``out_path``'s folder; there is one category :data:`COCO_CATEGORY`; each annotation has
    ``id``, ``image_id``, ``category_id`` 1, ``segmentation`` (COCO RLE), ``area``,
    ``bbox``, ``iscrowd`` 0, ``score`` (= ``predicted_iou``) and keeps ``predicted_iou``,
    ``stability_score``, ``point_coords`` and ``crop_box``.

    Returns:
        The COCO document written.

    Raises:
        ValueError: an input is not an SA-1B JSON, or ``out_path`` is an input.
        FileNotFoundError: the folder or a listed file does not exist.
    """
    out_path = Path(out_path)
    if isinstance(json_paths_or_folder, str | os.PathLike):
        folder = Path(json_paths_or_folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"folder not found: {folder}")
        paths = [p for p in folder.glob("*.json") if p.resolve() != out_path.resolve()]
    else:
        paths = [Path(p) for p in json_paths_or_folder]
        for p in paths:
            if not p.is_file():
                raise FileNotFoundError(f"SA-1B JSON not found: {p}")
            if p.resolve() == out_path.resolve():
                raise ValueError(f"the COCO output {out_path} is one of the inputs")
    paths.sort(key=lambda p: (p.name, str(p)))
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    out_folder = out_path.parent.resolve()
    for image_id, path in enumerate(paths, start=1):
        info, records = read_amg_json(path)
        file_name = str(info["file_name"]) or path.stem
        try:
            file_name = Path(
                os.path.relpath(path.parent.resolve() / file_name, out_folder)
            ).as_posix()
        except ValueError:  # different drives (Windows): keep an absolute path
            file_name = (path.parent.resolve() / file_name).as_posix()
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": int(info["width"]),
                "height": int(info["height"]),
            }
        )
        for record in records:
            predicted_iou = float(record.get("predicted_iou", 1.0))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": COCO_CATEGORY["id"],
                    "segmentation": record["segmentation"],
                    "area": record["area"],
                    "bbox": record["bbox"],
                    "iscrowd": 0,
                    "score": predicted_iou,
                    "predicted_iou": predicted_iou,
                    "stability_score": record.get("stability_score"),
                    "point_coords": record.get("point_coords"),
                    "crop_box": record.get("crop_box"),
                }
            )
    doc = {
        "info": {"description": "masks generated by samkit auto (class-agnostic)"},
        "images": images,
        "annotations": annotations,
        "categories": [dict(COCO_CATEGORY)],
    }
    _write_json(out_path, doc)
    return doc


def _find_image(json_path: Path, file_name: str | None) -> Path:
    if file_name:
        candidate = json_path.parent / file_name
        if candidate.is_file():
            return candidate
    for ext in IMAGE_EXTENSIONS:
        candidate = json_path.with_suffix(ext)
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no image found for {json_path} (file_name={file_name!r})")


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
        raise ValueError(f"cannot read {json_path}: {exc}") from exc
    info = doc.get("image", {}) if isinstance(doc, dict) else None
    anns = doc.get("annotations", []) if isinstance(doc, dict) else None
    if not isinstance(info, dict) or not isinstance(anns, list):
        raise ValueError(
            f"{json_path} is not an SA-1B annotation file "
            "(an object with an 'image' object and an 'annotations' list)"
        )
    image = load_rgb(_find_image(json_path, info.get("file_name")))
    height, width = image.shape[:2]
    try:
        masks = decode_rle([a["segmentation"] for a in anns], height, width)
        levels = None
        if anns and all(LEVEL_KEY in a for a in anns):
            levels = np.asarray([int(a[LEVEL_KEY]) for a in anns], dtype=np.int64)
    except (KeyError, TypeError, ValueError) as exc:
        reason = f"no {exc} key" if isinstance(exc, KeyError) else str(exc)
        raise ValueError(
            f"{json_path}: annotations need an RLE 'segmentation' (size, counts): {reason}"
        ) from exc
    image_id = str(info.get("image_id", json_path.stem))
    return Sample(image=image, masks=masks, image_id=image_id, levels=levels)


class SA1BDataset:
    """Torch-free sequence of :class:`Sample` over a folder in SA-1B layout.

    Discovers ``*.json`` files (``recursive=True``: in subfolders too) that have an image
    with the same stem next to them, in sorted path order. ``transform`` (e.g. an
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
        self.json_paths: list[Path] = sorted(
            p
            for p in self.root.glob(pattern)
            if any(p.with_suffix(ext).is_file() for ext in IMAGE_EXTENSIONS)
        )
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
