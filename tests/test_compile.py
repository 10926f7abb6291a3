"""``samkit.compile_model``: compiled models give the eager model's results, keep their
checkpoint keys, and track video without recompiling frame after frame.

Compiled on the CPU with torch's default inductor backend (it needs a C++ compiler, which
the test machines have); small models keep each compilation to seconds. ``fullgraph=True``
(the default) makes any graph break an error, so passing here also means each part
compiles as one graph.
"""

from __future__ import annotations

import numpy as np
import pytest
import test_video_session as tvs
import tiny_models
import torch

import samkit
from samkit.build import set_inference_dtype
from samkit.compile import COMPILABLE_PARTS, compile_model, is_compiled
from samkit.modeling.encoders.tiny_vit import TinyViT
from samkit.video import VideoPredictor


def _image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 90, (150, 200, 3), dtype=np.uint8)
    img[40:110, 60:150] = (220, 60, 50)
    return img


def _predict(model) -> list:
    predictor = samkit.ImagePredictor(model)
    predictor.set_image(_image())
    return [
        predictor.predict(points=[[100, 75]], labels=[1]),
        predictor.predict(points=[[100, 75], [20, 20]], labels=[1, 0], multimask=False),
        predictor.predict(box=[50, 30, 160, 120]),
    ]


def test_sam1_compiled_predictions_equal_eager():
    model = tiny_models.family_model("sam1")
    keys = {k: v.shape for k, v in model.state_dict().items()}
    eager = _predict(model)
    assert compile_model(model) is model
    assert is_compiled(model.image_encoder)
    compiled = _predict(model)
    for a, b in zip(eager, compiled, strict=True):
        np.testing.assert_allclose(b.low_res_logits, a.low_res_logits, atol=1e-4, rtol=0)
        np.testing.assert_allclose(b.scores, a.scores, atol=1e-5, rtol=0)
        assert (a.masks != b.masks).mean() <= 1e-4
    # same parameters under the same names: official checkpoints still load strictly
    assert {k: v.shape for k, v in model.state_dict().items()} == keys
    state = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    model.load_state_dict(state, strict=True)
    assert torch.equal(
        model.state_dict()["image_encoder.pos_embed"], state["image_encoder.pos_embed"]
    )


def test_sam1_compiled_bf16_matches_eager_bf16():
    model = set_inference_dtype(tiny_models.family_model("sam1"), torch.bfloat16)
    eager = _predict(model)
    compile_model(model, "image_encoder")
    compiled = _predict(model)
    for a, b in zip(eager, compiled, strict=True):
        # bf16 kernels fused differently round differently; the masks agree
        union = (a.masks | b.masks).sum()
        assert union == 0 or (a.masks & b.masks).sum() / union >= 0.98
        np.testing.assert_allclose(b.scores, a.scores, atol=0.05, rtol=0)


def test_tiny_vit_encoder_compiles_to_eager_values():
    """MobileSAM's encoder (reduced depth, 256-pixel input; the row bands of its eager
    inference form are not traced)."""
    torch.manual_seed(0)
    encoder = TinyViT(depths=(1, 1, 1, 1), img_size=256).eval()
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        eager = encoder(x)
        encoder.compile(fullgraph=True, dynamic=False)
        compiled = encoder(x)
    assert (compiled - eager).abs().max() <= 1e-4 * eager.abs().max()


def _track(model, frames: int = 12) -> list:
    pulled = [0]
    session = VideoPredictor(model).start(list(tvs._stream(frames, pulled)))
    session.add_prompt(0, 1, points=[[18, 20]], labels=[1])
    session.add_prompt(0, 2, mask=tvs._mask_prompt())
    out = [(r.frame_index, dict(r.masks), dict(r.scores)) for r in session.propagate()]
    # a correction and a box-prompted object added after the first pass
    session.add_prompt(6, 1, points=[[40, 20]], labels=[0])
    session.add_prompt(3, 3, box=[30, 5, 60, 35])
    out += [(r.frame_index, dict(r.masks), dict(r.scores)) for r in session.propagate(start=3)]
    session.close()
    return out


@pytest.fixture(scope="module")
def sam2_pair():
    """The tiny SAM 2.1 of the video-session tests, eager and compiled (same weights)."""
    eager = tvs._tiny_model()
    compiled = compile_model(tvs._tiny_model())
    return eager, compiled


def test_sam2_video_compiled_equals_eager_without_per_frame_recompiles(sam2_pair):
    """Image encoder, memory attention, memory encoder and the decoder's tracking entry
    point compiled. The memory grows from 1 to 7 frames and the pointers from 1 to 11
    over the clip and the object count changes from 2 to 3: with ``fullgraph=True`` a
    recompile per distinct shape would hit torch's recompile limit (8) and raise, so
    finishing means the dynamic shapes hold."""
    model = sam2_pair[1]
    assert all(
        is_compiled(m)
        for m in (model.image_encoder.trunk, model.memory_attention, model.memory_encoder)
    )
    assert is_compiled(model.sam_mask_decoder, "forward_full")
    eager = _track(sam2_pair[0])
    compiled = _track(model)
    assert [r[0] for r in compiled] == [r[0] for r in eager]
    for (_, masks_a, scores_a), (_, masks_b, scores_b) in zip(eager, compiled, strict=True):
        assert masks_a.keys() == masks_b.keys()
        for obj in masks_a:
            assert (masks_a[obj] != masks_b[obj]).mean() <= 1e-4
            assert abs(scores_a[obj] - scores_b[obj]) <= 1e-4


def test_sam2_image_predictions_compiled_equal_eager(sam2_pair):
    """SAM 2 on still images through the compiled encoder and decoder (the predictor's
    prepared decoder work steps aside under tracing)."""
    eager, compiled = (_predict(m) for m in sam2_pair)
    for a, b in zip(eager, compiled, strict=True):
        np.testing.assert_allclose(b.low_res_logits, a.low_res_logits, atol=1e-4, rtol=0)
        np.testing.assert_allclose(b.scores, a.scores, atol=1e-5, rtol=0)
        assert (a.masks != b.masks).mean() <= 1e-4


def test_parts_and_errors():
    assert COMPILABLE_PARTS["sam"] == ("image_encoder",)
    assert set(COMPILABLE_PARTS["sam2"]) == {
        "image_encoder",
        "memory_attention",
        "memory_encoder",
        "mask_decoder",
    }
    model = tiny_models.family_model("sam1")
    with pytest.raises(samkit.InvalidArgument, match="memory_attention.*not a compilable part"):
        compile_model(model, ["memory_attention"])
    assert not is_compiled(model.image_encoder)  # nothing compiled on error
    with pytest.raises(samkit.InvalidArgumentType, match="needs a samkit model"):
        compile_model(torch.nn.Linear(2, 2))
    video = tvs._tiny_model()
    compile_model(video, ["memory_encoder"])
    assert is_compiled(video.memory_encoder)
    assert not is_compiled(video.memory_attention) and not is_compiled(video.image_encoder.trunk)
    assert not is_compiled(video.sam_mask_decoder, "forward_full")
    # compiling a method leaves the parameters and their names alone
    compile_model(video, "mask_decoder")
    assert is_compiled(video.sam_mask_decoder, "forward_full")
    assert video.state_dict().keys() == tvs._tiny_model().state_dict().keys()
