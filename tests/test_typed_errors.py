"""The library raises typed exceptions: every error a user can cause is a
:class:`samkit.errors.SamkitError`, of its specific class, and still the builtin it was
before (``ValueError``, ``TypeError``, ``RuntimeError``, ``KeyError``) so that existing
``except`` clauses keep working.

The last test scans the source: a ``raise ValueError(...)`` (or ``TypeError``,
``RuntimeError``, ``KeyError``, ``IndexError``) may only appear at the sites of
:data:`BUILTIN_RAISES`, each with the reason it stays builtin.
"""

from __future__ import annotations

import ast
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import TINY_256

import samkit
from samkit.errors import (
    InvalidArgument,
    InvalidArgumentType,
    InvalidConfig,
    InvalidDataset,
    InvalidImage,
    InvalidMask,
    InvalidPrompt,
    NoImageSet,
    SamkitError,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SRC = Path(samkit.__file__).resolve().parent


def check(
    call: Callable[[], object],
    cls: type[SamkitError],
    builtin: type[Exception],
    match: str | None = None,
) -> SamkitError:
    """``call()`` raises a ``cls`` that is also a ``SamkitError`` and a ``builtin``."""
    with pytest.raises(builtin, match=match) as info:
        call()
    exc = info.value
    assert isinstance(exc, SamkitError), f"{type(exc).__name__}: {exc}"
    assert isinstance(exc, cls), f"{type(exc).__name__} is not {cls.__name__}: {exc}"
    return exc


@pytest.fixture(scope="module")
def sam1() -> samkit.modeling.SamModel:
    torch.manual_seed(0)
    return samkit.build_model(TINY_256).eval()


# ----------------------------------------------------------------------- the classes
def test_new_classes_are_exported_with_their_builtin_bases() -> None:
    for name, builtin in (
        ("InvalidArgument", ValueError),
        ("InvalidArgumentType", TypeError),
        ("InvalidMask", ValueError),
    ):
        cls = getattr(samkit, name)
        assert cls is getattr(samkit.errors, name) and name in samkit.__all__
        assert issubclass(cls, SamkitError) and issubclass(cls, builtin)
        assert cls.__doc__


# ------------------------------------------------------------------------------- AMG
def test_mask_generator_arguments(sam1) -> None:
    from samkit.amg import MaskGenerator

    check(lambda: MaskGenerator(object()), InvalidArgumentType, TypeError, "samkit model")
    check(lambda: MaskGenerator(sam1, points_per_side=None), InvalidArgument, ValueError, "exactly")
    check(lambda: MaskGenerator(sam1, output_mode="png"), InvalidArgument, ValueError)
    check(lambda: MaskGenerator(sam1, points_per_batch=0), InvalidArgument, ValueError)
    check(lambda: MaskGenerator(sam1, crop_n_layers=1.5), InvalidArgument, ValueError, "int")
    check(
        lambda: MaskGenerator(sam1, pred_iou_thresh=float("nan")),
        InvalidArgument,
        ValueError,
        "finite",
    )
    bad_grid = [np.array([[0.5, 1.5]])]
    check(
        lambda: MaskGenerator(sam1, points_per_side=None, point_grids=bad_grid),
        InvalidArgument,
        ValueError,
        r"\[0, 1\]",
    )


# ------------------------------------------------------------------------------- viz
def test_viz_overlay_arguments() -> None:
    from samkit.viz import MaskOverlay, overlay_masks

    image = np.zeros((8, 10, 3), np.uint8)
    check(lambda: MaskOverlay(image, alpha=1.5), InvalidArgument, ValueError, "alpha")
    overlay = MaskOverlay(image)
    check(
        lambda: overlay.add(np.ones((8, 9), bool), (255, 0, 0)),
        InvalidMask,
        ValueError,
        "image size",
    )
    masks = np.zeros((2, 8, 10), bool)
    check(
        lambda: overlay_masks(image, masks, colours=[(1, 2, 3)]),
        InvalidArgument,
        ValueError,
        "colours",
    )


# ----------------------------------------------------------------------------- masks
def test_rle_errors() -> None:
    from samkit.masks import check_coco_rle, masks_to_coco_rle, rle_decode, rle_encode

    check(lambda: rle_decode({"size": [2, 2], "counts": "!!"}), InvalidMask, ValueError, "outside")
    check(lambda: rle_decode({"size": [2, 2], "counts": "P"}), InvalidMask, ValueError, "trunc")
    check(
        lambda: rle_decode({"size": [2, 2], "counts": [1, 2]}), InvalidMask, ValueError, "H \\* W"
    )
    check(lambda: check_coco_rle({"counts": [4]}), InvalidMask, ValueError, "'size'")
    huge = {"size": [256, 256], "counts": [0, 100, 1e300]}  # no int64 (was OverflowError)
    check(lambda: rle_decode(huge), InvalidMask, ValueError, "integers")
    check(lambda: masks_to_coco_rle(np.zeros((4, 4), bool)), InvalidMask, ValueError, "N, H, W")
    check(lambda: rle_encode(torch.zeros(4, 4, dtype=torch.bool)), InvalidMask, ValueError)


def test_mask_helpers_arguments() -> None:
    from samkit.masks import (
        box_xyxy_to_xywh,
        build_all_layer_point_grids,
        masks_to_boxes,
        nms,
        remove_small_regions,
    )

    check(lambda: build_all_layer_point_grids(0, 0, 1), InvalidArgument, ValueError)
    check(lambda: build_all_layer_point_grids(4, 3, 2), InvalidArgument, ValueError, "layer 3")
    check(
        lambda: remove_small_regions(np.zeros((4, 4), bool), 2, "dots"),
        InvalidArgument,
        ValueError,
        "mode",
    )
    check(lambda: masks_to_boxes(torch.zeros(4)), InvalidMask, ValueError)
    check(lambda: box_xyxy_to_xywh([1, 2, 3]), InvalidArgument, ValueError, "4 numbers")
    check(lambda: nms(torch.zeros(3, 5), torch.zeros(3), 0.5), InvalidArgument, ValueError)


# ------------------------------------------------------------------------------ data
def test_synthetic_config_ranges() -> None:
    from samkit.data.synthetic import SyntheticConfig, write_synthetic_dataset
    from samkit.data.synthetic_video import SyntheticVideoConfig, SyntheticVideoDataset

    exc = check(lambda: SyntheticConfig(size=(8, 8)), InvalidConfig, ValueError, "size")
    assert exc.field == "size"
    check(lambda: SyntheticConfig(objects=(3, 2)), InvalidConfig, ValueError, "objects")
    check(lambda: SyntheticConfig(scale=(0.0, 0.5)), InvalidConfig, ValueError, "scale")
    exc = check(lambda: SyntheticVideoConfig(num_frames=0), InvalidConfig, ValueError)
    assert exc.field == "num_frames"
    check(lambda: SyntheticVideoDataset(-1), InvalidArgument, ValueError, "n must")
    check(
        lambda: write_synthetic_dataset("unused", 1, image_format="gif"),
        InvalidArgument,
        ValueError,
        "image_format",
    )


def test_data_writers(tmp_path: Path) -> None:
    from samkit.data.amg_json import export_coco, write_amg_json
    from samkit.data.sa1b import write_sa1b

    out = tmp_path / "a.json"
    check(lambda: write_amg_json(out, [], {"width": 4}), InvalidArgument, ValueError, "height")
    record = {
        "segmentation": np.ones((3, 3), bool),
        "area": 9,
        "bbox": [0, 0, 3, 3],
        "predicted_iou": 1.0,
        "point_coords": [[1, 1]],
        "stability_score": 1.0,
        "crop_box": [0, 0, 4, 4],
    }
    info = {"width": 4, "height": 4, "file_name": "a.png"}
    check(lambda: write_amg_json(out, [record], info), InvalidMask, ValueError, "record 0")
    check(
        lambda: write_amg_json(
            out, [{**record, "bbox": [0, 0]}], {**info, "width": 3, "height": 3}
        ),
        InvalidArgument,
        ValueError,
        "bbox",
    )
    check(lambda: write_amg_json(out, [{}], info), InvalidArgument, ValueError, "record 0")
    assert not out.exists()
    out.write_text("{}")
    check(lambda: export_coco([out], out), InvalidArgument, ValueError, "one of the inputs")
    check(
        lambda: write_sa1b(tmp_path / "x.png", np.zeros((4, 4), bool), tmp_path / "x.json"),
        InvalidMask,
        ValueError,
        "M, H, W",
    )


def test_coco_segmentation_wraps_into_invalid_dataset() -> None:
    from samkit.data.coco import coco_segmentation_to_rle

    check(lambda: coco_segmentation_to_rle([], 4, 4), InvalidDataset, ValueError, "empty")
    check(lambda: coco_segmentation_to_rle(7, 4, 4), InvalidDataset, ValueError, "polygons")
    bad = {"size": [4, 4], "counts": [3]}  # an InvalidMask inside, re-raised as dataset error
    check(lambda: coco_segmentation_to_rle(bad, 4, 4), InvalidDataset, ValueError, "H \\* W")


def test_augment_arguments() -> None:
    from samkit.data.augment import resize_longest_side
    from samkit.data.types import Sample

    sample = Sample(np.zeros((4, 4, 3), np.uint8), np.zeros((0, 4, 4), bool), "a")
    check(lambda: resize_longest_side(sample, 0), InvalidArgument, ValueError, "long_side")


# ----------------------------------------------------------------------------- train
def test_train_prompt_simulator() -> None:
    from samkit.train.prompts import InteractiveSimulator, Prompt, make_schedule

    check(lambda: InteractiveSimulator(num_rounds=2), InvalidArgument, ValueError, "num_rounds")
    check(lambda: make_schedule(1, np.random.default_rng(0)), InvalidArgument, ValueError)
    sim = InteractiveSimulator(rng=0)
    check(lambda: sim.first_prompt(np.zeros((4, 4), bool)), InvalidMask, ValueError, "empty")
    check(lambda: sim.first_prompt(np.ones((1, 4, 4), bool)), InvalidMask, ValueError, "2-D")
    check(
        lambda: sim.next_point(np.ones((4, 4), bool), np.ones((4, 5), bool)),
        InvalidMask,
        ValueError,
        "differ",
    )
    check(lambda: Prompt(points=[[1, 2]], labels=[]), InvalidPrompt, ValueError, "labels")
    check(
        lambda: Prompt(mask_input=np.zeros((2, 4, 4), np.float32)),
        InvalidPrompt,
        ValueError,
        "mask_input",
    )


def test_loss_shape_checks() -> None:
    from samkit.train.losses import resize_targets, sam_loss, sigmoid_focal_loss

    logits = torch.zeros(2, 3, 8, 8)
    check(
        lambda: sam_loss(logits[0], torch.zeros(2, 3), torch.zeros(2, 1, 8, 8)),
        InvalidArgument,
        ValueError,
        "mask_logits",
    )
    check(
        lambda: sam_loss(logits, torch.zeros(2, 2), torch.zeros(2, 1, 8, 8)),
        InvalidArgument,
        ValueError,
        "iou_pred",
    )
    check(
        lambda: sam_loss(logits, torch.zeros(2, 3), torch.zeros(2, 1, 8, 8), iou_loss="huber"),
        InvalidArgument,
        ValueError,
        "iou_loss",
    )
    check(
        lambda: sigmoid_focal_loss(logits, torch.zeros(2, 1, 4, 4)),
        InvalidMask,
        ValueError,
        "resize_targets",
    )
    check(lambda: resize_targets(torch.zeros(2, 2, 4, 4), 8), InvalidMask, ValueError)


def test_train_config_checks() -> None:
    from samkit.train.params import freeze_by_prefix
    from samkit.train.video import VideoTrainConfig

    exc = check(lambda: VideoTrainConfig(iou_loss="mse"), InvalidConfig, ValueError, "iou_loss")
    assert exc.field == "iou_loss"
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    exc = check(lambda: freeze_by_prefix(model, ["nope"]), InvalidConfig, ValueError, "freeze")
    assert exc.field == "freeze"


# ------------------------------------------------------------------------------ eval
def test_eval_metric_inputs() -> None:
    from samkit.eval.metrics import (
        batch_iou,
        boundary_f_measure,
        click_point_farthest_from_boundary,
        iou,
        j_and_f,
        mean_noc,
        miou,
        noc,
    )

    check(lambda: iou(np.ones((2, 2)), np.ones((2, 2, 1))), InvalidMask, ValueError, "dimensions")
    check(lambda: iou(np.ones((2, 2)), np.ones((2, 3))), InvalidMask, ValueError, "same shape")
    check(lambda: batch_iou(np.ones((2, 2)), np.ones((2, 2))), InvalidMask, ValueError)
    check(lambda: miou([]), InvalidArgument, ValueError, "empty")
    check(
        lambda: click_point_farthest_from_boundary(np.zeros((3, 3), bool)),
        InvalidMask,
        ValueError,
        "empty mask",
    )
    check(lambda: noc([0.5], 0.9, max_clicks=0), InvalidArgument, ValueError, "max_clicks")
    check(lambda: mean_noc([], 0.9), InvalidArgument, ValueError, "zero objects")
    m = np.ones((4, 4), bool)
    check(lambda: boundary_f_measure(m, m, bound_th=-1), InvalidArgument, ValueError, "bound_th")
    frames = np.ones((2, 4, 4), bool)
    check(
        lambda: j_and_f(frames, frames, exclude_first_last=True),
        InvalidArgument,
        ValueError,
        "no frames",
    )


def test_eval_results_and_protocol_arguments() -> None:
    from samkit.eval.protocols import mask_to_box
    from samkit.eval.results import InteractiveResult

    res = InteractiveResult(
        thresholds=(0.85,),
        noc=(1.0,),
        max_clicks=1,
        count=1,
        miou_per_click=np.ones(1),
        ious=np.ones((1, 1)),
        image_ids=("a",),
        object_indices=np.zeros(1, np.int64),
    )
    exc = check(lambda: res.noc_at(0.5), InvalidArgument, KeyError, "not evaluated")
    assert isinstance(exc, ValueError) and str(exc).startswith("threshold 0.5")
    check(lambda: mask_to_box(np.zeros((3, 3), bool)), InvalidMask, ValueError, "empty mask")


def test_coco_ap_results_file_errors(tmp_path: Path) -> None:
    from samkit.eval import coco_ap

    bad = tmp_path / "dets.json"
    bad.write_text("not json", encoding="utf-8")
    check(lambda: coco_ap.load_detections(bad), InvalidDataset, ValueError, "not valid JSON")
    check(lambda: coco_ap.load_coco_gt(bad), InvalidDataset, ValueError, "not valid JSON")
    check(lambda: coco_ap.load_detections([]), InvalidDataset, ValueError, "empty")
    check(lambda: coco_ap.load_detections({"a": 1}), InvalidDataset, ValueError, "JSON array")
    check(lambda: coco_ap.load_detections([{"image_id": 1}]), InvalidDataset, ValueError, "lacks")
    det = {"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 2], "score": 0.5}
    check(lambda: coco_ap.load_detections([det]), InvalidDataset, ValueError, "negative")
    check(lambda: coco_ap.load_coco_gt({"images": []}), InvalidDataset, ValueError, "no 'ann")
    gt = {"images": [], "annotations": [], "categories": []}
    det["bbox"] = [0, 0, 1, 1]
    check(lambda: coco_ap.check_detections(gt, [det]), InvalidDataset, ValueError, "image_id")
    check(
        lambda: coco_ap.coco_mask_ap(None, gt, [det], tmp_path, score_mode="max"),  # type: ignore[arg-type]
        InvalidArgument,
        ValueError,
        "score_mode",
    )


# ----------------------------------------------------------------------------- video
def _memory(frame: int, conditioning: bool = True):
    from samkit.video.state import Memory

    z = torch.zeros(1, 4, 2, 2)
    return Memory(frame, conditioning, z, z, torch.zeros(1, 8), torch.zeros(1, 1))


def test_video_state_and_memory_bank_arguments() -> None:
    from samkit.video.frames import mask_to_model, points_to_model
    from samkit.video.memory_bank import by_frame
    from samkit.video.state import Memory, TrackerOptions, TrackOutput

    exc = check(lambda: TrackerOptions(memory_temporal_stride=0), InvalidConfig, ValueError)
    assert exc.field == "memory_temporal_stride"
    check(lambda: TrackerOptions(max_cond_frames_in_attn=1), InvalidConfig, ValueError)
    check(lambda: Memory.cat([]), InvalidArgument, ValueError, "no memories")
    check(lambda: Memory.cat([_memory(0), _memory(1)]), InvalidArgument, ValueError, "same frame")
    check(lambda: by_frame([_memory(3), _memory(3)]), InvalidArgument, ValueError, "frame 3")
    z = torch.zeros(1, 1)
    out = TrackOutput(z, z, z, z, z, z)
    check(lambda: out.to_memory(0, True), InvalidArgument, ValueError, "no encoded memory")
    check(
        lambda: points_to_model([[1, 2]], None, (8, 8), 64), InvalidPrompt, ValueError, "together"
    )
    check(lambda: points_to_model(None, None, (8, 8), 64), InvalidPrompt, ValueError, "a box")
    check(lambda: mask_to_model(np.zeros((1, 4, 4)), 64), InvalidPrompt, ValueError, "H, W")


def test_video_predictor_and_session_arguments(sam1) -> None:
    import test_video_session as tvs

    from samkit.video import VideoPredictor

    check(lambda: VideoPredictor(sam1), InvalidArgumentType, TypeError, "SAM 2 model")
    predictor = VideoPredictor(tvs._tiny_model())
    frames = [np.zeros((48, 64, 3), dtype=np.uint8)] * 3
    check(lambda: predictor.start(frames, max_cached_frames=0), InvalidArgument, ValueError)
    check(lambda: predictor.start(iter(frames), num_frames=0), InvalidArgument, ValueError)
    with predictor.start(frames) as session:
        session.add_prompt(0, 1, points=[[10, 10]], labels=[1])
        check(lambda: list(session.propagate(direction="up")), InvalidArgument, ValueError)
        check(lambda: list(session.propagate(max_frames=-1)), InvalidArgument, ValueError)


def test_compile_model_arguments(sam1) -> None:
    from samkit.compile import compile_model

    check(lambda: compile_model(torch.nn.Linear(1, 1)), InvalidArgumentType, TypeError)
    check(lambda: compile_model(sam1, "memory_encoder"), InvalidArgument, ValueError, "not a")


# ---------------------------------------------------------------------------- compat
def test_compat_predictors_before_set_image(sam1) -> None:
    import helpers_sam2

    from samkit.compat import SAM2ImagePredictor, SamPredictor

    message = r"^An image must be set with \.set_image\(\.\.\.\) before mask prediction\.$"
    predictor = SamPredictor(sam1)
    check(lambda: predictor.predict(), NoImageSet, RuntimeError, message)
    check(lambda: predictor.get_image_embedding(), NoImageSet, RuntimeError, message)

    check(lambda: SAM2ImagePredictor(sam1), InvalidArgumentType, TypeError, "SAM 2")
    torch.manual_seed(0)
    sam2 = samkit.build_model(helpers_sam2.tiny_video_config()).eval()
    predictor2 = SAM2ImagePredictor(sam2)
    check(lambda: predictor2.predict(), NoImageSet, RuntimeError, message)
    check(
        lambda: predictor2.get_image_embedding(),
        NoImageSet,
        RuntimeError,
        r"An image must be set with \.set_image\(\.\.\.\) to get an embedding\.",
    )
    check(lambda: predictor2.predict_batch(), NoImageSet, RuntimeError, "set_image_batch")
    check(
        lambda: predictor2._transforms.transform_coords(torch.zeros(1, 2), normalize=True),
        InvalidArgument,
        ValueError,
        "orig_hw",
    )


# ---------------------------------------------------------------- layers / modeling
def test_layer_and_architecture_config_checks() -> None:
    from samkit.layers.attention import Attention
    from samkit.layers.position import PositionEmbeddingSine
    from samkit.layers.rope import apply_rope_qk, axial_rope

    check(lambda: axial_rope(6, 2, 2), InvalidConfig, ValueError, "divisible by 4")
    check(lambda: Attention(10, 3), InvalidConfig, ValueError, "num_heads")
    check(lambda: PositionEmbeddingSine(3), InvalidConfig, ValueError, "even")
    rope = axial_rope(8, 2, 2)
    q = torch.zeros(1, 1, 4, 8)
    check(lambda: apply_rope_qk(q[:, :, :3], q, rope), InvalidArgument, ValueError, "RoPE table")
    check(
        lambda: apply_rope_qk(q, q, rope, num_k_exclude=5), InvalidArgument, ValueError, "exceeds"
    )


def test_build_and_registry_arguments() -> None:
    from samkit.build import check_dtype
    from samkit.configs import register

    check(lambda: check_dtype("int8"), InvalidArgument, ValueError, "dtype")
    check(lambda: register(samkit.get_preset("sam-vit-b")), InvalidArgument, ValueError, "already")


def test_frame_writer_checks_frames(tmp_path: Path) -> None:
    pytest.importorskip("av")
    from samkit.video import VideoFileWriter

    writer = VideoFileWriter(tmp_path / "out.mp4", fps=5)
    try:
        check(lambda: writer.write(np.zeros((4, 4), np.uint8)), InvalidImage, ValueError, "uint8")
        writer.write(np.zeros((4, 4, 3), np.uint8))
        check(lambda: writer.write(np.zeros((6, 4, 3), np.uint8)), InvalidImage, ValueError, "size")
    finally:
        writer.close()


# ----------------------------------------------------------------- the source scan
#: Every ``raise <builtin>(...)`` left in src/samkit: ``(file, function, exception) ->
#: count``, with why it stays builtin. Anything else a user can cause raises a
#: :class:`~samkit.errors.SamkitError` subclass.
BUILTIN_RAISES: dict[tuple[str, str, str], int] = {
    # Sequence protocol: ``for`` loops and ``list()`` over a dataset stop at IndexError.
    ("data/coco.py", "CocoInstancesDataset.__getitem__", "IndexError"): 1,
    ("data/sa1b.py", "SA1BDataset.__getitem__", "IndexError"): 1,
    ("data/synthetic.py", "SyntheticDataset.__getitem__", "IndexError"): 1,
    ("data/synthetic_video.py", "SyntheticVideoDataset.__getitem__", "IndexError"): 1,
    # Mapping protocol: Mapping.get / ``in`` / ``.items()`` rely on KeyError.
    ("video/memory_bank.py", "BatchedMemories.__getitem__", "KeyError"): 1,
}

_BUILTINS = {"ValueError", "TypeError", "RuntimeError", "KeyError", "IndexError"}


class _RaiseFinder(ast.NodeVisitor):
    """Counts ``raise <builtin>`` / ``raise <builtin>(...)`` per enclosing function."""

    def __init__(self, rel: str, found: Counter[tuple[str, str, str]]) -> None:
        self.rel = rel
        self.found = found
        self.scope: list[str] = []

    def visit_scope(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_scope

    def visit_Raise(self, node: ast.Raise) -> None:
        exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        if isinstance(exc, ast.Name) and exc.id in _BUILTINS:
            self.found[(self.rel, ".".join(self.scope) or "<module>", exc.id)] += 1
        self.generic_visit(node)


def builtin_raises(root: Path = SRC) -> Counter[tuple[str, str, str]]:
    """``(file relative to root, qualified function, exception) -> count`` of every
    ``raise ValueError(...)`` / ``raise ValueError`` (and the other builtins) under
    ``root``."""
    found: Counter[tuple[str, str, str]] = Counter()
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        _RaiseFinder(path.relative_to(root).as_posix(), found).visit(tree)
    return found


def test_scan_finds_builtin_raises(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text(
        "class A:\n"
        "    def f(self):\n"
        "        raise ValueError('x')\n"
        "def g():\n"
        "    def inner():\n"
        "        raise KeyError\n"
        "    raise samkit.errors.InvalidArgument('y')\n",
        encoding="utf-8",
    )
    assert builtin_raises(tmp_path) == {
        ("m.py", "A.f", "ValueError"): 1,
        ("m.py", "g.inner", "KeyError"): 1,
    }


def test_no_new_builtin_raises() -> None:
    found = builtin_raises()
    new = {k: v for k, v in found.items() if v > BUILTIN_RAISES.get(k, 0)}
    stale = {k: v for k, v in BUILTIN_RAISES.items() if found.get(k, 0) != v}
    assert not new, (
        "raise a samkit.errors class (InvalidArgument, InvalidArgumentType, InvalidMask, "
        f"...) instead of a builtin exception at {json.dumps([list(k) for k in new])}, "
        "or add the site to BUILTIN_RAISES with the reason it must stay builtin"
    )
    assert not stale, f"BUILTIN_RAISES lists sites that are gone or changed: {stale}"
