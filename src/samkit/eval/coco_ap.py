"""COCO mask AP of masks prompted with detector boxes (the SAM paper's zero-shot instance
segmentation protocol).

A detector's COCO *results* file (a JSON list of ``{"image_id", "category_id", "bbox":
[x, y, w, h], "score"}``) supplies one box per detection. For every ground-truth image
that has detections, the image is encoded once (``predictor.set_image``) and each box
prompts a single mask (``multimask=False``; all boxes of an image in one
``predict_batch`` call when the predictor has it, else one ``predict`` call per box). The
mask is encoded as COCO RLE and emitted as a COCO segm result ``{"image_id",
"category_id", "segmentation", "score"}`` whose category is the detector's and whose score
is the detector's (``score_mode="detector"``, as in the paper) or the detector's times
the model's predicted IoU (``score_mode="detector_x_iou"``). The results are scored by
``pycocotools.cocoeval.COCOeval(gt, dt, "segm")`` restricted to the evaluated images.

Frames: COCO boxes ``[x, y, w, h]`` are in image pixels, pixel-corner frame (pixel
``(x, y)`` covers ``[x, x + 1) x [y, y + 1)``); the prompt is ``(x, y, x + w, y + h)``
(XYXY, same frame as :mod:`samkit.eval.protocols`), clipped to ``[0, W] x [0, H]``.
Masks are ``(H, W)`` bool in the image frame; ``H, W`` must match the GT image's
``height, width``.

Evaluated images: the ground-truth images that have at least one detection, in
increasing id order (the first ``limit`` of them). A GT image with *no* detection is not
evaluated (its objects do not count as missed), so for the standard COCO number the
results file must cover every image (detectors usually return boxes for every image).

All pycocotools printing is swallowed. The 12 COCOeval ``stats`` are returned by name;
as in pycocotools, ``-1`` means "no ground truth in that area range".
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from samkit.data.coco import coco_segmentation_to_rle
from samkit.data.sa1b import encode_masks, load_rgb
from samkit.errors import InvalidArgument, InvalidDataset, InvalidMask

__all__ = [
    "COCO_STAT_NAMES",
    "SCORE_MODES",
    "CocoAPResult",
    "SinglePredictorLike",
    "check_detections",
    "coco_mask_ap",
    "load_coco_gt",
    "load_detections",
]

#: Accepted ``score_mode`` values of :func:`coco_mask_ap`.
SCORE_MODES: tuple[str, ...] = ("detector", "detector_x_iou")

#: ``(attribute, report key)`` of the 12 ``COCOeval.stats`` entries, in pycocotools order.
COCO_STAT_NAMES: tuple[tuple[str, str], ...] = (
    ("ap", "AP"),
    ("ap50", "AP50"),
    ("ap75", "AP75"),
    ("ap_small", "APs"),
    ("ap_medium", "APm"),
    ("ap_large", "APl"),
    ("ar1", "AR1"),
    ("ar10", "AR10"),
    ("ar100", "AR100"),
    ("ar_small", "ARs"),
    ("ar_medium", "ARm"),
    ("ar_large", "ARl"),
)


class _Prediction(Protocol):
    masks: Any
    scores: Any


class SinglePredictorLike(Protocol):
    """What :func:`coco_mask_ap` needs: ``set_image`` and single-prompt ``predict``; a
    ``predict_batch(boxes=, multimask=)`` method, when present, is used instead of
    ``predict`` (:class:`samkit.ImagePredictor` has both)."""

    def set_image(self, image: np.ndarray) -> Any: ...

    def predict(self, *, box: Any = None, multimask: bool = True) -> _Prediction: ...


# ------------------------------------------------------------------------ result
@dataclass(frozen=True, eq=False)
class CocoAPResult:
    """COCO mask AP of box-prompted masks (``COCOeval(..., "segm")``).

    Attributes:
        ap, ap50, ap75: AP at IoU .50:.95, .50 and .75 (area all, 100 detections/image).
        ap_small, ap_medium, ap_large: AP by GT area (< 32², 32²-96², > 96² pixels).
        ar1, ar10, ar100: average recall with at most 1 / 10 / 100 detections per image.
        ar_small, ar_medium, ar_large: AR@100 by GT area.
        images: number of images evaluated (encoded).
        detections: number of detections segmented and evaluated.
        score_mode: ``"detector"`` or ``"detector_x_iou"``.
        image_ids: ``(images,)`` COCO ids of the evaluated images, increasing.
        segm_results: ``(detections,)`` the COCO segm results that were evaluated,
            JSON-ready: ``{"image_id", "category_id", "segmentation": {"size": [H, W],
            "counts": str}, "score"}`` (write them with ``json.dump`` to get a results
            file). Not part of :meth:`to_dict`.

    ``-1`` in a stat means pycocotools found no ground truth for it.
    """

    ap: float
    ap50: float
    ap75: float
    ap_small: float
    ap_medium: float
    ap_large: float
    ar1: float
    ar10: float
    ar100: float
    ar_small: float
    ar_medium: float
    ar_large: float
    images: int
    detections: int
    score_mode: str
    image_ids: tuple[int, ...]
    segm_results: tuple[dict[str, Any], ...]

    protocol = "coco-ap"

    @property
    def count(self) -> int:
        """Number of detections evaluated (the ``count`` every result type has)."""
        return self.detections

    def stats(self) -> dict[str, float]:
        """The 12 COCOeval stats keyed ``AP, AP50, AP75, APs, APm, APl, AR1, ..., ARl``."""
        return {key: float(getattr(self, attr)) for attr, key in COCO_STAT_NAMES}

    def summary(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "count": self.count,
            "images": self.images,
            "detections": self.detections,
            "score_mode": self.score_mode,
            **self.stats(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "image_ids": [_jsonable_id(i) for i in self.image_ids]}


def _jsonable_id(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


# ------------------------------------------------------------------------ inputs
def _read_json(path: str | Path) -> Any:
    """The JSON document in ``path``; :class:`InvalidDataset` when it is not UTF-8 JSON
    (``OSError`` when it cannot be read)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError
        raise InvalidDataset(f"{path} is not valid JSON: {exc}") from None


def load_coco_gt(annotations: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    """Read (or take) a COCO instances document and check what COCOeval needs.

    Returns a shallow copy ``{"images", "annotations", "categories", ...}``; every image
    must have ``id``, ``file_name``, ``height`` and ``width``, every annotation
    ``image_id``, ``category_id`` and ``segmentation``, every category ``id``.

    Raises:
        OSError: the file cannot be read.
        InvalidDataset: (a ``ValueError``) invalid JSON or a missing/ill-formed field.
    """
    if isinstance(annotations, Mapping):
        doc: Any = annotations
    else:
        doc = _read_json(annotations)
    if not isinstance(doc, Mapping):
        raise InvalidDataset("COCO annotations must be a JSON object with images/annotations")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise InvalidDataset(f"COCO annotations have no {key!r} list")
    required = {
        "images": ("id", "file_name", "height", "width"),
        "annotations": ("image_id", "category_id", "segmentation"),
        "categories": ("id",),
    }
    for key, fields in required.items():
        for i, entry in enumerate(doc[key]):
            if not isinstance(entry, Mapping):
                raise InvalidDataset(f"COCO {key}[{i}] is not an object")
            missing = [k for k in fields if k not in entry]
            if missing:
                raise InvalidDataset(f"COCO {key}[{i}] lacks {', '.join(missing)}")
    _check_segmentations(doc)
    return dict(doc)


def _check_segmentations(doc: Mapping[str, Any]) -> None:
    """Every annotation is of a known image and its segmentation one pycocotools can
    rasterise on that image (:func:`samkit.data.coco.check_coco_segmentation`: polygons
    of >= 3 points, RLEs of the image's size covering it exactly); pycocotools itself
    raises a bare ``Exception`` / ``IndexError`` / ``KeyError`` on them, or trusts a
    wrong size. Nothing is rasterised here."""
    from samkit.data.coco import check_coco_segmentation

    sizes = {}
    for img in doc["images"]:
        try:
            sizes[img["id"]] = (int(img["height"]), int(img["width"]))
        except (TypeError, ValueError):
            raise InvalidDataset(f"COCO image {img['id']!r} has no integer height/width") from None
    for i, ann in enumerate(doc["annotations"]):
        size = sizes.get(ann["image_id"])
        if size is None:
            raise InvalidDataset(
                f"COCO annotations[{i}] is for an unknown image {ann['image_id']!r}"
            )
        try:
            check_coco_segmentation(ann["segmentation"], *size)
        except InvalidDataset as exc:
            raise InvalidDataset(f"COCO annotations[{i}]: {exc}") from None


def load_detections(detections: str | Path | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Read (or take) a COCO detection results list and validate each entry.

    Each entry needs ``image_id``, ``category_id``, ``bbox`` (four finite numbers
    ``[x, y, w, h]``, image pixels, ``w, h >= 0``) and a finite ``score``; other keys
    (e.g. a detector's own ``segmentation``) are ignored. Returns shallow copies.

    Raises:
        OSError: the file cannot be read.
        InvalidDataset: (a ``ValueError``) invalid JSON, not a list, an ill-formed entry,
            or no detection.
    """
    if isinstance(detections, str | Path):
        data: Any = _read_json(detections)
    else:
        data = detections
    if isinstance(data, Mapping) or not isinstance(data, Sequence):
        raise InvalidDataset("detections must be a list of COCO results (a JSON array)")
    if len(data) == 0:
        raise InvalidDataset("no detections: the detection list is empty")
    out: list[dict[str, Any]] = []
    for i, det in enumerate(data):
        if not isinstance(det, Mapping):
            raise InvalidDataset(f"detection {i} is not an object")
        missing = [k for k in ("image_id", "category_id", "bbox", "score") if k not in det]
        if missing:
            raise InvalidDataset(f"detection {i} lacks {', '.join(missing)}")
        for key in ("image_id", "category_id"):
            if not isinstance(det[key], int | str) or isinstance(det[key], bool):
                raise InvalidDataset(
                    f"detection {i}: {key} must be an integer (or string) id, got {det[key]!r}"
                )
        bbox = det["bbox"]
        try:
            box = [float(v) for v in bbox]
            score = float(det["score"])
        except (TypeError, ValueError):
            raise InvalidDataset(f"detection {i}: bbox and score must be numbers") from None
        if len(box) != 4 or not all(math.isfinite(v) for v in box):
            raise InvalidDataset(f"detection {i}: bbox must be 4 finite numbers [x, y, w, h]")
        if box[2] < 0 or box[3] < 0:
            raise InvalidDataset(f"detection {i}: bbox {box} has a negative width or height")
        if not math.isfinite(score):
            raise InvalidDataset(f"detection {i}: score must be finite")
        out.append(dict(det))
    return out


def check_detections(gt: Mapping[str, Any], detections: Sequence[Mapping[str, Any]]) -> None:
    """Every detection's image and category must exist in the ground truth ``gt``.

    Raises:
        InvalidDataset: (a ``ValueError``) naming the first unknown ``image_id`` (or
            ``category_id``).
    """
    image_ids = {img["id"] for img in gt["images"]}
    category_ids = {cat["id"] for cat in gt["categories"]}
    for i, det in enumerate(detections):
        if det["image_id"] not in image_ids:
            raise InvalidDataset(
                f"detection {i} has image_id {det['image_id']!r}, which is not an image of "
                "the COCO annotations"
            )
        if det["category_id"] not in category_ids:
            raise InvalidDataset(
                f"detection {i} has category_id {det['category_id']!r}, which is not a "
                "category of the COCO annotations"
            )


# ------------------------------------------------------------------------ helpers
@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Swallow pycocotools' prints and its NumPy 2 ``__array__`` DeprecationWarning."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.filterwarnings(
            "ignore", message=r"__array__ implementation", category=DeprecationWarning
        )
        yield


def _segm_area(segmentation: Any, height: int, width: int) -> float:
    """Pixel area of a COCO segmentation (polygons, uncompressed or compressed RLE)."""
    return float(mask_utils.area(coco_segmentation_to_rle(segmentation, height, width)))


def _gt_for_eval(gt: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of ``gt`` (from :func:`load_coco_gt`, which checked every annotation's image
    and segmentation) whose annotations COCOeval may mutate, with ``iscrowd`` (default 0)
    and ``area`` (default: the segmentation's pixel area) filled in."""
    sizes = {img["id"]: (int(img["height"]), int(img["width"])) for img in gt["images"]}
    anns = []
    for ann in gt["annotations"]:
        a = dict(ann)
        a.setdefault("iscrowd", 0)
        if "area" not in a:
            a["area"] = _segm_area(a["segmentation"], *sizes[a["image_id"]])
        anns.append(a)
    return {**gt, "annotations": anns}


def _xywh_to_xyxy(bboxes: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """``(N, 4)`` COCO ``[x, y, w, h]`` -> ``(N, 4)`` XYXY clipped to ``[0, W] x [0, H]``."""
    b = np.asarray(bboxes, dtype=np.float64).reshape(-1, 4)
    xyxy = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)
    xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0.0, float(width))
    xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0.0, float(height))
    return xyxy


def _segment_boxes(
    predictor: SinglePredictorLike, boxes: np.ndarray, shape: tuple[int, int], batch_size: int
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """Single-output masks ``(N, H, W)`` bool and predicted IoUs ``(N,)`` for ``(N, 4)``
    XYXY ``boxes`` on the predictor's current image."""
    masks: list[np.ndarray] = []
    ious: list[np.ndarray] = []
    if callable(getattr(predictor, "predict_batch", None)):
        for start in range(0, len(boxes), batch_size):
            chunk = boxes[start : start + batch_size]
            out = predictor.predict_batch(boxes=chunk, multimask=False)  # type: ignore[attr-defined]
            m = np.asarray(out.masks)
            if m.ndim != 4 or m.shape[0] != len(chunk):
                raise InvalidMask(f"predict_batch returned masks of shape {m.shape}")
            masks.append(m[:, 0] != 0)
            ious.append(np.asarray(out.scores, dtype=np.float64).reshape(len(chunk), -1)[:, 0])
    else:
        for box in boxes:
            out = predictor.predict(box=box.tolist(), multimask=False)
            masks.append((np.asarray(out.masks)[0] != 0)[None])
            ious.append(np.asarray(out.scores, dtype=np.float64).reshape(-1)[:1])
    stacked = np.concatenate(masks)
    if stacked.shape[1:] != shape:
        raise InvalidMask(f"predicted masks are {stacked.shape[1:]}, the image is {shape}")
    return stacked, np.concatenate(ious)


def _coco_stats(
    gt: Mapping[str, Any], results: Sequence[Mapping[str, Any]], image_ids: Sequence[Any]
) -> list[float]:
    """``COCOeval(gt, results, "segm").stats`` (12 floats) over ``image_ids``, silently."""
    with _quiet():
        coco_gt = COCO()
        coco_gt.dataset = _gt_for_eval(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([dict(r) for r in results])
        ev = COCOeval(coco_gt, coco_dt, "segm")
        ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


# ------------------------------------------------------------------------ protocol
def coco_mask_ap(
    predictor: SinglePredictorLike,
    annotations: str | Path | Mapping[str, Any],
    detections: str | Path | Sequence[Mapping[str, Any]],
    images_dir: str | Path,
    *,
    limit: int | None = None,
    score_mode: str = "detector",
    batch_size: int = 64,
) -> CocoAPResult:
    """COCO mask AP of masks prompted with detector boxes (see module doc).

    Args:
        predictor: has ``set_image(image)`` with ``image (H, W, 3)`` uint8 RGB, and
            ``predict_batch(boxes=(N, 4) XYXY, multimask=False)`` returning ``masks
            (N, 1, H, W)`` and ``scores (N, 1)`` (:class:`samkit.ImagePredictor`), or
            only ``predict(box=(4,), multimask=False)`` returning ``masks (1, H, W)`` and
            ``scores (1,)``.
        annotations: COCO instances JSON (path or loaded dict), the ground truth.
        detections: COCO detection results (path or list of dicts).
        images_dir: folder holding each GT image's ``file_name``.
        limit: evaluate only the first ``limit`` images (by id) that have detections.
        score_mode: ``"detector"`` (the detector's score) or ``"detector_x_iou"``
            (detector score times the model's predicted IoU).
        batch_size: boxes decoded per ``predict_batch`` call.

    Raises:
        InvalidDataset: (a ``ValueError``) empty detection list, a detection whose image
            (or category) is not in the GT, an ill-formed input, or an image whose size
            differs from the GT.
        InvalidArgument: (a ``ValueError``) a bad ``score_mode`` / ``limit`` /
            ``batch_size``.
        InvalidMask: (a ``ValueError``) the predictor returned masks of the wrong shape.
        OSError: an annotations, detections or image file cannot be read.
    """
    if score_mode not in SCORE_MODES:
        raise InvalidArgument(f"score_mode must be one of {SCORE_MODES}, got {score_mode!r}")
    if limit is not None and limit < 1:
        raise InvalidArgument(f"limit must be >= 1, got {limit}")
    if batch_size < 1:
        raise InvalidArgument(f"batch_size must be >= 1, got {batch_size}")
    gt = load_coco_gt(annotations)
    dets = load_detections(detections)
    check_detections(gt, dets)

    by_image: dict[Any, list[dict[str, Any]]] = {}
    for det in dets:
        by_image.setdefault(det["image_id"], []).append(det)
    image_ids = sorted(by_image)
    if limit is not None:
        image_ids = image_ids[:limit]
    infos = {img["id"]: img for img in gt["images"]}
    folder = Path(images_dir)

    results: list[dict[str, Any]] = []
    for image_id in image_ids:
        info = infos[image_id]
        image = load_rgb(folder / info["file_name"], (int(info["height"]), int(info["width"])))
        shape = (int(image.shape[0]), int(image.shape[1]))
        if shape != (int(info["height"]), int(info["width"])):
            raise InvalidDataset(
                f"image {info['file_name']} is {shape[0]}x{shape[1]} (HxW), the COCO "
                f"annotations say {info['height']}x{info['width']}"
            )
        predictor.set_image(image)
        group = by_image[image_id]
        boxes = _xywh_to_xyxy([d["bbox"] for d in group], *shape)
        masks, ious = _segment_boxes(predictor, boxes, shape, batch_size)
        for det, rle, pred_iou in zip(group, encode_masks(masks), ious, strict=True):
            score = float(det["score"])
            if score_mode == "detector_x_iou":
                score *= float(pred_iou)
            results.append(
                {
                    "image_id": det["image_id"],
                    "category_id": det["category_id"],
                    "segmentation": rle,
                    "score": score,
                }
            )

    stats = _coco_stats(gt, results, image_ids)
    named = {attr: stats[k] for k, (attr, _) in enumerate(COCO_STAT_NAMES)}
    return CocoAPResult(
        **named,
        images=len(image_ids),
        detections=len(results),
        score_mode=score_mode,
        image_ids=tuple(image_ids),
        segm_results=tuple(results),
    )
