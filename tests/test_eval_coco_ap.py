"""Tests of ``coco_mask_ap`` (COCO mask AP from detector boxes) and ``samkit eval
--protocol coco-ap``.

Reference values come from calling ``pycocotools.cocoeval.COCOeval`` directly on result
lists written by hand in this file, never from the code under test.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from rich.console import Console
from tiny_models import TINY_256, assert_cli_error, save_and_register_tiny
from typer.testing import CliRunner

import samkit
from samkit.cli.main import app
from samkit.eval import CocoAPResult, coco_mask_ap
from samkit.eval.report import print_results, result_table, results_to_dict, write_json

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.usefixtures("cli_isolated"),  # private cache, cwd = tmp (conftest.py)
]

H, W = 128, 160  # every image: (H, W) pixels
STAT_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
STAT_KEYS += ("AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


# ------------------------------------------------------------------ dataset
def _rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def _ellipse(cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _rle(mask: np.ndarray) -> dict[str, Any]:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")}


def _xywh(mask: np.ndarray) -> list[float]:
    """Tight COCO box [x, y, w, h] of a mask (w = max col - min col + 1)."""
    ys, xs = np.nonzero(mask)
    return [
        float(xs.min()),
        float(ys.min()),
        float(xs.max() - xs.min() + 1),
        float(ys.max() - ys.min() + 1),
    ]


# (image id, annotation id, category id, mask); category 1 "box", 2 "blob".
# Areas: 10000 px (large), 1600 / ~1178 px (medium), ~251 / 225 px (small).
OBJECTS: list[tuple[int, int, int, np.ndarray]] = [
    (1, 11, 1, _rect(10, 110, 10, 110)),
    (1, 12, 2, _ellipse(40, 135, 25, 15)),
    (2, 21, 1, _rect(20, 60, 30, 70)),
    (2, 22, 2, _ellipse(90, 120, 8, 10)),
    (2, 23, 1, _rect(100, 115, 10, 25)),
    (3, 31, 2, _ellipse(64, 80, 30, 40)),
]


@dataclass
class CocoFixture:
    images_dir: Path
    gt_path: Path
    gt: dict[str, Any]
    images: dict[int, np.ndarray]  # id -> (H, W, 3) uint8
    masks: dict[int, np.ndarray]  # annotation id -> (H, W) bool


def _write_coco(folder: Path) -> CocoFixture:
    images_dir = folder / "images"
    images_dir.mkdir()
    images: dict[int, np.ndarray] = {}
    masks: dict[int, np.ndarray] = {}
    gt: dict[str, Any] = {"images": [], "annotations": [], "categories": []}
    gt["categories"] = [{"id": 1, "name": "box"}, {"id": 2, "name": "blob"}]
    for image_id in (1, 2, 3):
        img = np.full((H, W, 3), 30 * image_id, dtype=np.uint8)
        for iid, aid, cat, m in OBJECTS:
            if iid == image_id:
                img[m] = (200, 40 * cat, 7 * aid % 256)
                masks[aid] = m
                rle = _rle(m)
                gt["annotations"].append(
                    {
                        "id": aid,
                        "image_id": image_id,
                        "category_id": cat,
                        "iscrowd": 0,
                        "segmentation": rle,
                        "area": float(m.sum()),
                        "bbox": _xywh(m),
                    }
                )
        name = f"img_{image_id}.png"
        Image.fromarray(img).save(images_dir / name)
        images[image_id] = img
        gt["images"].append({"id": image_id, "file_name": name, "height": H, "width": W})
    gt_path = folder / "instances.json"
    gt_path.write_text(json.dumps(gt))
    return CocoFixture(images_dir, gt_path, gt, images, masks)


@pytest.fixture
def coco(tmp_path: Path) -> CocoFixture:
    return _write_coco(tmp_path)


def _det(aid: int, score: float, *, category: int | None = None, dx: float = 0.0) -> dict:
    """A detection of GT object ``aid`` (its tight box moved ``dx`` px to the right)."""
    iid, _, cat, m = next(o for o in OBJECTS if o[1] == aid)
    x, y, w, h = _xywh(m)
    return {
        "image_id": iid,
        "category_id": cat if category is None else category,
        "bbox": [x + dx, y, w, h],
        "score": score,
    }


def _perfect_dets() -> list[dict]:
    return [_det(aid, 0.9 - 0.05 * k) for k, (_, aid, _, _) in enumerate(OBJECTS)]


def _reference_stats(
    gt: dict[str, Any], results: list[dict[str, Any]], image_ids: list[int]
) -> list[float]:
    """The 12 ``COCOeval(gt, results, "segm").stats`` over ``image_ids`` (the reference)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = json.loads(json.dumps(gt))
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(json.loads(json.dumps(results)))
        ev = COCOeval(coco_gt, coco_dt, "segm")
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


# ------------------------------------------------------------ predictor doubles
@dataclass
class Pred:
    masks: np.ndarray
    scores: np.ndarray


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class Oracle:
    """Returns the GT mask of the instance whose box best overlaps the prompt, moved by the
    prompt's offset from that instance's box (exact mask for an exact box). Predicted IoU:
    ``pred_iou[annotation id]`` (default 1.0). Records every call."""

    def __init__(self, fx: CocoFixture, pred_iou: dict[int, float] | None = None) -> None:
        self.fx = fx
        self.pred_iou = pred_iou or {}
        self.current: int | None = None
        self.set_image_ids: list[int] = []
        self.batch_calls: list[dict[str, Any]] = []
        self.returned: list[tuple[np.ndarray, np.ndarray, float]] = []  # (box, mask, iou)

    def set_image(self, image: np.ndarray) -> None:
        hits = [i for i, img in self.fx.images.items() if np.array_equal(img, image)]
        assert len(hits) == 1
        self.current = hits[0]
        self.set_image_ids.append(hits[0])

    def _one(self, box: np.ndarray) -> tuple[np.ndarray, float]:
        cands = [(aid, m) for iid, aid, _, m in OBJECTS if iid == self.current]
        boxes = {aid: np.asarray(_xywh(m)) for aid, m in cands}
        xyxy = {a: np.r_[b[:2], b[:2] + b[2:]] for a, b in boxes.items()}
        aid, m = max(cands, key=lambda c: _box_iou(box, xyxy[c[0]]))
        dx, dy = (int(round(v)) for v in box[:2] - xyxy[aid][:2])
        moved = np.roll(np.roll(m, dy, axis=0), dx, axis=1)  # objects stay inside
        iou_ = self.pred_iou.get(aid, 1.0)
        self.returned.append((box.copy(), moved, iou_))
        return moved, iou_

    def predict_batch(
        self, points=None, labels=None, boxes=None, mask_input=None, multimask=True
    ) -> Pred:
        boxes = np.asarray(boxes, dtype=np.float64)
        self.batch_calls.append({"boxes": boxes.copy(), "multimask": multimask, "points": points})
        out = [self._one(b) for b in boxes]
        return Pred(np.stack([m for m, _ in out])[:, None], np.array([[s] for _, s in out]))


class OracleNoBatch(Oracle):
    """Only the single-prompt API."""

    predict_batch = None  # type: ignore[assignment]

    def __init__(self, fx: CocoFixture) -> None:
        super().__init__(fx)
        self.single_calls: list[dict[str, Any]] = []

    def predict(self, points=None, labels=None, box=None, mask_input=None, multimask=True):
        self.single_calls.append({"box": list(box), "multimask": multimask})
        m, s = self._one(np.asarray(box, dtype=np.float64))
        return Pred(m[None], np.array([s]))


class BoxFill(Oracle):
    """Mask = every pixel inside the prompt box; predicted IoU shrinks with the box area."""

    def _one(self, box: np.ndarray) -> tuple[np.ndarray, float]:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        m = np.zeros((H, W), dtype=bool)
        m[y0:y1, x0:x1] = True
        iou_ = 1.0 / (1.0 + m.sum() / 2000.0)
        self.returned.append((box.copy(), m, iou_))
        return m, iou_


def _xyxy(det: dict) -> np.ndarray:
    x, y, w, h = det["bbox"]
    return np.array([max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)], dtype=np.float64)


# ------------------------------------------------------------------ oracle AP
def test_perfect_detections_give_ap_one(coco: CocoFixture) -> None:
    dets = _perfect_dets()
    oracle = Oracle(coco)
    res = coco_mask_ap(oracle, coco.gt_path, dets, coco.images_dir)
    assert isinstance(res, CocoAPResult)
    for key in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
        assert res.stats()[key] == pytest.approx(1.0, abs=1e-12), key
    assert res.images == 3 and res.detections == 6 and res.count == 6
    assert res.image_ids == (1, 2, 3)
    # One encode and one batched single-mask decode per image, boxes as XYXY.
    assert oracle.set_image_ids == [1, 2, 3]
    assert [len(c["boxes"]) for c in oracle.batch_calls] == [2, 3, 1]
    assert all(c["multimask"] is False and c["points"] is None for c in oracle.batch_calls)
    sent = np.concatenate([c["boxes"] for c in oracle.batch_calls])
    np.testing.assert_array_equal(sent, np.stack([_xyxy(d) for d in dets]))
    np.testing.assert_array_equal(sent[0], [10, 10, 110, 110])
    # Results carry the detector's category and score, masks as RLE of the GT.
    by_score = {r["score"]: r for r in res.segm_results}
    for d, (*_, m) in zip(dets, OBJECTS, strict=True):
        r = by_score[d["score"]]
        assert r["image_id"] == d["image_id"] and r["category_id"] == d["category_id"]
        np.testing.assert_array_equal(mask_utils.decode(r["segmentation"]).astype(bool), m)


def test_fallback_to_single_predict(coco: CocoFixture) -> None:
    pred = OracleNoBatch(coco)
    res = coco_mask_ap(pred, coco.gt, _perfect_dets(), coco.images_dir)
    assert res.ap == pytest.approx(1.0, abs=1e-12) and res.detections == 6
    assert len(pred.single_calls) == 6
    assert all(c["multimask"] is False for c in pred.single_calls)
    assert pred.single_calls[0]["box"] == [10.0, 10.0, 110.0, 110.0]


def test_wrong_category_halves_ap(coco: CocoFixture) -> None:
    # Image 1: box (cat 1) found; the blob is detected but labelled "box" (cat 1).
    # Category 1: TP (0.9) ranked before FP (0.8) -> AP 1. Category 2: its one object is
    # missed -> AP 0. Mean over categories: 0.5.
    dets = [_det(11, 0.9), _det(12, 0.8, category=1)]
    res = coco_mask_ap(Oracle(coco), coco.gt_path, dets, coco.images_dir)
    gt_of = coco.masks
    reference = _reference_stats(
        coco.gt,
        [
            {"image_id": 1, "category_id": 1, "segmentation": _rle(gt_of[11]), "score": 0.9},
            {"image_id": 1, "category_id": 1, "segmentation": _rle(gt_of[12]), "score": 0.8},
        ],
        [1],
    )
    assert res.images == 1 and res.detections == 2
    assert res.ap == pytest.approx(0.5) and res.ap == pytest.approx(reference[0])
    assert list(res.stats().values()) == pytest.approx(reference)

    # Scored by detector x predicted IoU (box 0.9 x 0.5 < blob 0.8 x 1.0), the FP of
    # category 1 now ranks first: precision 1/2 at every recall -> AP (0.5 + 0) / 2.
    res = coco_mask_ap(
        Oracle(coco, pred_iou={11: 0.5}),
        coco.gt_path,
        dets,
        coco.images_dir,
        score_mode="detector_x_iou",
    )
    assert sorted(r["score"] for r in res.segm_results) == pytest.approx([0.45, 0.8])
    assert res.ap == pytest.approx(0.25)


def test_shifted_box_hand_reasoned(coco: CocoFixture) -> None:
    # The 100x100 box of image 1 prompted 10 px to the right: the oracle returns the mask
    # moved by 10 px, IoU 9000 / 11000 = 0.818 -> a hit at IoU thresholds .50-.80 (7 of
    # 10), a miss at .85-.95. Category 1: AP 0.7; category 2 (exact blob): 1.0 -> 0.85.
    dets = [_det(11, 0.9, dx=10), _det(12, 0.8)]
    res = coco_mask_ap(Oracle(coco), coco.gt_path, dets, coco.images_dir)
    shifted = np.roll(coco.masks[11], 10, axis=1)
    assert shifted.sum() == 10000 and not shifted[:, :20].any()
    reference = _reference_stats(
        coco.gt,
        [
            {"image_id": 1, "category_id": 1, "segmentation": _rle(shifted), "score": 0.9},
            {"image_id": 1, "category_id": 2, "segmentation": _rle(coco.masks[12]), "score": 0.8},
        ],
        [1],
    )
    assert res.ap == pytest.approx(0.85) and reference[0] == pytest.approx(0.85)
    assert res.ap50 == pytest.approx(1.0) and res.ap75 == pytest.approx(1.0)
    assert list(res.stats().values()) == pytest.approx(reference)


def test_equals_cocoeval_on_captured_predictions(coco: CocoFixture) -> None:
    # Box-filled masks (exact for rectangles, IoU ~ pi/4 for ellipses), shifted and
    # mislabelled boxes and a spurious detection: a non-trivial AP.
    dets = [
        _det(11, 0.9, dx=6),
        _det(12, 0.3),
        _det(21, 0.7, category=2),
        _det(22, 0.95),
        _det(23, 0.2, dx=-3),
        {"image_id": 2, "category_id": 1, "bbox": [140.0, 5.0, 30.0, 20.0], "score": 0.85},
        _det(31, 0.6, dx=-4),
    ]
    for mode in ("detector", "detector_x_iou"):
        pred = BoxFill(coco)
        res = coco_mask_ap(pred, coco.gt_path, dets, coco.images_dir, score_mode=mode)
        assert len(pred.returned) == len(dets) == res.detections
        # Rebuild the result list from what the predictor returned, matched by box.
        captured = []
        for d in dets:
            box, m, pred_iou = next(r for r in pred.returned if np.allclose(r[0], _xyxy(d)))
            score = d["score"] * (pred_iou if mode == "detector_x_iou" else 1.0)
            captured.append(
                {
                    "image_id": d["image_id"],
                    "category_id": d["category_id"],
                    "segmentation": _rle(m),
                    "score": score,
                }
            )
        reference = _reference_stats(coco.gt, captured, [1, 2, 3])
        assert 0.05 < reference[0] < 0.95  # not a degenerate case
        assert list(res.stats().values()) == pytest.approx(reference, abs=1e-12)
        # The clipped box: the spurious detection ends at the right edge.
        assert any(np.allclose(r[0], [140, 5, W, 25]) for r in pred.returned)
    assert res.score_mode == "detector_x_iou"


def test_limit_and_images_without_detections(coco: CocoFixture) -> None:
    dets = [d for d in _perfect_dets() if d["image_id"] != 2]
    oracle = Oracle(coco)
    res = coco_mask_ap(oracle, coco.gt, dets, coco.images_dir)
    assert res.image_ids == (1, 3) and oracle.set_image_ids == [1, 3]
    assert res.ap == pytest.approx(1.0, abs=1e-12)  # image 2's objects are not evaluated
    oracle = Oracle(coco)
    res = coco_mask_ap(oracle, coco.gt, _perfect_dets(), coco.images_dir, limit=2)
    assert res.image_ids == (1, 2) and oracle.set_image_ids == [1, 2] and res.detections == 5


def test_input_errors(coco: CocoFixture, tmp_path: Path) -> None:
    oracle = Oracle(coco)
    args = (coco.gt_path,)
    with pytest.raises(ValueError, match="image_id 99"):
        coco_mask_ap(oracle, *args, [*_perfect_dets(), {**_det(11, 0.5), "image_id": 99}], ".")
    with pytest.raises(ValueError, match="empty"):
        coco_mask_ap(oracle, *args, [], coco.images_dir)
    with pytest.raises(ValueError, match="category_id 7"):
        coco_mask_ap(oracle, *args, [_det(11, 0.5, category=7)], coco.images_dir)
    with pytest.raises(ValueError, match="score_mode"):
        coco_mask_ap(oracle, *args, _perfect_dets(), coco.images_dir, score_mode="iou")
    with pytest.raises(ValueError, match="bbox"):
        coco_mask_ap(oracle, *args, [{**_det(11, 0.5), "bbox": [1, 2, 3]}], coco.images_dir)
    assert oracle.set_image_ids == []  # every check ran before any image was encoded
    # An image whose size disagrees with its annotations' RLEs: refused when the
    # annotations are read (before any image is encoded)
    gt = json.loads(json.dumps(coco.gt))
    gt["images"][0]["height"] = H + 1
    with pytest.raises(ValueError, match="RLE size .* is not the image's"):
        coco_mask_ap(oracle, gt, _perfect_dets(), coco.images_dir)
    assert oracle.set_image_ids == []


@pytest.mark.parametrize(
    ("segmentation", "fragment"),
    [
        ([[1, 2, 3]], "at least 3 points"),
        ([], "empty polygon list"),
        ({}, "'size'"),
        ({"size": [5, 5], "counts": [25]}, "not the image's"),
    ],
)
def test_ground_truth_segmentations_are_checked(
    coco: CocoFixture, segmentation, fragment: str
) -> None:
    """pycocotools raised a bare Exception / IndexError / KeyError on these after every
    prediction was made (or scored an RLE of the wrong size): now InvalidDataset when
    the annotations are read."""
    from samkit.errors import InvalidDataset
    from samkit.eval.coco_ap import load_coco_gt

    gt = json.loads(json.dumps(coco.gt))
    gt["annotations"][0]["segmentation"] = segmentation
    with pytest.raises(InvalidDataset, match=f"annotations\\[0\\]: .*{fragment}"):
        load_coco_gt(gt)


def test_report_renders_coco_ap(coco: CocoFixture, tmp_path: Path) -> None:
    res = coco_mask_ap(Oracle(coco), coco.gt_path, _perfect_dets(), coco.images_dir)
    table = result_table(res)
    assert table.row_count == 14  # images, score mode, 12 stats
    buf = io.StringIO()
    print_results([res], Console(file=buf, width=120))
    text = " ".join(buf.getvalue().split())
    assert "coco-ap (6 detections)" in text and "mask AP50 │ 1.0000" in text
    assert "images │ 3" in text and "score │ detector" in text
    out = tmp_path / "r.json"
    write_json(out, [res], {"model": "x"})
    doc = json.loads(out.read_text())
    assert doc == json.loads(json.dumps(results_to_dict([res], {"model": "x"})))
    entry = doc["results"]["coco-ap"]
    assert (
        entry["AP"] == pytest.approx(1.0, abs=1e-12)
        and entry["images"] == 3
        and entry["detections"] == 6
    )
    assert set(STAT_KEYS) <= set(entry) and entry["image_ids"] == [1, 2, 3]
    assert "segm_results" not in entry


# --------------------------------------------------------------- real model
def test_tiny_samkit_model_end_to_end(coco: CocoFixture) -> None:
    torch.manual_seed(0)
    predictor = samkit.ImagePredictor(samkit.build_model(TINY_256))
    calls: list[int] = []
    original = predictor.predict_batch

    def spy(**kwargs: Any) -> Any:
        calls.append(len(kwargs["boxes"]))
        return original(**kwargs)

    predictor.predict_batch = spy  # type: ignore[method-assign]
    dets = _perfect_dets()
    dets.append({"image_id": 3, "category_id": 1, "bbox": [150.0, -4.0, 20.0, 30.0], "score": 0.1})
    for mode in ("detector", "detector_x_iou"):
        res = coco_mask_ap(predictor, coco.gt_path, dets, coco.images_dir, score_mode=mode)
        assert res.images == 3 and res.detections == 7 and len(res.segm_results) == 7
        values = np.array(list(res.stats().values()))
        assert np.all(np.isfinite(values)) and np.all((values >= 0) & (values <= 1)), values
        for r in res.segm_results:
            assert r["segmentation"]["size"] == [H, W]
            assert np.isfinite(r["score"])
            if mode == "detector":
                assert r["score"] in {d["score"] for d in dets}
    assert calls == [2, 3, 2, 2, 3, 2]


# ---------------------------------------------------------------------- CLI
TINY = "coco-ap-test-tiny"
runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_and_register_tiny(
        tmp_path_factory.mktemp("weights"),
        TINY,
        "https://example.invalid/coco-ap-test-tiny.pth",
        "tiny random model for the coco-ap CLI tests",
    )


def test_cli_coco_ap(coco: CocoFixture, tmp_path: Path, tiny_checkpoint: Path) -> None:
    dets_path = tmp_path / "dets.json"
    dets_path.write_text(json.dumps(_perfect_dets()))
    out = tmp_path / "ap.json"
    base = ["eval", str(coco.images_dir), "--model", TINY, "--checkpoint", str(tiny_checkpoint)]
    gt = ["--coco-annotations", str(coco.gt_path)]
    result = runner.invoke(
        app,
        [*base, *gt, "--detections", str(dets_path), "--protocol", "coco-ap", "--json", str(out)],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert "coco-ap (6 detections)" in " ".join(result.stdout.split())
    for noise in ("Loading and preparing", "DONE", "Average Precision", "index created"):
        assert noise not in result.output
    doc = json.loads(out.read_text())
    assert set(doc["results"]) == {"coco-ap"}
    entry = doc["results"]["coco-ap"]
    assert set(STAT_KEYS) <= set(entry)
    assert all(0.0 <= entry[k] <= 1.0 for k in STAT_KEYS)
    assert entry["images"] == 3 and entry["detections"] == 6
    assert doc["detections"] == str(dets_path) and doc["score_mode"] == "detector"

    # --protocol all with --detections adds coco-ap to the three prompt protocols.
    small = ["--limit", "1", "--max-objects", "1", "--max-clicks", "2", "--json", str(out)]
    result = runner.invoke(app, [*base, *gt, "--detections", str(dets_path), *small])
    assert result.exit_code == 0, (result.output, result.exception)
    doc = json.loads(out.read_text())
    assert set(doc["results"]) == {"single-point", "interactive", "box", "coco-ap"}
    assert doc["results"]["coco-ap"]["images"] == 1
    # ... and without it, exactly the three as before.
    result = runner.invoke(app, [*base, *gt, *small])
    assert result.exit_code == 0, (result.output, result.exception)
    doc = json.loads(out.read_text())
    assert set(doc["results"]) == {"single-point", "interactive", "box"}
    assert "detections" not in doc


def test_cli_coco_ap_errors(coco: CocoFixture, tmp_path: Path, tiny_checkpoint: Path) -> None:
    base = ["eval", str(coco.images_dir), "--model", TINY, "--checkpoint", str(tiny_checkpoint)]
    gt = ["--coco-annotations", str(coco.gt_path)]
    assert_cli_error(runner.invoke(app, [*base, *gt, "--protocol", "coco-ap"]), "--detections")

    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps([*_perfect_dets(), {**_det(11, 0.5), "image_id": 99}]))
    result = runner.invoke(app, [*base, *gt, "--detections", str(unknown), "--protocol", "coco-ap"])
    assert_cli_error(result, "image_id 99")

    broken = tmp_path / "broken.json"
    broken.write_text("[{not json")
    result = runner.invoke(app, [*base, *gt, "--detections", str(broken), "--protocol", "coco-ap"])
    assert_cli_error(result, "--detections")
    missing = tmp_path / "missing.json"
    result = runner.invoke(app, [*base, *gt, "--detections", str(missing), "--protocol", "coco-ap"])
    assert_cli_error(result, "--detections")
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    result = runner.invoke(app, [*base, *gt, "--detections", str(empty), "--protocol", "coco-ap"])
    assert_cli_error(result, "empty")

    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps(_perfect_dets()))
    result = runner.invoke(app, [*base, "--detections", str(dets), "--protocol", "coco-ap"])
    assert_cli_error(result, "--coco-annotations")
    result = runner.invoke(app, [*base, *gt, "--detections", str(dets), "--protocol", "box"])
    assert_cli_error(result, "--detections")


def test_gt_without_area_iscrowd_and_with_polygons(coco: CocoFixture) -> None:
    # Hand-made GT files often lack "area"/"iscrowd" (COCOeval needs both) and use
    # polygons; the box of image 1 as a polygon around its pixels' corners.
    gt = json.loads(json.dumps(coco.gt))
    for ann in gt["annotations"]:
        del ann["area"], ann["iscrowd"]
        if ann["id"] == 11:
            ann["segmentation"] = [[10, 10, 110, 10, 110, 110, 10, 110]]
    res = coco_mask_ap(Oracle(coco), gt, _perfect_dets(), coco.images_dir)
    assert res.ap == pytest.approx(1.0, abs=1e-12)
    assert all("area" not in a for a in gt["annotations"])  # the caller's dict is untouched
