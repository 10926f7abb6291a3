"""Predictor-level parity of samkit's ``mobile-sam`` preset with the official MobileSAM.

The full ``mobile-sam`` preset (TinyViT-5M encoder) and the official
``mobile_sam.sam_model_registry["vit_t"]()`` hold the same seeded random weights,
including BatchNorm running statistics (positive variances) and TinyViT attention biases.
The encoder alone is covered by ``test_tiny_vit_parity.py``; this file checks the whole
pipeline (preprocessing, encoder, prompt encoder, decoder, upsampling) through the
official ``SamPredictor`` against ``samkit.ImagePredictor``. The official package is
imported through ``reference_shims``; these tests fail if it cannot be imported.
"""

from __future__ import annotations

import helpers_sam as H
import numpy as np
import pytest
import reference_shims

import samkit


@pytest.fixture(scope="module")
def predictors():
    mobile_sam = reference_shims.import_mobile_sam()
    official_model, our_model, sd = H.mobile_pair()
    assert any(k.endswith("running_var") for k in sd)
    assert any(k.endswith("attention_biases") for k in sd)
    image = H.make_image(480, 640, seed=21)
    official = mobile_sam.SamPredictor(official_model)
    official.set_image(image)
    ours = samkit.ImagePredictor(our_model)
    ours.set_image(image)
    return official, ours


def test_mobile_sam_embedding_parity(predictors) -> None:
    official, ours = predictors
    emb = ours.embedding
    assert emb.model_name == "mobile-sam"
    assert emb.original_size == tuple(official.original_size) == (480, 640)
    assert emb.input_size == tuple(official.input_size) == (768, 1024)
    expected = official.get_image_embedding()
    assert emb.features.shape == expected.shape == (1, 256, 64, 64)
    # random weights must keep activations O(1) for the comparison to mean something
    assert 0.1 < float(expected.std()) < 10.0
    H.assert_close(emb.features, expected, "mobile-sam embedding")


PROMPTS = {
    "point": {"point_coords": np.array([[390.0, 170.0]]), "point_labels": np.array([1])},
    "box": {"box": np.array([120.0, 60.0, 520.0, 410.0])},
}


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("prompt", list(PROMPTS))
def test_mobile_sam_predict_parity(predictors, prompt: str, multimask: bool) -> None:
    official, ours = predictors
    kw = PROMPTS[prompt]
    m_ref, s_ref, l_ref = official.predict(**kw, multimask_output=multimask)
    res = ours.predict(
        points=kw.get("point_coords"),
        labels=kw.get("point_labels"),
        box=kw.get("box"),
        multimask=multimask,
    )
    k = 3 if multimask else 1
    assert res.masks.shape == m_ref.shape == (k, 480, 640)
    assert res.scores.shape == s_ref.shape == (k,)
    assert res.low_res_logits.shape == l_ref.shape == (k, 256, 256)
    what = f"mobile-sam {prompt} multimask={multimask}"
    H.assert_nontrivial(m_ref, what)
    H.assert_close(res.low_res_logits, l_ref, f"{what} low-res logits")
    H.assert_close(res.scores, s_ref, f"{what} iou scores")
    H.assert_masks_match(res.masks, m_ref, f"{what} masks")
