"""Unit tests: resize geometry and mask upsampling against the official code, prompt and
image validation errors, and ``ImageEmbedding`` serialisation.

Expected values come from the official ``segment_anything`` functions (imported through
``reference_shims``; the tests fail if they cannot be imported) or from hand computation.
"""

from __future__ import annotations

import io
import itertools
import types

import helpers_sam as H
import numpy as np
import pytest
import reference_shims
import torch
from PIL import Image

import samkit
from samkit import ImageEmbedding, InvalidImage, InvalidPrompt, NoImageSet
from samkit.inference.transforms import (
    postprocess_masks,
    preprocess_shape,
    resize_longest_side,
    to_rgb_uint8,
)


@pytest.fixture(scope="module")
def sa():
    return reference_shims.import_segment_anything()


# ------------------------------------------------------------------- geometry
SIZES = sorted(
    {1, 2, 3, 7, 16, 37, 63, 64, 100, 255, 333, 480, 511, 512, 513, 640, 767, 1000}
    | {1023, 1024, 1025, 1365, 1500, 2047, 2048, 3000, 4095, 5000}
)


def test_preprocess_shape_matches_official(sa) -> None:
    official = sa.utils.transforms.ResizeLongestSide.get_preprocess_shape
    checked = 0
    for long_side in (1024, 512, 256):
        for h, w in itertools.product(SIZES, SIZES):
            assert preprocess_shape(h, w, long_side) == official(h, w, long_side), (h, w)
            checked += 1
    rng = np.random.default_rng(0)
    for h, w in rng.integers(1, 10_000, size=(2000, 2)):
        assert preprocess_shape(int(h), int(w), 1024) == official(int(h), int(w), 1024), (h, w)
        checked += 1
    assert checked > 2000


def test_preprocess_shape_by_hand() -> None:
    assert preprocess_shape(1, 1, 1024) == (1024, 1024)
    assert preprocess_shape(480, 640, 1024) == (768, 1024)
    assert preprocess_shape(37, 1500, 1024) == (25, 1024)  # 37 * 1024 / 1500 = 25.26
    assert preprocess_shape(1500, 37, 1024) == (1024, 25)
    assert preprocess_shape(3, 2048, 1024) == (2, 1024)  # 1.5 rounds half up


@pytest.mark.parametrize("shape", [(1, 1), (37, 1500), (1500, 37), (480, 640), (5, 7)])
def test_resize_matches_official_apply_image(sa, shape) -> None:
    img = H.make_image(*shape, seed=3)
    official = sa.utils.transforms.ResizeLongestSide(1024).apply_image(img)
    ours = resize_longest_side(img, 1024)
    assert ours.dtype == np.uint8 and np.array_equal(ours, official)


def _official_postprocess(sa, low_res, input_size, original_size, img_size=1024):
    # the official method only reads self.image_encoder.img_size
    fake_self = types.SimpleNamespace(image_encoder=types.SimpleNamespace(img_size=img_size))
    return sa.modeling.Sam.postprocess_masks(fake_self, low_res, input_size, original_size)


@pytest.mark.parametrize(
    "original",
    [(1, 1), (37, 1500), (1500, 37), (480, 640), (1024, 1024), (768, 1024), (2000, 3), (7, 9)],
)
def test_postprocess_masks_matches_official(sa, original) -> None:
    gen = torch.Generator().manual_seed(sum(original))
    low_res = 4.0 * torch.randn(2, 3, 256, 256, generator=gen)
    input_size = preprocess_shape(*original, 1024)
    expected = _official_postprocess(sa, low_res, input_size, original)
    actual = postprocess_masks(low_res, input_size, original, 1024)
    assert actual.shape == expected.shape == (2, 3, *original)
    diff = (actual - expected).abs().max().item()
    print(f"postprocess {original}: max abs diff {diff:.3e}")
    assert diff <= 1e-5
    assert torch.equal(actual > 0, expected > 0)


@pytest.mark.parametrize("low", [64, 200, 256])
def test_postprocess_masks_other_grids(sa, low: int) -> None:
    """Low-res grids that do / do not divide the model input size (both code paths)."""
    gen = torch.Generator().manual_seed(low)
    low_res = torch.randn(1, 1, low, low, generator=gen)
    for original in [(300, 500), (37, 1500)]:
        input_size = preprocess_shape(*original, 1024)
        expected = _official_postprocess(sa, low_res, input_size, original)
        actual = postprocess_masks(low_res, input_size, original, 1024)
        assert actual.shape == expected.shape
        assert (actual - expected).abs().max().item() <= 1e-5


# --------------------------------------------------------------- predictor setup
@pytest.fixture(scope="module")
def model():
    return H.reduced_pair()[1]


@pytest.fixture(scope="module")
def fake_embedding(model) -> ImageEmbedding:
    """A random embedding for a 100x200 image: prompt checks need no encoder run."""
    features = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(5))
    return ImageEmbedding(features, (100, 200), preprocess_shape(100, 200, 1024), model.name)


@pytest.fixture
def predictor(model, fake_embedding) -> samkit.ImagePredictor:
    p = samkit.ImagePredictor(model)
    p.set_embedding(fake_embedding)
    return p


def test_valid_prompts_work(predictor) -> None:
    # sanity: the base prompts of the error cases below are accepted
    res = predictor.predict(points=[[10, 20], [199, 99]], labels=[1, 0], box=[0, 0, 200, 100])
    assert res.masks.shape == (3, 100, 200)
    res = predictor.predict(mask_input=np.zeros((1, 256, 256), np.float32), multimask=False)
    assert res.masks.shape == (1, 100, 200)
    batch = predictor.predict_batch(
        points=np.zeros((2, 1, 2)), labels=np.ones((2, 1)), boxes=[[0, 0, 5, 5], [1, 1, 9, 9]]
    )
    assert batch.masks.shape == (2, 3, 100, 200)


SINGLE_ERRORS = {
    "point-x-outside": {"points": [[201, 50]], "labels": [1]},
    "point-y-outside": {"points": [[50, 101]], "labels": [1]},
    "point-negative": {"points": [[-1, 50]], "labels": [1]},
    "labels-too-short": {"points": [[10, 10], [20, 20]], "labels": [1]},
    "labels-too-long": {"points": [[10, 10]], "labels": [1, 0]},
    "label-5": {"points": [[10, 10]], "labels": [5]},
    "label-2": {"points": [[10, 10]], "labels": [2]},
    "label-0.5": {"points": [[10, 10]], "labels": [0.5]},
    "points-nan": {"points": [[np.nan, 10]], "labels": [1]},
    "points-inf": {"points": [[np.inf, 10]], "labels": [1]},
    "labels-nan": {"points": [[10, 10]], "labels": [np.nan]},
    "points-wrong-shape": {"points": [[10, 10, 10]], "labels": [1]},
    "points-3d": {"points": [[[10, 10]]], "labels": [[1]]},
    "points-not-numeric": {"points": [["a", "b"]], "labels": [1]},
    "points-without-labels": {"points": [[10, 10]]},
    "labels-without-points": {"labels": [1]},
    "box-x1-lt-x0": {"box": [50, 10, 40, 20]},
    "box-y1-lt-y0": {"box": [10, 50, 20, 40]},
    "box-nan": {"box": [0, 0, np.nan, 10]},
    "box-outside": {"box": [0, 0, 250, 50]},
    "box-three-values": {"box": [0, 0, 10]},
    "box-two-boxes": {"box": [[0, 0, 10, 10], [0, 0, 20, 20]]},
    "mask-wrong-size": {"mask_input": np.zeros((1, 128, 128), np.float32)},
    "mask-two-channels": {"mask_input": np.zeros((2, 256, 256), np.float32)},
    "mask-nan": {"mask_input": np.full((1, 256, 256), np.nan, np.float32)},
}


@pytest.mark.parametrize("case", list(SINGLE_ERRORS))
def test_invalid_single_prompt(predictor, case: str) -> None:
    with pytest.raises(InvalidPrompt) as info:
        predictor.predict(**SINGLE_ERRORS[case])
    assert str(info.value)
    assert isinstance(info.value, ValueError)


BATCH_ERRORS = {
    "points-vs-boxes": {
        "points": np.zeros((2, 1, 2)),
        "labels": np.ones((2, 1)),
        "boxes": np.array([[0, 0, 5, 5]] * 3),
    },
    "boxes-vs-masks": {
        "boxes": np.array([[0, 0, 5, 5]] * 2),
        "mask_input": np.zeros((3, 1, 256, 256), np.float32),
    },
    "labels-batch": {"points": np.zeros((2, 1, 2)), "labels": np.ones((3, 1))},
    "points-2d": {"points": np.zeros((1, 2)), "labels": np.ones((1,))},
    "boxes-1d": {"boxes": np.array([0, 0, 5, 5, 6])},
    "mask-3d": {"mask_input": np.zeros((2, 256, 256), np.float32)},
    "empty": {"boxes": np.zeros((0, 4))},
    "box-outside": {"boxes": np.array([[0, 0, 5, 5], [0, 0, 5, 101]])},
}


@pytest.mark.parametrize("case", list(BATCH_ERRORS))
def test_invalid_batch_prompt(predictor, case: str) -> None:
    with pytest.raises(InvalidPrompt):
        predictor.predict_batch(**BATCH_ERRORS[case])


def test_padding_label_points_are_not_bounds_checked(predictor) -> None:
    # label -1 marks padding; its coordinates are ignored (documented)
    res = predictor.predict_batch(
        points=np.array([[[10, 10], [999, 999]], [[20, 20], [30, 30]]]),
        labels=np.array([[1, -1], [1, 0]]),
    )
    assert res.masks.shape == (2, 3, 100, 200)


def test_points_on_the_border_are_inside(predictor) -> None:
    res = predictor.predict(points=[[0, 0], [200, 100]], labels=[1, 0], box=[0, 0, 200, 100])
    assert res.masks.shape == (3, 100, 200)


def test_predict_before_set_image(model) -> None:
    p = samkit.ImagePredictor(model)
    assert p.embedding is None
    with pytest.raises(NoImageSet):
        p.predict(points=[[1, 1]], labels=[1])
    with pytest.raises(NoImageSet):
        p.predict_batch(boxes=[[0, 0, 1, 1]])
    with pytest.raises(NoImageSet):
        p.predict_torch(torch.zeros(1, 1, 2), torch.ones(1, 1))


def test_reset_forgets_the_image(predictor) -> None:
    predictor.reset()
    with pytest.raises(NoImageSet):
        predictor.predict(points=[[1, 1]], labels=[1])


def test_mask_input_error_names_the_given_shape(predictor) -> None:
    with pytest.raises(InvalidPrompt, match=r"got \(2, 256, 256\)"):
        predictor.predict(mask_input=np.zeros((2, 256, 256), np.float32))
    with pytest.raises(InvalidPrompt, match=r"got \(1, 128, 128\)"):
        predictor.predict_batch(boxes=[[0, 0, 5, 5]], mask_input=np.zeros((1, 128, 128)))


TORCH_ERRORS = {
    "coords-without-labels": (torch.zeros(1, 1, 2), None, None, None),
    "coords-2d": (torch.zeros(1, 2), torch.ones(1), None, None),
    "labels-wrong-shape": (torch.zeros(2, 3, 2), torch.ones(2, 2), None, None),
    "coords-nan": (torch.full((1, 1, 2), float("nan")), torch.ones(1, 1), None, None),
    "boxes-three-values": (None, None, torch.zeros(1, 3), None),
    "boxes-vs-points": (torch.zeros(3, 1, 2), torch.ones(3, 1), torch.zeros(2, 4), None),
    "mask-wrong-size": (None, None, None, torch.zeros(1, 1, 64, 64)),
    "mask-3d": (None, None, None, torch.zeros(1, 256, 256)),
    "mask-vs-points": (torch.zeros(2, 1, 2), torch.ones(2, 1), None, torch.zeros(3, 1, 256, 256)),
}


@pytest.mark.parametrize("case", list(TORCH_ERRORS))
def test_invalid_predict_torch_prompts(predictor, case: str) -> None:
    """``predict_torch`` (input-frame tensors) raises InvalidPrompt, not an error from
    inside the decoder; one mask may go with every prompt set, as officially."""
    with pytest.raises(InvalidPrompt):
        predictor.predict_torch(*TORCH_ERRORS[case])
    masks, iou, low = predictor.predict_torch(
        torch.zeros(2, 1, 2), torch.ones(2, 1), mask_input=torch.zeros(1, 1, 256, 256)
    )
    assert masks.shape == (2, 3, 100, 200) and iou.shape == (2, 3)


def test_predict_torch_reads_any_box_layout_as_a_list(predictor) -> None:
    """Boxes ``(4,)``, ``(N, 4)`` and ``(N, 1, 4)`` are lists of boxes (as the official
    prompt encoder reads them); ``(2, 2, 4)`` is four boxes, not two."""
    box = torch.tensor([10.0, 20.0, 60.0, 80.0])
    reference = predictor.predict_torch(None, None, boxes=box[None], multimask_output=False)
    for layout in (box, box[None, None]):
        got = predictor.predict_torch(None, None, boxes=layout, multimask_output=False)
        assert torch.equal(got[0], reference[0]) and torch.allclose(got[1], reference[1])
    masks, _, _ = predictor.predict_torch(None, None, boxes=box.expand(2, 2, 4))
    assert masks.shape[0] == 4


# ---------------------------------------------------------------------- images
def _bad_images(tmp_path) -> dict[str, object]:
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    truncated = tmp_path / "truncated.png"
    buf = tmp_path / "full.png"
    Image.fromarray(H.make_image(64, 64)).save(buf)
    truncated.write_bytes(buf.read_bytes()[:100])
    return {
        "4d": np.zeros((1, 8, 8, 3), np.uint8),
        "1d": np.zeros(8, np.uint8),
        "int64": np.zeros((8, 8, 3), np.int64),
        "uint32": np.zeros((8, 8, 3), np.uint32),
        "float-above-1": np.full((8, 8, 3), 1.5),
        "float-negative": np.full((8, 8, 3), -0.1),
        "float-nan": np.full((8, 8, 3), np.nan),
        "empty-0x5": np.zeros((0, 5, 3), np.uint8),
        "empty-0x5-gray": np.zeros((0, 5), np.uint8),
        "empty-5x0": np.zeros((5, 0, 3), np.uint8),
        "two-channels": np.zeros((8, 8, 2), np.uint8),
        "five-channels": np.zeros((8, 8, 5), np.uint8),
        "missing-path": str(tmp_path / "missing.jpg"),
        "missing-pathlib": tmp_path / "missing.png",
        "directory": tmp_path,
        "text-file": str(text),
        "truncated-png": truncated,
        "torch-tensor": torch.zeros(8, 8, 3, dtype=torch.uint8),
        "list": [[0, 0], [0, 0]],
        "none": None,
    }


BAD_IMAGE_NAMES = [
    "4d",
    "1d",
    "int64",
    "uint32",
    "float-above-1",
    "float-negative",
    "float-nan",
    "empty-0x5",
    "empty-0x5-gray",
    "empty-5x0",
    "two-channels",
    "five-channels",
    "missing-path",
    "missing-pathlib",
    "directory",
    "text-file",
    "truncated-png",
    "torch-tensor",
    "list",
    "none",
]


@pytest.mark.parametrize("name", BAD_IMAGE_NAMES)
def test_invalid_image(model, tmp_path, name: str) -> None:
    image = _bad_images(tmp_path)[name]
    p = samkit.ImagePredictor(model)
    with pytest.raises(InvalidImage) as info:
        p.set_image(image)
    assert str(info.value)
    assert p.embedding is None
    with pytest.raises(InvalidImage):
        p.encode(image)


def test_image_conversion_by_hand(tmp_path) -> None:
    rgb = H.make_image(6, 5)
    assert np.array_equal(to_rgb_uint8(rgb), rgb)
    gray = rgb[..., 0].copy()
    assert np.array_equal(to_rgb_uint8(gray), np.stack([gray] * 3, -1))
    assert np.array_equal(to_rgb_uint8(gray[..., None]), np.stack([gray] * 3, -1))
    rgba = np.concatenate([rgb, np.full((6, 5, 1), 7, np.uint8)], -1)
    assert np.array_equal(to_rgb_uint8(rgba), rgb)
    f = np.array([[[0.0, 0.5, 1.0]]])  # 0.5 * 255 = 127.5 rounds to even (128)
    assert to_rgb_uint8(f).tolist() == [[[0, 128, 255]]]
    assert np.array_equal(to_rgb_uint8(Image.fromarray(rgb)), rgb)
    assert np.array_equal(to_rgb_uint8(Image.fromarray(rgba)), rgb)
    path = tmp_path / "x.png"
    Image.fromarray(rgb).save(path)
    assert np.array_equal(to_rgb_uint8(path), rgb)
    assert np.array_equal(to_rgb_uint8(str(path)), rgb)
    # non-contiguous views are accepted
    assert np.array_equal(to_rgb_uint8(rgb[:, ::-1]), rgb[:, ::-1])


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_image_is_rounded_exactly(dtype) -> None:
    """round(x * 255) of the given value, without an intermediate low-precision product.

    x * 255 is exact in float64 for float16/32 inputs, so that is the expected value.
    """
    x = np.random.default_rng(1).random((400, 500, 3)).astype(dtype)
    expected = np.round(x.astype(np.float64) * 255.0).astype(np.uint8)
    assert np.array_equal(to_rgb_uint8(x), expected)


def test_too_elongated_image_is_refused(model) -> None:
    """At a 1024-pixel input a 1x3000 image would be resized to 0x1024: InvalidImage
    instead of PIL's ValueError (a 1x2000 image still gives one row)."""
    p = samkit.ImagePredictor(model)
    for shape in [(1, 3000, 3), (3000, 1)]:
        with pytest.raises(InvalidImage, match="elongated"):
            p.set_image(np.zeros(shape, np.uint8))
        assert p.embedding is None
    assert resize_longest_side(np.zeros((1, 2000, 3), np.uint8), 1024).shape == (1, 1024, 3)


def test_high_bit_depth_pil_images_follow_numpy_rules(tmp_path) -> None:
    """PIL's own RGB conversion clips 16-bit, 32-bit and float images to 0-255 (a 16-bit
    PNG became nearly white, a float image in [0, 1] black). 16-bit images are scaled to
    8 bits (v / 257); 32-bit and float ones follow the numpy rules of their dtype."""
    values = (np.arange(48).reshape(6, 8) * 1000).astype(np.uint16)
    values[0, 0] = 65535
    png = tmp_path / "deep.png"
    Image.fromarray(values).save(png)
    with Image.open(png) as opened:
        assert opened.mode == "I;16"
    scaled = np.rint(values / 257.0).astype(np.uint8)
    assert scaled[0, 0] == 255 and scaled[0, 1] == 4  # 1000 / 257 = 3.9
    for image in (Image.fromarray(values), png, values, np.stack([values] * 3, -1)):
        # a uint16 array reads as the 16-bit file does (it was refused)
        assert np.array_equal(to_rgb_uint8(image), np.stack([scaled] * 3, -1))
    with pytest.raises(InvalidImage, match="mode I.*convert the file to 8 bits"):
        to_rgb_uint8(Image.fromarray(values.astype(np.int32)))
    x = np.random.default_rng(2).random((6, 8)).astype(np.float32)
    expected = to_rgb_uint8(x)
    assert expected.std() > 0
    assert np.array_equal(to_rgb_uint8(Image.fromarray(x)), expected)
    with pytest.raises(InvalidImage, match="mode F"):
        to_rgb_uint8(Image.fromarray(x + 1.5))
    # 8-bit modes still convert through PIL
    gray = (values // 200).astype(np.uint8)
    assert np.array_equal(to_rgb_uint8(Image.fromarray(gray)), np.stack([gray] * 3, -1))


def test_directory_is_not_an_image_file(tmp_path) -> None:
    with pytest.raises(InvalidImage, match="not an image file"):
        to_rgb_uint8(tmp_path)
    with pytest.raises(InvalidImage, match="not found"):
        to_rgb_uint8(tmp_path / "missing.png")


# ------------------------------------------------------------- image embedding
@pytest.fixture(scope="module")
def encoded(model):
    p = samkit.ImagePredictor(model)
    emb = p.set_image(H.make_image(120, 90, seed=8))
    return p, emb


PROMPT = {"points": [[30, 40], [60, 100]], "labels": [1, 0], "box": [5, 10, 80, 110]}


def _same_prediction(a: samkit.MaskPrediction, b: samkit.MaskPrediction) -> None:
    assert np.array_equal(a.masks, b.masks)
    assert np.array_equal(a.scores, b.scores)
    assert np.array_equal(a.low_res_logits, b.low_res_logits)


def _same_embedding(a: ImageEmbedding, b: ImageEmbedding) -> None:
    assert torch.equal(a.features, b.features)
    assert a.features.dtype == b.features.dtype
    assert a.original_size == b.original_size == (120, 90)
    assert a.input_size == b.input_size == (1024, 768)
    assert a.model_name == b.model_name


def test_embedding_save_load_round_trip(encoded, model, tmp_path) -> None:
    p, emb = encoded
    expected = p.predict(**PROMPT)
    H.assert_nontrivial(expected.masks, "embedding round trip")
    path = tmp_path / "emb.pt"
    emb.save(path)
    assert [f.name for f in tmp_path.iterdir()] == ["emb.pt"]  # no temporary file left
    loaded = ImageEmbedding.load(path)
    _same_embedding(loaded, emb)
    _same_prediction(p.predict(**PROMPT, embedding=loaded), expected)
    fresh = samkit.ImagePredictor(model)
    fresh.set_embedding(loaded)
    _same_prediction(fresh.predict(**PROMPT), expected)


def test_embedding_bytes_round_trip(encoded, model) -> None:
    p, emb = encoded
    expected = p.predict(**PROMPT, multimask=False)
    data = emb.to_bytes()
    assert isinstance(data, bytes)
    loaded = ImageEmbedding.from_bytes(data)
    _same_embedding(loaded, emb)
    fresh = samkit.ImagePredictor(model)
    _same_prediction(fresh.predict(**PROMPT, multimask=False, embedding=loaded), expected)
    fresh.set_embedding(loaded)
    _same_prediction(fresh.predict(**PROMPT, multimask=False), expected)
    batch = fresh.predict_batch(boxes=[PROMPT["box"]], embedding=loaded)
    _same_prediction(batch[0], p.predict(box=PROMPT["box"]))


def test_predict_with_embedding_does_not_change_current_image(encoded, model) -> None:
    p, emb = encoded
    other = ImageEmbedding(torch.zeros_like(emb.features), (50, 60), (853, 1024), emb.model_name)
    q = samkit.ImagePredictor(model)
    q.set_embedding(other)
    q.predict(**PROMPT, embedding=emb)
    assert q.embedding is other


def test_embedding_from_another_model_is_refused(encoded, model) -> None:
    _, emb = encoded
    foreign = ImageEmbedding(emb.features, emb.original_size, emb.input_size, "sam-vit-h")
    assert model.name != "sam-vit-h"
    p = samkit.ImagePredictor(model)
    with pytest.raises(InvalidImage, match="sam-vit-h"):
        p.set_embedding(foreign)
    assert p.embedding is None
    with pytest.raises(InvalidImage, match="sam-vit-h"):
        p.predict(**PROMPT, embedding=foreign)
    # the same refusal after a bytes round trip (the name is serialised)
    with pytest.raises(InvalidImage, match="sam-vit-h"):
        p.set_embedding(ImageEmbedding.from_bytes(foreign.to_bytes()))


def test_embedding_of_wrong_grid_is_refused(model) -> None:
    bad = ImageEmbedding(torch.zeros(1, 256, 32, 32), (10, 10), (1024, 1024), model.name)
    with pytest.raises(InvalidImage):
        samkit.ImagePredictor(model).set_embedding(bad)


MALFORMED_EMBEDDINGS = {
    "wrong-channels": lambda f: (f[:, :128], (120, 90), (1024, 768)),
    "no-batch-axis": lambda f: (f[0], (120, 90), (1024, 768)),
    "batch-of-two": lambda f: (f.expand(2, -1, -1, -1), (120, 90), (1024, 768)),
    "integer": lambda f: (f.long(), (120, 90), (1024, 768)),
    "zero-original-size": lambda f: (f, (0, 0), (1024, 768)),
    "zero-input-size": lambda f: (f, (120, 90), (0, 768)),
}


@pytest.mark.parametrize("case", list(MALFORMED_EMBEDDINGS))
def test_malformed_embedding_is_refused(encoded, model, case: str) -> None:
    """Embeddings are checked whole (InvalidImage), not only their grid: before, these
    failed inside the decoder (RuntimeError, ValueError, ZeroDivisionError)."""
    _, emb = encoded
    features, original, input_size = MALFORMED_EMBEDDINGS[case](emb.features)
    bad = ImageEmbedding(features, original, input_size, emb.model_name)
    p = samkit.ImagePredictor(model)
    with pytest.raises(InvalidImage):
        p.set_embedding(bad)
    assert p.embedding is None
    with pytest.raises(InvalidImage):
        p.predict(**PROMPT, embedding=bad)


def test_float64_embedding_decodes_as_float32(encoded) -> None:
    p, emb = encoded
    double = ImageEmbedding(
        emb.features.double(), emb.original_size, emb.input_size, emb.model_name
    )
    _same_prediction(p.predict(**PROMPT, embedding=double), p.predict(**PROMPT, embedding=emb))


def test_sam2_embedding_without_high_res_features_is_refused() -> None:
    """A SAM 2 decoder needs the stride-4/8 maps; without them it decoded silently
    without its skip connections."""
    import helpers_sam2

    torch.manual_seed(0)
    sam2 = samkit.build_model(helpers_sam2.tiny_video_config()).eval()
    p = samkit.ImagePredictor(sam2)
    emb = p.encode(H.make_image(20, 30, seed=1))
    assert len(emb.high_res_features) == 2
    p.predict(points=[[5, 5]], labels=[1], embedding=emb)
    for high_res in [(), emb.high_res_features[:1], emb.high_res_features[::-1]]:
        bad = ImageEmbedding(
            emb.features, emb.original_size, emb.input_size, emb.model_name, high_res
        )
        with pytest.raises(InvalidImage, match="high-resolution"):
            p.predict(points=[[5, 5]], labels=[1], embedding=bad)
    bad = ImageEmbedding(emb.features, emb.original_size, emb.input_size, emb.model_name)
    with pytest.raises(InvalidImage):
        p.set_embedding(bad)


def test_returned_tensors_support_autograd_and_in_place(encoded) -> None:
    """Embeddings and ``predict_torch`` results are ordinary tensors (made under
    ``no_grad``, as officially), not inference tensors: a trained head on the embedding
    (e.g. via ``compat.SamPredictor.get_image_embedding``) and in-place edits work."""
    p, emb = encoded
    assert not emb.features.is_inference() and not emb.features.requires_grad
    head = torch.nn.Linear(emb.features.shape[1], 1)
    head(emb.features.flatten(2).transpose(1, 2)).sum().backward()
    assert head.weight.grad is not None
    masks, iou, low = p.predict_torch(torch.tensor([[[300.0, 400.0]]]), torch.tensor([[1]]))
    assert not any(t.is_inference() for t in (masks, iou, low))
    masks.logical_not_()
    low.clamp_(-1, 1)


_UNPICKLED: list[str] = []


def _record_unpickle(tag: str) -> str:
    _UNPICKLED.append(tag)
    return tag


class _Payload:
    def __reduce__(self):
        return (_record_unpickle, ("executed",))


def _saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


# the fields of a valid serialised embedding (test_not_an_embedding breaks one at a time)
_FIELDS = {
    "format": "samkit.ImageEmbedding/1",
    "features": torch.zeros(1, 256, 64, 64),
    "original_size": [10, 10],
    "input_size": [1024, 1024],
    "model_name": None,
    "high_res_features": [],
}


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        _saved({"format": "something else", "features": torch.zeros(1)}),
        _saved({"format": "samkit.ImageEmbedding/1", "features": _Payload()}),
        _saved({"format": "samkit.ImageEmbedding/1"}),
        _saved({**_FIELDS, "original_size": [7]}),
        _saved({**_FIELDS, "input_size": 1024}),
        _saved({**_FIELDS, "features": [1.0, 2.0]}),
        _saved({**_FIELDS, "high_res_features": 3}),
        _saved({**_FIELDS, "model_name": 5}),
    ],
    ids=[
        "empty",
        "garbage",
        "other-format",
        "pickled-code",
        "no-fields",
        "short-size",
        "int-size",
        "features-list",
        "high-res-int",
        "name-int",
    ],
)
def test_not_an_embedding(data: bytes) -> None:
    assert ImageEmbedding.from_bytes(_saved(_FIELDS)).original_size == (10, 10)  # the base
    with pytest.raises(InvalidImage):
        ImageEmbedding.from_bytes(data)
    assert _UNPICKLED == [], "from_bytes executed pickled code"


def test_embedding_sizes_eq_and_geometry(encoded, model, tmp_path) -> None:
    """numpy integer sizes are stored as ints (a saved file could not be loaded back);
    embeddings compare by identity (== compared tensors and raised); an input size that
    is not this model's resize of the original size is refused (it gave masks from a
    wrong frame)."""
    p, emb = encoded
    numpy_sizes = ImageEmbedding(
        emb.features,
        tuple(np.array(emb.original_size)),
        tuple(np.array(emb.input_size)),
        emb.model_name,
    )
    assert type(numpy_sizes.original_size[0]) is int
    numpy_sizes.save(tmp_path / "np.emb")
    assert ImageEmbedding.load(tmp_path / "np.emb").input_size == emb.input_size
    assert emb == emb and emb != numpy_sizes and emb in [numpy_sizes, emb]
    with pytest.raises(InvalidImage, match="two integers"):
        ImageEmbedding(emb.features, (1.5, 2), emb.input_size)
    wrong = ImageEmbedding(emb.features, emb.original_size, (500, 500), emb.model_name)
    with pytest.raises(InvalidImage, match="this model resizes it to"):
        p.predict(**PROMPT, embedding=wrong)
    with pytest.raises(InvalidImage) as info:
        ImageEmbedding.from_bytes(b"\x80\x02garbage")
    assert "weights_only" not in str(info.value).replace("weights-only", "")


def test_damaged_image_files_are_one_typed_error(tmp_path):
    """Pillow raises SyntaxError for a PNG chunk with a wrong length (and struct.error for
    malformed EXIF, ...): every reader turns them into samkit's typed errors."""
    import struct

    from PIL import Image

    from samkit.data.sa1b import load_rgb
    from samkit.errors import InvalidImage, InvalidVideo
    from samkit.inference.transforms import load_image
    from samkit.video.sources import FrameSource

    good = tmp_path / "good.png"
    Image.fromarray(np.full((20, 30, 3), 90, dtype=np.uint8)).save(good)
    data = bytearray(good.read_bytes())
    i = data.index(b"IDAT") - 4
    (n,) = struct.unpack(">I", data[i : i + 4])
    data[i : i + 4] = struct.pack(">I", n - 5)
    bad = tmp_path / "bad.png"
    bad.write_bytes(bytes(data))
    with pytest.raises(InvalidImage, match="cannot read image .*bad.png"):
        load_image(bad)
    with pytest.raises(InvalidImage, match="bad.png"):
        load_rgb(bad)
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.open(good).save(frames / "00000.png")
    (frames / "00001.png").write_bytes(bytes(data))
    source = FrameSource(frames, keep=2, num_frames=None)
    assert source.rgb(0).shape == (20, 30, 3)
    with pytest.raises(InvalidVideo, match="00001.png"):
        source.rgb(1)
