"""Parity of samkit's SAM 1 (ViT) models and predictors with the official ``segment_anything``.

Both sides hold the same seeded random weights (see ``helpers_sam.random_state_dict``).
Most cases use a reduced ViT (``helpers_sam.REDUCED_CFG``: 96-dim, 4 blocks, global
attention at blocks 1 and 3) which runs every code path of the full model; one test runs
the full ``sam-vit-b`` preset. The official package is imported through
``reference_shims``: when it cannot be imported these tests fail, they never skip.

Tolerances: embeddings, logits and IoU scores ``<= 1e-4 * max(1, |expected|)``; boolean
masks may differ on at most 0.01% of pixels.
"""

from __future__ import annotations

import hashlib
import inspect

import helpers_sam as H
import numpy as np
import pytest
import reference_shims
import torch
from PIL import Image

import samkit
import samkit.compat

MAIN = "rgb_480x640"


@pytest.fixture(scope="module")
def sa():
    return reference_shims.import_segment_anything()


@pytest.fixture(scope="module")
def pair():
    official, ours, _ = H.reduced_pair()
    return official, ours


def _rgb() -> np.ndarray:
    return H.make_image(480, 640, seed=0)


def _float_image() -> np.ndarray:
    # float64 in [0, 1] that is *not* exactly k/255: round(x * 255) must give back _rgb()
    rng = np.random.default_rng(7)
    rgb = _rgb().astype(np.float64)
    x = np.clip((rgb + rng.uniform(-0.45, 0.45, rgb.shape)) / 255.0, 0.0, 1.0)
    return x


def _samkit_and_official_inputs(name: str, tmp_dir) -> tuple[object, np.ndarray]:
    """(what samkit gets, the HxWx3 uint8 RGB array the official predictor gets)."""
    rgb = _rgb()
    if name == MAIN:
        return rgb, rgb
    if name == "1x1":
        img = H.make_image(1, 1, seed=1)
        return img, img
    if name == "37x1500":
        img = H.make_image(37, 1500, seed=2)
        return img, img
    if name == "1500x37":
        img = H.make_image(1500, 37, seed=3)
        return img, img
    if name == "gray":
        g = H.make_image(480, 640, seed=4)[..., 1].copy()
        return g, np.stack([g, g, g], axis=-1)
    if name == "rgba":
        alpha = np.random.default_rng(5).integers(0, 256, (480, 640, 1), dtype=np.uint8)
        return np.concatenate([rgb, alpha], axis=-1), rgb
    if name == "float":
        x = _float_image()
        return x, np.round(x * 255.0).astype(np.uint8)
    if name == "pil":
        return Image.fromarray(rgb), rgb
    if name == "path":
        path = tmp_dir / "image.png"
        Image.fromarray(rgb).save(path)
        return str(path), rgb
    raise AssertionError(name)


IMAGES = [MAIN, "1x1", "37x1500", "1500x37", "gray", "rgba", "float", "pil", "path"]


class _Encoded:
    """Lazily encodes each test image once per side; identical official inputs share."""

    def __init__(self, sa, pair, tmp_dir) -> None:
        self.sa, self.tmp_dir = sa, tmp_dir
        self.official_model, self.our_model = pair
        self._official: dict[str, object] = {}
        self._ours: dict[str, samkit.ImagePredictor] = {}
        self.official_inputs: dict[str, np.ndarray] = {}

    def get(self, name: str):
        if name not in self._ours:
            ours_in, official_in = _samkit_and_official_inputs(name, self.tmp_dir)
            key = hashlib.sha256(
                official_in.tobytes() + str(official_in.shape).encode()
            ).hexdigest()
            if key not in self._official:
                p = self.sa.SamPredictor(self.official_model)
                p.set_image(np.ascontiguousarray(official_in))
                self._official[key] = p
            q = samkit.ImagePredictor(self.our_model)
            q.set_image(ours_in)
            self._ours[name] = (self._official[key], q)
            self.official_inputs[name] = official_in
        return self._ours[name]


@pytest.fixture(scope="module")
def encoded(sa, pair, tmp_path_factory) -> _Encoded:
    return _Encoded(sa, pair, tmp_path_factory.mktemp("images"))


# ------------------------------------------------------------------- embeddings
@pytest.mark.parametrize("name", IMAGES)
def test_image_embedding_parity(encoded: _Encoded, name: str) -> None:
    official, ours = encoded.get(name)
    emb = ours.embedding
    assert emb is not None
    assert emb.original_size == tuple(official.original_size)
    assert emb.input_size == tuple(official.input_size)
    expected = official.get_image_embedding()
    assert emb.features.shape == expected.shape == (1, 256, 64, 64)
    assert emb.features.dtype == torch.float32
    H.assert_close(emb.features, expected, f"embedding[{name}]")


def test_float_test_image_rounds_to_the_rgb_image() -> None:
    # The float image must round to the RGB image (so its official input is exact).
    assert np.array_equal(np.round(_float_image() * 255.0).astype(np.uint8), _rgb())


# ---------------------------------------------------------------- prompt cases
def _prompt(case: str, h: int, w: int) -> dict:
    """Official ``SamPredictor.predict`` kwargs for a prompt case on an HxW image."""

    def pt(fx: float, fy: float) -> list[float]:
        return [fx * w, fy * h]

    one = {"point_coords": np.array([pt(0.6, 0.4)]), "point_labels": np.array([1])}
    box = np.array([*pt(0.1, 0.2), *pt(0.7, 0.9)])
    if case == "one_point":
        return {**one, "multimask_output": True}
    if case == "one_point_single":
        return {**one, "multimask_output": False}
    if case == "points_pos_neg":
        coords = np.array([pt(0.6, 0.4), pt(0.2, 0.8), pt(0.45, 0.55), pt(0.9, 0.1)])
        return {
            "point_coords": coords,
            "point_labels": np.array([1, 0, 1, 0]),
            "multimask_output": False,
        }
    if case == "box":
        return {"box": box, "multimask_output": False}
    if case == "box_multimask":
        return {"box": box, "multimask_output": True}
    if case == "box_points":
        return {
            "box": box,
            "point_coords": np.array([pt(0.4, 0.5), pt(0.15, 0.85)]),
            "point_labels": np.array([1, 0]),
            "multimask_output": True,
        }
    if case == "return_logits":
        return {**one, "multimask_output": True, "return_logits": True}
    raise AssertionError(case)


def _ours_kwargs(kw: dict) -> dict:
    return {
        "points": kw.get("point_coords"),
        "labels": kw.get("point_labels"),
        "box": kw.get("box"),
        "mask_input": kw.get("mask_input"),
        "multimask": kw["multimask_output"],
        "return_logits": kw.get("return_logits", False),
    }


def _compare_single(official, ours, kw: dict, what: str) -> tuple:
    m_ref, s_ref, l_ref = official.predict(**kw)
    res = ours.predict(**_ours_kwargs(kw))
    assert isinstance(res, samkit.MaskPrediction)
    k = 3 if kw["multimask_output"] else 1
    h, w = official.original_size
    assert res.masks.shape == m_ref.shape == (k, h, w)
    assert res.scores.shape == s_ref.shape == (k,)
    assert res.low_res_logits.shape == l_ref.shape == (k, 256, 256)
    assert res.scores.dtype == np.float32 and res.low_res_logits.dtype == np.float32
    H.assert_close(res.low_res_logits, l_ref, f"{what} low-res logits")
    H.assert_close(res.scores, s_ref, f"{what} iou scores")
    if kw.get("return_logits"):
        assert res.masks.dtype == np.float32
        H.assert_close(res.masks, m_ref, f"{what} upsampled logits")
        # thresholding the logits gives the boolean masks of the default call
        assert np.array_equal(res.masks > 0, m_ref > 0)
    else:
        H.assert_masks_match(res.masks, m_ref, f"{what} masks")
    # The random weights must give non-trivial outputs, or the comparison means little.
    assert (l_ref > 0).any() and (l_ref < 0).any(), f"{what}: logits of one sign only"
    if h * w >= 10_000:
        H.assert_nontrivial(m_ref > 0, what)
    return m_ref, s_ref, l_ref, res


CASES = [
    "one_point",
    "one_point_single",
    "points_pos_neg",
    "box",
    "box_multimask",
    "box_points",
    "return_logits",
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", [MAIN, "1x1", "37x1500", "1500x37"])
def test_predict_parity(encoded: _Encoded, name: str, case: str) -> None:
    official, ours = encoded.get(name)
    h, w = official.original_size
    _compare_single(official, ours, _prompt(case, h, w), f"{name}/{case}")


@pytest.mark.parametrize("name", ["gray", "rgba", "float", "pil", "path"])
def test_predict_parity_image_kinds(encoded: _Encoded, name: str) -> None:
    official, ours = encoded.get(name)
    for case in ("one_point", "box"):
        _compare_single(official, ours, _prompt(case, 480, 640), f"{name}/{case}")


@pytest.mark.parametrize("name", [MAIN, "37x1500"])
def test_mask_input_parity(encoded: _Encoded, name: str) -> None:
    """Feed the previous low-res logits back as ``mask_input`` (the official workflow)."""
    official, ours = encoded.get(name)
    h, w = official.original_size
    _, s_ref, l_ref, _ = _compare_single(
        official, ours, _prompt("one_point", h, w), f"{name}/first"
    )
    previous = l_ref[int(np.argmax(s_ref))][None]  # (1, 256, 256)
    for multimask in (False, True):
        kw = {
            "point_coords": np.array([[0.6 * w, 0.4 * h], [0.3 * w, 0.7 * h]]),
            "point_labels": np.array([1, 1]),
            "mask_input": previous,
            "multimask_output": multimask,
        }
        _compare_single(official, ours, kw, f"{name}/mask_input/multimask={multimask}")
        # mask_input alone (no points)
        kw = {"mask_input": previous, "multimask_output": multimask}
        _compare_single(official, ours, kw, f"{name}/mask_only/multimask={multimask}")


# ------------------------------------------------------------------------ batched
def _compare_batch(official_out, res, n: int, k: int, hw, what: str) -> None:
    m_ref, s_ref, l_ref = (t.detach().cpu().numpy() for t in official_out)
    assert res.masks.shape == m_ref.shape == (n, k, *hw)
    assert res.scores.shape == s_ref.shape == (n, k)
    assert res.low_res_logits.shape == l_ref.shape == (n, k, 256, 256)
    assert len(res) == n
    H.assert_close(res.low_res_logits, l_ref, f"{what} low-res logits")
    H.assert_close(res.scores, s_ref, f"{what} iou scores")
    H.assert_masks_match(res.masks, m_ref, f"{what} masks")
    H.assert_nontrivial(m_ref, what)
    for i in range(n):  # indexing gives the i-th prompt set
        assert np.array_equal(res[i].masks, res.masks[i])


@pytest.mark.parametrize("multimask", [True, False])
def test_predict_batch_boxes_parity(encoded: _Encoded, multimask: bool) -> None:
    official, ours = encoded.get(MAIN)
    boxes = np.array(
        [[10, 20, 300, 400], [200, 100, 640, 480], [0, 0, 639.5, 479.5], [320, 240, 321, 241]],
        dtype=np.float64,
    )
    size = official.original_size
    with torch.no_grad():
        ref = official.predict_torch(
            None,
            None,
            boxes=official.transform.apply_boxes_torch(torch.as_tensor(boxes), size),
            multimask_output=multimask,
        )
    res = ours.predict_batch(boxes=boxes, multimask=multimask)
    _compare_batch(ref, res, 4, 3 if multimask else 1, size, f"batch boxes mm={multimask}")


@pytest.mark.parametrize("multimask", [True, False])
def test_predict_batch_points_parity(encoded: _Encoded, multimask: bool) -> None:
    official, ours = encoded.get(MAIN)
    points = np.array(
        [
            [[100, 100], [400, 300], [600, 50]],
            [[320, 240], [10, 470], [0, 0]],  # last one is padding (label -1)
            [[639, 479], [200, 200], [50, 400]],
        ],
        dtype=np.float64,
    )
    labels = np.array([[1, 0, 1], [1, 0, -1], [1, 1, 0]])
    size = official.original_size
    with torch.no_grad():
        ref = official.predict_torch(
            official.transform.apply_coords_torch(torch.as_tensor(points), size),
            torch.as_tensor(labels),
            multimask_output=multimask,
        )
    res = ours.predict_batch(points=points, labels=labels, multimask=multimask)
    _compare_batch(ref, res, 3, 3 if multimask else 1, size, f"batch points mm={multimask}")


def test_predict_batch_points_and_boxes_parity(encoded: _Encoded) -> None:
    official, ours = encoded.get(MAIN)
    points = np.array([[[150, 250]], [[400, 200]]], dtype=np.float64)
    labels = np.array([[1], [0]])
    boxes = np.array([[100, 200, 300, 400], [300, 100, 600, 350]], dtype=np.float64)
    size = official.original_size
    with torch.no_grad():
        ref = official.predict_torch(
            official.transform.apply_coords_torch(torch.as_tensor(points), size),
            torch.as_tensor(labels),
            boxes=official.transform.apply_boxes_torch(torch.as_tensor(boxes), size),
            multimask_output=True,
        )
    res = ours.predict_batch(points=points, labels=labels, boxes=boxes, multimask=True)
    _compare_batch(ref, res, 2, 3, size, "batch points+boxes")
    # refine: feed each set's best low-res logits back as a batched mask_input
    l_ref, s_ref = ref[2], ref[1]
    best = s_ref.argmax(dim=1)
    mask_input = l_ref[torch.arange(2), best][:, None]  # (N, 1, 256, 256)
    with torch.no_grad():
        ref2 = official.predict_torch(
            None,
            None,
            boxes=official.transform.apply_boxes_torch(torch.as_tensor(boxes), size),
            mask_input=mask_input,
            multimask_output=False,
        )
    res2 = ours.predict_batch(boxes=boxes, mask_input=mask_input.numpy(), multimask=False)
    _compare_batch(ref2, res2, 2, 1, size, "batch boxes+mask_input")


# -------------------------------------------------------------------- full size
@pytest.mark.slow
def test_full_size_sam_vit_b_parity(sa) -> None:
    """The real ``sam-vit-b`` architecture, one image and one point, one forward each."""
    official = sa.sam_model_registry["vit_b"]()
    ours = samkit.build_model("sam-vit-b")
    sd = H.random_state_dict(official.state_dict(), seed=11)
    H.load_both(official, ours, sd)
    del sd
    image = H.make_image(480, 640, seed=12)
    p = sa.SamPredictor(official)
    p.set_image(image)
    q = samkit.ImagePredictor(ours)
    emb = q.set_image(image)
    assert emb.model_name == "sam-vit-b"
    H.assert_close(emb.features, p.get_image_embedding(), "sam-vit-b embedding")
    kw = {"point_coords": np.array([[380.0, 190.0]]), "point_labels": np.array([1])}
    for multimask in (True, False):
        _compare_single(p, q, {**kw, "multimask_output": multimask}, f"sam-vit-b mm={multimask}")


# ------------------------------------------------------------------- compat shim
OFFICIAL_METHODS = [
    "set_image",
    "predict",
    "predict_torch",
    "get_image_embedding",
    "set_torch_image",
    "reset_image",
]


@pytest.mark.parametrize("method", OFFICIAL_METHODS)
def test_compat_signatures_match_official(sa, method: str) -> None:
    official = inspect.signature(getattr(sa.SamPredictor, method))
    ours = inspect.signature(getattr(samkit.compat.SamPredictor, method))
    assert list(ours.parameters) == list(official.parameters)
    for name, param in official.parameters.items():
        assert ours.parameters[name].default == param.default, f"{method}({name}=...)"
        assert ours.parameters[name].kind == param.kind, name


def test_compat_constructor_and_registry_names(sa) -> None:
    official = inspect.signature(sa.SamPredictor.__init__)
    ours = inspect.signature(samkit.compat.SamPredictor.__init__)
    assert list(ours.parameters) == list(official.parameters)
    assert set(samkit.compat.sam_model_registry) >= set(sa.sam_model_registry)
    for key in sa.sam_model_registry:
        assert list(inspect.signature(samkit.compat.sam_model_registry[key]).parameters) == [
            "checkpoint"
        ]


@pytest.fixture(scope="module")
def compat_rgb(pair, encoded: _Encoded):
    official, _ = encoded.get(MAIN)
    ours = samkit.compat.SamPredictor(pair[1])
    assert not ours.is_image_set
    ours.set_image(_rgb())
    return official, ours


def test_compat_state_and_embedding(compat_rgb) -> None:
    official, ours = compat_rgb
    assert ours.is_image_set is True
    assert tuple(ours.original_size) == tuple(official.original_size)
    assert tuple(ours.input_size) == tuple(official.input_size)
    emb = ours.get_image_embedding()
    assert isinstance(emb, torch.Tensor) and emb.shape == (1, 256, 64, 64)
    H.assert_close(emb, official.get_image_embedding(), "compat get_image_embedding")
    H.assert_close(ours.features, official.features, "compat .features")
    assert ours.device == official.device


@pytest.mark.parametrize("case", ["one_point", "points_pos_neg", "box_points", "return_logits"])
def test_compat_predict_matches_official(compat_rgb, case: str) -> None:
    official, ours = compat_rgb
    kw = _prompt(case, 480, 640)
    expected = official.predict(**kw)
    actual = ours.predict(**kw)
    assert isinstance(actual, tuple) and len(actual) == 3
    for a, e, what in zip(actual, expected, ("masks", "iou", "low_res"), strict=True):
        assert isinstance(a, np.ndarray), f"{what} is {type(a).__name__}"
        assert a.dtype == e.dtype, f"{what}: {a.dtype} != {e.dtype}"
        assert a.shape == e.shape, what
    if kw.get("return_logits"):
        H.assert_close(actual[0], expected[0], f"compat {case} logits")
    else:
        H.assert_masks_match(actual[0], expected[0], f"compat {case} masks")
    H.assert_close(actual[1], expected[1], f"compat {case} iou")
    H.assert_close(actual[2], expected[2], f"compat {case} low-res")


def test_compat_predict_torch_matches_official(compat_rgb) -> None:
    official, ours = compat_rgb
    size = official.original_size
    pts = torch.tensor([[[100.0, 120.0], [500.0, 300.0]], [[320.0, 240.0], [20.0, 460.0]]])
    labels = torch.tensor([[1, 0], [1, 1]])
    boxes = torch.tensor([[50.0, 60.0, 400.0, 420.0], [250.0, 100.0, 630.0, 470.0]])
    args_ref = (
        official.transform.apply_coords_torch(pts, size),
        labels,
        official.transform.apply_boxes_torch(boxes, size),
    )
    args_ours = (
        ours.transform.apply_coords_torch(pts, size),
        labels,
        ours.transform.apply_boxes_torch(boxes, size),
    )
    assert torch.equal(args_ours[0], args_ref[0]) and torch.equal(args_ours[2], args_ref[2])
    for multimask in (True, False):
        for return_logits in (False, True):
            with torch.no_grad():
                expected = official.predict_torch(
                    *args_ref, multimask_output=multimask, return_logits=return_logits
                )
            actual = ours.predict_torch(
                *args_ours, multimask_output=multimask, return_logits=return_logits
            )
            what = f"compat predict_torch mm={multimask} logits={return_logits}"
            for a, e in zip(actual, expected, strict=True):
                assert isinstance(a, torch.Tensor)
                assert a.dtype == e.dtype and a.shape == e.shape, what
            if return_logits:
                H.assert_close(actual[0], expected[0], f"{what} masks")
            else:
                H.assert_masks_match(actual[0], expected[0], f"{what} masks")
            H.assert_close(actual[1], expected[1], f"{what} iou")
            H.assert_close(actual[2], expected[2], f"{what} low-res")


def test_compat_transform_matches_official(compat_rgb) -> None:
    official, ours = compat_rgb
    size = (480, 640)
    coords = np.array([[0.0, 0.0], [639.0, 479.0], [123.4, 56.7]])
    boxes = np.array([[1.0, 2.0, 300.5, 400.25]])
    assert np.array_equal(
        ours.transform.apply_coords(coords, size), official.transform.apply_coords(coords, size)
    )
    assert np.array_equal(
        ours.transform.apply_boxes(boxes, size), official.transform.apply_boxes(boxes, size)
    )
    img = H.make_image(37, 1500, seed=9)
    assert np.array_equal(ours.transform.apply_image(img), official.transform.apply_image(img))


def test_compat_bgr_image_format(sa, pair) -> None:
    official_model, our_model = pair
    bgr = np.ascontiguousarray(H.make_image(300, 200, seed=13)[..., ::-1])
    p = sa.SamPredictor(official_model)
    p.set_image(bgr, image_format="BGR")
    q = samkit.compat.SamPredictor(our_model)
    q.set_image(bgr, image_format="BGR")
    H.assert_close(q.get_image_embedding(), p.get_image_embedding(), "compat BGR embedding")
    kw = {"point_coords": np.array([[100.0, 150.0]]), "point_labels": np.array([1])}
    m_ref, s_ref, l_ref = p.predict(**kw)
    m, s, low = q.predict(**kw)
    H.assert_masks_match(m, m_ref, "compat BGR masks")
    H.assert_close(s, s_ref, "compat BGR iou")
    H.assert_close(low, l_ref, "compat BGR low-res")


def test_compat_bgr_swaps_only_colour_channels(pair) -> None:
    """``image_format="BGR"`` reverses the three colour channels only: a grayscale image
    is the same in both formats (reversing the last axis of ``(H, W)`` mirrored it) and
    BGRA keeps its alpha last (reversing gave ARGB, of which A, R, G were encoded)."""
    rgb = H.make_image(40, 60, seed=14)
    ours = samkit.compat.SamPredictor(pair[1])
    ours.set_image(rgb)
    expected = ours.get_image_embedding()
    bgra = np.concatenate([rgb[..., ::-1], np.full((40, 60, 1), 7, np.uint8)], axis=-1)
    ours.set_image(bgra, image_format="BGR")
    assert torch.equal(ours.get_image_embedding(), expected)
    gray = rgb[..., 1].copy()
    ours.set_image(gray, image_format="RGB")
    expected = ours.get_image_embedding()
    ours.set_image(gray, image_format="BGR")
    assert torch.equal(ours.get_image_embedding(), expected)
    ours.set_image(gray[..., None], image_format="BGR")
    assert torch.equal(ours.get_image_embedding(), expected)
    # a PIL image is RGB already: "BGR" with one is refused, not silently taken as RGB
    with pytest.raises(samkit.InvalidImage, match="numpy array"):
        ours.set_image(Image.fromarray(rgb), image_format="BGR")


@pytest.mark.parametrize(
    "shape",
    [(3, 1024, 768), (1, 4, 1024, 768), (1, 3, 1100, 768), (1, 3, 512, 512), (2, 3, 1024, 1024)],
)
def test_compat_set_torch_image_checks_its_input(pair, shape) -> None:
    """The official ``set_torch_image`` asserts a ``(1, 3, H, W)`` input with long side
    ``img_size``; samkit raises InvalidImage (before: a larger input was silently cropped
    by the negative padding, a smaller one encoded, others failed inside the model)."""
    ours = samkit.compat.SamPredictor(pair[1])
    with pytest.raises(samkit.InvalidImage, match="long side 1024"):
        ours.set_torch_image(torch.zeros(shape, dtype=torch.uint8), (1024, 768))
    assert ours.is_image_set is False


def test_compat_set_torch_image(pair, encoded: _Encoded) -> None:
    # The official set_image(rgb) is apply_image + set_torch_image(tensor, rgb.shape[:2]),
    # so the cached official predictor for the main image is the expected result.
    official, _ = encoded.get(MAIN)
    rgb = _rgb()
    ours = samkit.compat.SamPredictor(pair[1])
    resized = official.transform.apply_image(rgb)
    tensor = torch.as_tensor(resized).permute(2, 0, 1).contiguous()[None]
    ours.set_torch_image(tensor, rgb.shape[:2])
    assert tuple(ours.original_size) == tuple(official.original_size)
    assert tuple(ours.input_size) == tuple(official.input_size)
    H.assert_close(ours.get_image_embedding(), official.get_image_embedding(), "set_torch_image")
    kw = _prompt("box_points", 480, 640)
    m_ref, s_ref, l_ref = official.predict(**kw)
    m, s, low = ours.predict(**kw)
    H.assert_masks_match(m, m_ref, "set_torch_image masks")
    H.assert_close(s, s_ref, "set_torch_image iou")
    H.assert_close(low, l_ref, "set_torch_image low-res")


def test_compat_reset_and_errors_like_official(sa, pair) -> None:
    official_model, our_model = pair
    p = sa.SamPredictor(official_model)
    q = samkit.compat.SamPredictor(our_model)
    kw = {"point_coords": np.array([[1.0, 1.0]]), "point_labels": np.array([1])}
    for predictor in (p, q):
        assert predictor.is_image_set is False
        with pytest.raises(RuntimeError):
            predictor.predict(**kw)
        with pytest.raises(RuntimeError):
            predictor.get_image_embedding()
    # set an embedding cheaply, then reset it
    q.set_torch_image(torch.zeros(1, 3, 1024, 768, dtype=torch.uint8), (1024, 768))
    assert q.is_image_set is True
    q.reset_image()
    assert q.is_image_set is False
    with pytest.raises(RuntimeError):
        q.predict(**kw)


def test_point_labels_beyond_one_follow_each_family(pair) -> None:
    """SAM 1's prompt encoder embeds labels -1, 0 and 1 only (2 / 3 and others keep
    the bare positional encoding); the shared encoder added the box-corner embeddings
    to points labelled 2 / 3, as SAM 2 does, and gave other masks than the official."""
    official, ours = pair
    coords = torch.tensor([[[20.0, 30.0], [100.0, 150.0], [60.0, 60.0], [5.0, 9.0]]])
    labels = torch.tensor([[2, 3, 1, 5]])
    for pad_boxes in (None, torch.tensor([[10.0, 10.0, 90.0, 120.0]])):
        with torch.no_grad():
            ref = official.prompt_encoder(points=(coords, labels), boxes=pad_boxes, masks=None)
            got = ours.prompt_encoder(points=(coords, labels), boxes=pad_boxes, masks=None)
        H.assert_close(got[0], ref[0], "sparse embeddings, labels 2/3/5")
        H.assert_close(got[1], ref[1], "dense embeddings")
    assert not ours.prompt_encoder.box_corner_labels
    assert samkit.build_model(h2_tiny_config()).prompt_encoder.box_corner_labels


def h2_tiny_config():
    import helpers_sam2

    return helpers_sam2.tiny_video_config()


def test_batched_forward_matches_official(sa, pair) -> None:
    """``sam(batched_input, multimask_output)``, the official end-to-end call (used by
    its notebooks): same masks, IoU and low-res logits for two images of other sizes
    with points, boxes and a mask input."""
    official, ours = pair
    transform = sa.utils.transforms.ResizeLongestSide(official.image_encoder.img_size)
    rng = np.random.default_rng(5)
    batch = []
    for h, w in ((300, 200), (120, 410)):
        rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        image = torch.as_tensor(transform.apply_image(rgb)).permute(2, 0, 1).float()
        pts = torch.as_tensor(
            transform.apply_coords(np.array([[[50.0, 60.0], [80.0, 20.0]]]), (h, w))
        )
        batch.append(
            {
                "image": image,
                "original_size": (h, w),
                "point_coords": pts.float(),
                "point_labels": torch.tensor([[1, 0]]),
            }
        )
    box = transform.apply_boxes_torch(torch.tensor([[10.0, 20.0, 150.0, 100.0]]), (120, 410))
    batch[1]["boxes"] = box
    batch[1]["mask_inputs"] = torch.randn(
        1, 1, 256, 256, generator=torch.Generator().manual_seed(0)
    )
    for multimask in (True, False):
        with torch.no_grad():
            expected = official(batch, multimask_output=multimask)
        actual = ours(batch, multimask_output=multimask)
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert set(a) == set(e) == {"masks", "iou_predictions", "low_res_logits"}
            for key in e:
                assert a[key].shape == e[key].shape and a[key].dtype == e[key].dtype, key
            what = f"forward image {i} multimask={multimask}"
            H.assert_close(a["low_res_logits"], e["low_res_logits"], f"{what} low-res")
            H.assert_close(a["iou_predictions"], e["iou_predictions"], f"{what} iou")
            H.assert_masks_match(a["masks"], e["masks"], f"{what} masks")
    with pytest.raises(samkit.InvalidImage):
        ours([{"image": torch.zeros(3, 2000, 10), "original_size": (10, 10)}], True)


def test_compat_predictor_leaves_the_model_mode_alone(pair) -> None:
    """The official SamPredictor does not switch the model to eval mode (a predictor
    made inside a training loop changed the training)."""
    _, ours = pair
    ours.train()
    try:
        samkit.compat.SamPredictor(ours)
        assert ours.training
    finally:
        ours.eval()


def test_compat_attributes_without_an_image_and_labels_without_points(sa, pair, compat_rgb) -> None:
    """As officially: features/orig_h/... are None after reset_image (orig_h & co.
    always: nothing official sets them), and point_labels given without point_coords
    are ignored (samkit raised)."""
    official_predictor, ours_set = compat_rgb
    for name in ("orig_h", "orig_w", "input_h", "input_w"):
        assert getattr(ours_set, name) == getattr(official_predictor, name), name
    box = np.array([40.0, 50.0, 300.0, 400.0])
    expected = official_predictor.predict(point_labels=np.array([1]), box=box)
    actual = ours_set.predict(point_labels=np.array([1]), box=box)
    H.assert_close(actual[2], expected[2], "labels without points: low-res logits")
    fresh = samkit.compat.SamPredictor(pair[1])
    official = sa.SamPredictor(pair[0])
    for predictor in (fresh, official):
        predictor.reset_image()
        assert predictor.features is None and predictor.is_image_set is False
        for name in ("orig_h", "orig_w", "input_h", "input_w"):
            assert getattr(predictor, name) is None, name
