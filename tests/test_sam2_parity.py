"""SAM 2 / 2.1 image parity with the official ``sam2`` package on shared random weights.

The official model is built by its own ``build_sam2`` from its Hydra configs (reduced
Hiera through overrides, see ``helpers_sam2``); both models hold the same random state
dict. Compared: image embeddings (all decoder inputs: the stride-16 embedding with
``no_mem_embed`` and the two projected high-resolution maps), low-res logits, predicted
IoU, object-score logits and final masks, through samkit's ``ImagePredictor`` and the
official ``SAM2ImagePredictor``.
"""

from __future__ import annotations

import helpers_sam2 as h
import numpy as np
import pytest
import torch

import samkit

IMAGES = {
    "landscape": (300, 420),
    "tall": (500, 90),
}


def _image(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = (rng.random((*shape, 3)) * 255).astype(np.uint8)
    # some structure so that masks are not all noise
    img[shape[0] // 4 : shape[0] // 2, shape[1] // 5 : shape[1] // 2] = (200, 40, 40)
    return img


def _rel(a, b) -> float:
    a, b = torch.as_tensor(np.asarray(a)), torch.as_tensor(np.asarray(b))
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-6))


@pytest.fixture(scope="module", params=["2.0", "2.1"])
def pair(request):
    ours, official = h.model_pair(request.param, 512)
    return request.param, ours, official


def test_state_dict_keys_and_shapes_equal(pair):
    _, ours, official = pair
    a = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    b = {k: tuple(v.shape) for k, v in official.state_dict().items()}
    assert a == b


_ENCODED: dict = {}


def _set(pair, name):
    """Both predictors with the image set (cached per model version and image)."""
    version, ours, official = pair
    key = (version, name)
    if key in _ENCODED:
        return _ENCODED[key]
    img = _image(IMAGES[name])
    op = h.official_image_predictor(official, 512)
    op.set_image(img)
    sp = samkit.ImagePredictor(ours)
    emb = sp.set_image(img)
    _ENCODED[key] = (op, sp, emb, img)
    return _ENCODED[key]


@pytest.mark.parametrize("name", list(IMAGES))
def test_image_embeddings(pair, name):
    op, _, emb, img = _set(pair, name)
    feats = op._features
    assert emb.original_size == img.shape[:2]
    assert _rel(emb.features, feats["image_embed"]) <= 1e-5
    assert len(emb.high_res_features) == 2
    for ours, theirs in zip(emb.high_res_features, feats["high_res_feats"], strict=True):
        assert ours.shape == theirs.shape
        assert _rel(ours, theirs) <= 1e-5


PROMPTS = {
    "point": dict(point_coords=[[100, 80]], point_labels=[1]),
    "point-single": dict(point_coords=[[100, 80]], point_labels=[1], multimask_output=False),
    "pos-neg": dict(point_coords=[[100, 80], [30, 250]], point_labels=[1, 0]),
    "pos-neg-single": dict(
        point_coords=[[100, 80], [30, 250]], point_labels=[1, 0], multimask_output=False
    ),
    "box": dict(box=[20, 60, 80, 280]),
    "box-single": dict(box=[20, 60, 80, 280], multimask_output=False),
    "box+points": dict(
        box=[20, 60, 80, 280], point_coords=[[50, 100], [70, 30]], point_labels=[1, 0]
    ),
}


def _official(op, prompt, mask_input=None):
    kw = {k: (np.asarray(v) if isinstance(v, list) else v) for k, v in prompt.items()}
    return op.predict(mask_input=mask_input, **kw)


def _ours(sp, prompt, mask_input=None, return_logits=False):
    return sp.predict(
        points=prompt.get("point_coords"),
        labels=prompt.get("point_labels"),
        box=prompt.get("box"),
        mask_input=mask_input,
        multimask=prompt.get("multimask_output", True),
        return_logits=return_logits,
    )


def _check(official_out, ours, logits=False):
    masks, iou, low_res = official_out
    assert ours.masks.shape == masks.shape
    assert np.abs(ours.scores - iou).max() <= 1e-5
    assert _rel(ours.low_res_logits, low_res) <= 1e-5
    if logits:
        assert _rel(ours.masks, masks) <= 1e-5
    else:
        # a pixel may flip only where the logit is within float noise of the threshold
        assert (ours.masks != masks.astype(bool)).sum() <= 2


@pytest.mark.parametrize("prompt", list(PROMPTS))
def test_prompts_tall_image(pair, prompt):
    op, sp, _, _ = _set(pair, "tall")
    p = dict(PROMPTS[prompt])
    if "point_coords" in p:  # keep points inside the 90-pixel-wide image
        p["point_coords"] = [[min(x, 85), y] for x, y in p["point_coords"]]
    _check(_official(op, p), _ours(sp, p))


@pytest.mark.parametrize("prompt", ["point", "pos-neg-single", "box+points"])
def test_prompts_landscape_and_logits(pair, prompt):
    op, sp, _, _ = _set(pair, "landscape")
    p = PROMPTS[prompt]
    _check(_official(op, p), _ours(sp, p))
    op_logits = op.predict(
        **{k: (np.asarray(v) if isinstance(v, list) else v) for k, v in p.items()},
        return_logits=True,
    )
    _check(op_logits, _ours(sp, p, return_logits=True), logits=True)


def test_mask_input_refinement(pair):
    op, sp, _, _ = _set(pair, "landscape")
    first = _official(op, PROMPTS["point"])
    prev = first[2][np.argmax(first[1])][None]  # (1, 256, 256) clamped logits
    p = dict(PROMPTS["pos-neg"], multimask_output=False)
    _check(_official(op, p, mask_input=prev), _ours(sp, p, mask_input=prev))


def test_batched_boxes(pair):
    op, sp, _, _ = _set(pair, "landscape")
    boxes = np.array([[20, 60, 80, 280], [150, 40, 400, 200], [0, 0, 419, 299]], np.float32)
    masks, iou, low_res = op.predict(box=boxes, multimask_output=True)
    ours = sp.predict_batch(boxes=boxes, multimask=True)
    assert ours.masks.shape == masks.shape
    assert np.abs(ours.scores - iou).max() <= 1e-5
    assert _rel(ours.low_res_logits, low_res) <= 1e-5
    assert (ours.masks != masks.astype(bool)).sum() <= 3


def test_object_scores_and_tokens(pair):
    """The decoder's object-score logits and output tokens (used by video) agree."""
    _, ours, official = pair
    op, sp, emb, _ = _set(pair, "landscape")
    coords = torch.tensor([[[120.0, 140.0], [300.0, 90.0]]])
    labels = torch.tensor([[1, 0]], dtype=torch.int32)
    with torch.inference_mode():
        out = ours.decode_full(
            emb.features,
            points=(coords, labels),
            multimask_output=True,
            high_res_features=emb.high_res_features,
        )
        sparse, dense = official.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        masks, iou, tokens, obj = official.sam_mask_decoder(
            image_embeddings=op._features["image_embed"],
            image_pe=official.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
            repeat_image=False,
            high_res_features=op._features["high_res_feats"],
        )
    assert _rel(out.masks, masks) <= 1e-5
    assert _rel(out.iou, iou) <= 1e-5
    assert out.sam_tokens.shape == tokens.shape == (1, 3, 256)
    assert _rel(out.sam_tokens, tokens) <= 1e-5
    assert out.object_score_logits.shape == obj.shape == (1, 1)
    assert float((out.object_score_logits - obj).abs().max()) <= 1e-4


def test_dynamic_multimask_fallback_is_exercised(pair):
    """With multimask off, at least one prompt above takes the multimask fallback, so the
    single-output tests compare both branches (random weights give unstable masks)."""
    _, ours, _ = pair
    _, sp, emb, _ = _set(pair, "landscape")
    coords = torch.tensor([[[100.0, 80.0]], [[300.0, 200.0]], [[20.0, 20.0]]])
    labels = torch.ones(3, 1, dtype=torch.int64)
    dec = ours.sam_mask_decoder
    with torch.inference_mode():
        sparse, dense = ours.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        masks, _, _, _ = dec.predict_masks_full(
            emb.features,
            ours.sam_prompt_encoder.get_dense_pe(),
            sparse,
            dense,
            emb.high_res_features,
        )
    stable = dec.stability_scores(masks[:, 0]) >= dec.dynamic_multimask_stability_thresh
    assert not bool(stable.all())


@pytest.mark.slow
def test_full_size_sam21_tiny():
    """The real sam2.1-hiera-tiny architecture at 1024: embeddings, logits, masks."""
    cfg = samkit.get_preset("sam2.1-hiera-tiny").config
    official = h.official_sam2(cfg)
    sd = h.random_state_dict(official, seed=3)
    official.load_state_dict(sd, strict=True)
    ours = samkit.build_model(cfg)
    ours.load_state_dict(sd, strict=True)
    img = _image((480, 640), seed=5)
    op = h.official_image_predictor(official, 1024)
    op.set_image(img)
    sp = samkit.ImagePredictor(ours)
    emb = sp.set_image(img)
    assert emb.features.shape == (1, 256, 64, 64)
    assert _rel(emb.features, op._features["image_embed"]) <= 1e-5
    for a, b in zip(emb.high_res_features, op._features["high_res_feats"], strict=True):
        assert _rel(a, b) <= 1e-5
    for p in (PROMPTS["point"], PROMPTS["box+points"]):
        _check(_official(op, p), _ours(sp, p))
