"""Prompt-independent decoder work prepared once per image (``prepare_decoding``).

Without a mask prompt the first two-way block's image-side projections are the same for
every prompt on an image; the predictor computes them on an embedding's first prompt and
reuses them. The outputs must equal those of decoding without them (SAM 1 and SAM 2,
points, boxes, many points, batches in chunks, ``decode_selected``), and they must be
ignored whenever they do not apply: another embedding tensor, a mask prompt, weights
changed in place, gradients on. (The official-parity tests go through the predictor, so
they also check the prepared path against the official code.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import family_model

import samkit
from samkit.layers.attention import Attention
from samkit.modeling.mask_decoder import PreparedImage

TOL = 1e-5  # relative to the logits' scale: float rounding only


def _embedding(model, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = (torch.rand(300, 400, 3, generator=g) * 255).to(torch.uint8).numpy()
    return samkit.ImagePredictor(model).encode(image)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-6)).item()


def _prompts(model, b: int, p: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    s = float(model.image_size)
    pts = torch.rand(b, p, 2, generator=g) * s
    labels = (torch.rand(b, p, generator=g) > 0.3).long()
    lo = torch.rand(b, 2, generator=g) * s / 2
    return (pts, labels), torch.cat([lo, lo + s / 4], dim=1)


class _Count:
    """Counts calls of the prepared-path attention (to prove it ran)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.n = 0
        original = Attention.attend_projected

        def wrapped(attn, *args, **kwargs):
            self.n += 1
            return original(attn, *args, **kwargs)

        monkeypatch.setattr(Attention, "attend_projected", wrapped)


@pytest.mark.parametrize("family", ["sam1", "sam2"])
@pytest.mark.parametrize(
    ("b", "p", "box"),
    [(1, 1, False), (1, 3, True), (7, 2, False), (3, 20, False), (5, 0, True)],
)
def test_prepared_equals_plain(
    family: str, b: int, p: int, box: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many points (20 with 8 heads) take the unfolded image -> token output; 7 prompt
    sets decode in chunks; ``decode_selected`` keeps what ``decode`` gives."""
    model = family_model(family)
    emb = _embedding(model)
    points, boxes = _prompts(model, b, max(p, 1))
    points = points if p else None
    boxes = boxes if box else None
    hr = emb.high_res_features or ()
    count = _Count(monkeypatch)
    with torch.inference_mode():
        prepared = model.prepare_decoding(emb.features)
        assert isinstance(prepared, PreparedImage)
        for multimask in (True, False):
            plain = model.decode(emb.features, points, boxes, None, multimask, high_res_features=hr)
            before = count.n
            fast = model.decode(emb.features, points, boxes, None, multimask, hr, prepared=prepared)
            assert count.n > before  # the prepared path ran
            assert _rel(fast[0], plain[0]) <= TOL and _rel(fast[1], plain[1]) <= TOL

            def select(iou: torch.Tensor) -> torch.Tensor:
                return iou >= iou.median()  # at least one kept

            sel_plain = model.decode_selected(
                emb.features, select, points, boxes, None, multimask, hr
            )
            sel_fast = model.decode_selected(
                emb.features, select, points, boxes, None, multimask, hr, prepared=prepared
            )
            assert torch.equal(sel_fast[1], sel_plain[1])
            assert _rel(sel_fast[2], sel_plain[2]) <= TOL


def test_prepared_is_ignored_where_it_does_not_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    model = family_model("sam1")
    emb, other = _embedding(model, 0), _embedding(model, 5)
    points, _ = _prompts(model, 2, 2)
    count = _Count(monkeypatch)
    with torch.inference_mode():
        prepared = model.prepare_decoding(emb.features)
        # another embedding (even with equal values: identity is what counts)
        for features in (other.features, emb.features.clone()):
            expected = model.decode(features, points)
            got = model.decode(features, points, prepared=prepared)
            assert torch.equal(got[0], expected[0])
    # the same embedding tensor changed in place (a normal tensor has a version)
    with torch.no_grad():
        features = emb.features.clone()
        own = model.prepare_decoding(features)
        features.mul_(0.5)
        expected = model.decode(features, points)
        got = model.decode(features, points, prepared=own)
        assert torch.equal(got[0], expected[0])
    with torch.inference_mode():
        # a mask prompt: a dense prompt per prompt set
        side = 4 * model.prompt_encoder.image_embedding_size[0]
        masks = torch.randn(2, 1, side, side)
        expected = model.decode(emb.features, points, mask_input=masks)
        got = model.decode(emb.features, points, mask_input=masks, prepared=prepared)
        assert torch.equal(got[0], expected[0])
        assert count.n == 0
        # weights changed in place after preparing: ignored, and not reused
        layer = model.mask_decoder.transformer.layers[0]
    with torch.no_grad():
        layer.cross_attn_token_to_image.k_proj.weight.mul_(1.5)
    with torch.inference_mode():
        expected = model.decode(emb.features, points)
        got = model.decode(emb.features, points, prepared=prepared)
        assert torch.equal(got[0], expected[0]) and count.n == 0
        fresh = model.prepare_decoding(emb.features, reuse=prepared)
        assert fresh is not prepared
        assert model.prepare_decoding(emb.features, reuse=fresh) is fresh
        got = model.decode(emb.features, points, prepared=fresh)
        assert count.n > 0 and _rel(got[0], expected[0]) <= TOL
    with torch.enable_grad():
        assert model.prepare_decoding(emb.features) is None


def test_predictor_prepares_once_per_embedding(monkeypatch: pytest.MonkeyPatch) -> None:
    model = family_model("sam2")
    predictor = samkit.ImagePredictor(model)
    calls = []
    original = type(model).prepare_decoding

    def spy(self, features, reuse=None):
        out = original(self, features, reuse)
        calls.append(out is not reuse)  # True when it computed a new one
        return out

    monkeypatch.setattr(type(model), "prepare_decoding", spy)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    emb = predictor.set_image(image)
    plain = samkit.ImagePredictor(family_model("sam2"))  # same seeded weights
    plain.set_embedding(emb)
    monkeypatch.setattr(plain, "_prepared_for", lambda e: None)
    for point in ([[40, 50]], [[100, 30]], [[10, 110]]):
        got = predictor.predict(points=point, labels=[1], return_logits=True)
        want = plain.predict(points=point, labels=[1], return_logits=True)
        np.testing.assert_allclose(got.masks, want.masks, rtol=0, atol=1e-4)
        np.testing.assert_allclose(got.scores, want.scores, rtol=0, atol=1e-5)
    assert calls == [True, False, False]
    # a mask prompt does not use (or replace) it
    predictor.predict(points=[[40, 50]], labels=[1], mask_input=got.low_res_logits[:1])
    assert len(calls) == 3
    # a new image: prepared anew; reset forgets it
    predictor.set_image(image[::-1].copy())
    predictor.predict(points=[[40, 50]], labels=[1])
    assert calls[-1] is True
    predictor.reset()
    assert predictor._prepared is None
