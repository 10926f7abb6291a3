"""Tests of the evaluation protocols (stub predictors), the report and ``samkit eval``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from tiny_models import assert_cli_error, save_and_register_tiny
from typer.testing import CliRunner

from samkit.cli.main import app
from samkit.data import Sample, SyntheticConfig, write_synthetic_dataset
from samkit.eval.protocols import (
    BoxResult,
    InteractiveResult,
    SinglePointResult,
    box_prompt,
    interactive,
    mask_to_box,
    nested_coverage,
    nested_objects,
    single_point,
)
from samkit.eval.report import result_table, results_to_dict, write_json

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.usefixtures("cli_isolated"),  # private cache, cwd = tmp (conftest.py)
]

H, W = 40, 50


# ------------------------------------------------------------------ fixtures
def _rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def _sample(image_id: str = "img0") -> Sample:
    masks = np.stack([_rect(2, 12, 3, 20), _rect(20, 36, 25, 45), _rect(15, 18, 5, 9)])
    image = np.zeros((H, W, 3), dtype=np.uint8)
    return Sample(image=image, masks=masks, image_id=image_id)


@dataclass
class Pred:
    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray


class StubPredictor:
    """Returns masks derived from the GT of the current sample, records every call."""

    def __init__(self, samples: list[Sample]) -> None:
        self._by_image = {id(s.image): s for s in samples}
        self.gts: np.ndarray | None = None
        self.set_image_calls = 0
        self.calls: list[dict] = []

    def set_image(self, image: np.ndarray) -> None:
        self.gts = self._by_image[id(image)].masks
        self.set_image_calls += 1

    def gt_at(self, x: float, y: float) -> np.ndarray:
        """Smallest GT mask containing pixel (x, y) (empty if none)."""
        hits = [m for m in self.gts if m[int(y), int(x)]]
        if not hits:
            return np.zeros((H, W), dtype=bool)
        return min(hits, key=lambda m: m.sum())

    def gt_in_box(self, box) -> np.ndarray:
        for m in self.gts:
            if tuple(mask_to_box(m)) == tuple(int(v) for v in box):
                return m
        return np.zeros((H, W), dtype=bool)

    def respond(self, target: np.ndarray, n_clicks: int, multimask: bool) -> Pred:
        raise NotImplementedError

    def predict(self, points=None, labels=None, box=None, mask_input=None, multimask=True):
        self.calls.append(
            {
                "points": None if points is None else [list(p) for p in points],
                "labels": None if labels is None else list(labels),
                "box": box,
                "mask_input": mask_input,
                "multimask": multimask,
            }
        )
        if box is not None:
            target = self.gt_in_box(box)
            n = 1
        else:
            target = self.gt_at(*points[0])
            n = len(points)
        return self.respond(target, n, multimask)


def _logits(m: np.ndarray, tag: float) -> np.ndarray:
    return np.full((1, 8, 8), tag, dtype=np.float32)


class Oracle(StubPredictor):
    """Exactly the clicked object, ranked first among the three candidates."""

    def respond(self, target, n, multimask):
        if not multimask:
            return Pred(target[None], np.array([0.9]), _logits(target, n))
        empty = np.zeros_like(target)
        return Pred(
            np.stack([empty, target, ~target]),
            np.array([0.1, 0.9, 0.2]),
            np.concatenate([_logits(empty, -1), _logits(target, 1), _logits(target, -2)]),
        )


class WrongTop(StubPredictor):
    """Right mask among the candidates, but the top-scored one is its complement."""

    def respond(self, target, n, multimask):
        eroded = target.copy()
        eroded[np.argwhere(target)[0][0]] = False  # drop the first row: IoU < 1
        return Pred(
            np.stack([~target, target, eroded]),
            np.array([0.8, 0.5, 0.1]),
            np.zeros((3, 8, 8), dtype=np.float32),
        )


class ThreeClicks(StubPredictor):
    """Half the object for clicks 1-2 (IoU 0.5), the exact object from click 3 on."""

    def respond(self, target, n, multimask):
        if n >= 3:
            mask = target
        else:
            ys, xs = np.nonzero(target)
            mask = target.copy()
            mask[:, : (xs.min() + xs.max() + 1) // 2] = False
        k = 3 if multimask else 1
        return Pred(
            np.stack([mask] * k), np.linspace(1.0, 0.5, k), np.full((k, 8, 8), n, np.float32)
        )


# ---------------------------------------------------------------- protocols
def test_mask_to_box_exclusive_max() -> None:
    assert mask_to_box(_rect(2, 12, 3, 20)) == (3, 2, 20, 12)
    full = np.ones((H, W), dtype=bool)
    assert mask_to_box(full) == (0, 0, W, H)
    with pytest.raises(ValueError):
        mask_to_box(np.zeros((H, W), dtype=bool))


def test_single_point_oracle_is_perfect_and_encodes_once() -> None:
    samples = [_sample("a"), _sample("b")]
    pred = Oracle(samples)
    res = single_point(pred, samples)
    assert isinstance(res, SinglePointResult)
    assert res.count == 6
    assert res.miou_top == 1.0 and res.miou_oracle == 1.0
    np.testing.assert_array_equal(res.iou_top, np.ones(6))
    assert res.image_ids == ("a", "a", "a", "b", "b", "b")
    assert list(res.object_indices) == [0, 1, 2, 0, 1, 2]
    assert pred.set_image_calls == 2
    assert all(c["multimask"] and c["labels"] == [1] for c in pred.calls)
    # The click is the point farthest from the boundary of object 0: inside it.
    x, y = pred.calls[0]["points"][0]
    assert samples[0].masks[0][y, x]
    # IoU-head diagnostics: candidates are (empty, object, complement) scored 0.1/0.9/0.2.
    assert res.ious.shape == res.scores.shape == (6, 3)
    assert res.top_is_best == 1.0
    assert res.miou_per_candidate == (0.0, 1.0, 0.0)
    assert res.score_mae == pytest.approx((0.1 + 0.1 + 0.2) / 3)


def test_single_point_top_vs_oracle() -> None:
    samples = [_sample()]
    res = single_point(WrongTop(samples), samples)
    assert res.miou_oracle == 1.0
    assert res.miou_top < 0.2  # complement of the object
    gt = samples[0].masks
    expect_top = [np.sum(~m & m) / np.sum(~m | m) for m in gt]
    np.testing.assert_allclose(res.iou_top, expect_top)
    # The head always prefers the complement (IoU 0): never the best candidate.
    assert res.top_is_best == 0.0
    eroded = [153 / 170, 300 / 320, 8 / 12]  # one row dropped from 10x17, 16x20, 3x4
    np.testing.assert_allclose(res.ious, np.stack([expect_top, np.ones(3), eroded], axis=1))
    assert res.miou_per_candidate[1] == 1.0
    expect_mae = np.mean(np.abs(np.array([0.8, 0.5, 0.1]) - res.ious))
    assert res.score_mae == pytest.approx(expect_mae)
    summary = res.summary()
    assert summary["top_is_best"] == 0.0 and len(summary["miou_per_candidate"]) == 3


def test_max_objects_min_area_max_images() -> None:
    samples = [_sample("a"), _sample("b"), _sample("c")]
    pred = Oracle(samples)
    res = single_point(pred, samples, max_objects=1, max_images=2)
    assert res.count == 2 and res.image_ids == ("a", "b")
    assert pred.set_image_calls == 2
    res = single_point(Oracle(samples), samples, min_area=13)  # drops the 12-px object
    assert res.count == 6 and 2 not in res.object_indices
    with pytest.raises(ValueError, match="no object"):
        single_point(Oracle(samples), samples, min_area=10_000)
    with pytest.raises(ValueError, match="no object"):
        single_point(Oracle(samples), [])


def test_interactive_oracle_noc_is_one() -> None:
    samples = [_sample()]
    pred = Oracle(samples)
    res = interactive(pred, samples, max_clicks=5)
    assert isinstance(res, InteractiveResult)
    assert res.count == 3
    assert res.noc == (1.0, 1.0)
    assert res.noc_at(0.85) == 1.0 and res.noc_at(0.9) == 1.0
    np.testing.assert_array_equal(res.miou_per_click, np.ones(5))
    assert res.ious.shape == (3, 5)
    # Perfect after click 1: no further decoder call (nothing left to click on).
    assert len(pred.calls) == 3


def test_interactive_three_clicks() -> None:
    samples = [_sample()]
    pred = ThreeClicks(samples)
    res = interactive(pred, samples, max_clicks=6, thresholds=(0.85, 0.9, 0.4))
    assert res.noc == (3.0, 3.0, 1.0)
    np.testing.assert_allclose(res.miou_per_click[2:], 1.0)
    assert np.all(res.miou_per_click[:2] < 0.85)
    obj0 = [c for c in pred.calls[:3]]
    # Click 1: multimask, no mask input; later: single mask with the previous logits.
    assert obj0[0]["multimask"] is True and obj0[0]["mask_input"] is None
    for i, call in enumerate(obj0[1:], start=1):
        assert call["multimask"] is False
        assert call["mask_input"].shape == (1, 8, 8)
        assert np.all(call["mask_input"] == i)  # logits of click i fed to click i + 1
        assert len(call["points"]) == i + 1
    # The missing half is a false negative -> positive corrective clicks inside the GT.
    assert obj0[1]["labels"] == [1, 1]
    gt = samples[0].masks[0]
    for x, y in obj0[2]["points"]:
        assert gt[y, x]


def test_interactive_never_reached_counts_max_clicks() -> None:
    samples = [_sample()]
    res = interactive(ThreeClicks(samples), samples, max_clicks=2)
    assert res.noc == (2.0, 2.0)
    with pytest.raises(ValueError):
        interactive(ThreeClicks(samples), samples, max_clicks=0)


def test_box_prompt() -> None:
    samples = [_sample()]
    pred = Oracle(samples)
    res = box_prompt(pred, samples)
    assert isinstance(res, BoxResult)
    assert res.miou == 1.0 and res.count == 3
    assert [c["box"] for c in pred.calls] == [list(mask_to_box(m)) for m in samples[0].masks]
    assert all(c["multimask"] is False and c["points"] is None for c in pred.calls)


def test_report_table_and_json(tmp_path: Path) -> None:
    samples = [_sample()]
    results = [
        single_point(Oracle(samples), samples),
        interactive(ThreeClicks(samples), samples, max_clicks=4),
        box_prompt(Oracle(samples), samples),
    ]
    for r in results:
        assert result_table(r).row_count >= 1
    out = tmp_path / "r.json"
    write_json(out, results, {"model": "x"})
    doc = json.loads(out.read_text())
    assert doc == json.loads(json.dumps(results_to_dict(results, {"model": "x"})))
    assert doc["model"] == "x"
    assert doc["results"]["interactive"]["noc@85"] == 3.0
    assert len(doc["results"]["interactive"]["miou_per_click"]) == 4
    assert doc["results"]["single-point"]["miou_top"] == 1.0
    assert doc["results"]["box"]["per_object"]["iou"] == [1.0, 1.0, 1.0]


# ---------------------------------------------------------------------- CLI
TINY = "eval-test-tiny"
runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_and_register_tiny(
        tmp_path_factory.mktemp("weights"),
        TINY,
        "https://example.invalid/eval-test-tiny.pth",
        "tiny random model for the eval CLI tests",
    )


def test_cli_eval_all_protocols(tmp_path: Path, tiny_checkpoint: Path) -> None:
    data = tmp_path / "data"
    write_synthetic_dataset(data, 3, SyntheticConfig(size=(64, 64), objects=(1, 2)))
    out = tmp_path / "res.json"
    args = ["eval", str(data), "--model", TINY, "--checkpoint", str(tiny_checkpoint)]
    result = runner.invoke(
        app, [*args, "--max-clicks", "3", "--limit", "2", "--max-objects", "2", "--json", str(out)]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert "NoC@85" in result.stdout and "single-point" in result.stdout
    doc = json.loads(out.read_text())
    assert doc["model"] == TINY and doc["limit"] == 2
    res = doc["results"]
    assert set(res) == {"single-point", "interactive", "box"}
    assert set(res["single-point"]["per_object"]["image_id"]) == {"synth_000000", "synth_000001"}
    n = res["single-point"]["count"]
    assert 2 <= n <= 4 and res["interactive"]["count"] == n and res["box"]["count"] == n
    assert 0.0 <= res["single-point"]["miou_top"] <= res["single-point"]["miou_oracle"] <= 1.0
    assert len(res["interactive"]["miou_per_click"]) == 3
    assert 1.0 <= res["interactive"]["noc@90"] <= 3.0
    assert 0.0 <= res["box"]["miou"] <= 1.0

    # One protocol only.
    result = runner.invoke(app, [*args, "--protocol", "box", "--limit", "1", "--json", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    assert set(json.loads(out.read_text())["results"]) == {"box"}


def test_cli_eval_errors(tmp_path: Path, tiny_checkpoint: Path) -> None:
    base = ["--model", TINY, "--checkpoint", str(tiny_checkpoint)]
    assert_cli_error(runner.invoke(app, ["eval", str(tmp_path / "nope"), *base]), "not found")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_cli_error(runner.invoke(app, ["eval", str(empty), *base]), "no SA-1B samples")
    data = tmp_path / "data"
    write_synthetic_dataset(data, 1, SyntheticConfig(size=(64, 64), objects=(1, 1)))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    result = runner.invoke(app, ["eval", str(data), "--model", TINY, "--checkpoint", str(bad)])
    assert_cli_error(result, "")
    result = runner.invoke(app, ["eval", str(data), *base, "--coco-annotations", "missing.json"])
    assert_cli_error(result, "--coco-annotations")


def test_cli_eval_coco(tmp_path: Path, tiny_checkpoint: Path) -> None:
    data = tmp_path / "data"
    write_synthetic_dataset(data, 1, SyntheticConfig(size=(64, 64), objects=(1, 1)))
    ann = {
        "images": [{"id": 7, "file_name": "synth_000000.png", "height": 64, "width": 64}],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": [[10, 10, 40, 10, 40, 30, 10, 30]],
            }
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    coco = tmp_path / "instances.json"
    coco.write_text(json.dumps(ann))
    out = tmp_path / "coco.json"
    args = ["eval", str(data), "--model", TINY, "--checkpoint", str(tiny_checkpoint)]
    result = runner.invoke(
        app, [*args, "--coco-annotations", str(coco), "--protocol", "box", "--json", str(out)]
    )
    assert result.exit_code == 0, (result.output, result.exception)
    doc = json.loads(out.read_text())
    assert doc["coco_annotations"] == str(coco)
    assert doc["results"]["box"]["per_object"]["image_id"] == ["7"]


# ------------------------------------------------------------ nested coverage
def _nested_sample() -> Sample:
    """Object A: whole 40x40 (1600 px) > part 20x20 (400 px) > subpart 10x10 (100 px),
    pairwise IoUs 0.25; object B: whole and part only (not fully nested)."""
    whole, part, sub = _rect(0, 40, 0, 40), _rect(10, 30, 10, 30), _rect(15, 25, 15, 25)
    b_whole, b_part = _rect(0, 40, 45, 60), _rect(5, 20, 48, 57)
    masks = np.stack([whole, part, sub, b_whole, b_part])
    image = np.zeros((H, W, 3), dtype=np.uint8)
    return Sample(image=image, masks=masks, image_id="nested", levels=np.array([0, 1, 2, 0, 1]))


class LevelPredictor:
    """Answers any click with the given levels' masks of object A (padded to 3)."""

    def __init__(self, levels: list[int]) -> None:
        self.levels = levels
        self.masks: np.ndarray | None = None
        self.clicks: list[list[float]] = []

    def set_image(self, image: np.ndarray) -> None:
        self.masks = _nested_sample().masks

    def predict(self, points=None, labels=None, box=None, mask_input=None, multimask=True):
        self.clicks.append(list(points[0]))
        out = np.stack([self.masks[i] for i in self.levels])
        return Pred(out, np.ones(len(out)), np.zeros((len(out), 4, 4)))


def test_nested_objects_finds_only_fully_nested() -> None:
    assert nested_objects(_nested_sample()) == [(0, 1, 2)]
    no_levels = Sample(
        image=np.zeros((H, W, 3), np.uint8), masks=_nested_sample().masks, image_id="x"
    )
    assert nested_objects(no_levels) == []


def test_nested_coverage_counts_levels() -> None:
    data = [_nested_sample()]
    full = nested_coverage(LevelPredictor([2, 1, 0]), data)
    assert (full.count, full.whole, full.part, full.subpart, full.all_levels) == (
        1,
        1.0,
        1.0,
        1.0,
        1.0,
    )
    pred = LevelPredictor([0, 0, 1])
    partial = nested_coverage(pred, data)
    assert (partial.whole, partial.part, partial.subpart, partial.all_levels) == (
        1.0,
        1.0,
        0.0,
        0.0,
    )
    # the click is the subpart's innermost pixel: distance-transform maximum of a
    # 10x10 square at rows/cols 15..24 lies in its central 2x2 block
    x, y = pred.clicks[0]
    assert 19 <= x <= 20 and 19 <= y <= 20
    assert partial.to_dict()["per_object"]["matched"] == [[True, True, False]]
    with pytest.raises(ValueError, match="nested"):
        nested_coverage(pred, [Sample(image=data[0].image, masks=data[0].masks, image_id="x")])


def test_nothing_to_evaluate_is_invalid_dataset() -> None:
    """A dataset without objects is a typed error (InvalidDataset, a ValueError)."""
    from samkit.errors import InvalidDataset

    empty = [Sample(np.zeros((8, 8, 3), np.uint8), np.zeros((0, 8, 8), bool), "e", None)]
    with pytest.raises(InvalidDataset, match="no object to evaluate"):
        single_point(None, empty)
