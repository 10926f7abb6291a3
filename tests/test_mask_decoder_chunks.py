"""Inference decodes prompt sets in cache-sized chunks (``mask_decoder.CHUNK_TOKENS``).

Prompt sets are independent, so chunked decoding must give what one pass gives: checked
for SAM 1 and SAM 2 (high-resolution skips, object scores), points, boxes, per-prompt mask
inputs, the dynamic single-mask output and ``decode_selected``, with a last partial chunk.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import family_model

import samkit
from samkit.modeling import mask_decoder as md

B = 7  # prompt sets: chunks of 2 leave a partial last chunk


def _inputs(model, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    image = (torch.rand(300, 400, 3, generator=g) * 255).to(torch.uint8).numpy()
    emb = samkit.ImagePredictor(model).encode(image)
    s = float(model.image_size)
    pts = torch.rand(B, 2, 2, generator=g) * s
    labels = torch.tensor([[1, 0]] * B)
    lo = torch.rand(B, 2, generator=g) * s / 2
    boxes = torch.cat([lo, lo + s / 4], dim=1)
    side = 4 * model.prompt_encoder.image_embedding_size[0]
    masks = torch.randn(B, 1, side, side, generator=g)
    return emb, (pts, labels), boxes, masks


def _decode_all(model, emb, points, boxes, masks, thresholds):
    hr = emb.high_res_features or ()
    out = {}
    for multimask in (True, False):
        out[f"points{multimask}"] = model.decode(
            emb.features, points=points, multimask_output=multimask, high_res_features=hr
        )
        out[f"box+mask{multimask}"] = model.decode(
            emb.features,
            points=points,
            boxes=boxes,
            mask_input=masks,
            multimask_output=multimask,
            high_res_features=hr,
        )

        def select(iou: torch.Tensor, t: float = thresholds[multimask]) -> torch.Tensor:
            return iou > t  # per output, as the mask generator's filter

        out[f"selected{multimask}"] = model.decode_selected(
            emb.features, select, points=points, multimask_output=multimask, high_res_features=hr
        )
    return out


@pytest.mark.parametrize("family", ["sam1", "sam2"])
def test_chunked_decoding_equals_one_pass(family, monkeypatch):
    model = family_model(family)
    emb, points, boxes, masks = _inputs(model)
    tokens = int(np.prod(emb.features.shape[-2:]))
    with torch.inference_mode():
        monkeypatch.setattr(md, "CHUNK_TOKENS", 10**9)
        assert len(md._chunks(B, tokens)) == 1
        thresholds = {}
        for m in (True, False):
            iou = model.decode(
                emb.features,
                points=points,
                multimask_output=m,
                high_res_features=emb.high_res_features or (),
            )[1]
            # halfway between two middle values: rounding cannot move an IoU across it
            mid = iou.flatten().sort().values[iou.numel() // 2 - 1 : iou.numel() // 2 + 1]
            thresholds[m] = float(mid.mean())
        whole = _decode_all(model, emb, points, boxes, masks, thresholds)
        monkeypatch.setattr(md, "CHUNK_TOKENS", 2 * tokens)
        assert [s.stop - s.start for s in md._chunks(B, tokens)] == [2, 2, 2, 1]
        chunked = _decode_all(model, emb, points, boxes, masks, thresholds)
    for key, ref in whole.items():
        got = chunked[key]
        assert len(got) == len(ref)
        for a, b in zip(got, ref, strict=True):
            assert a.shape == b.shape, key
            if a.dtype == torch.bool:
                assert torch.equal(a, b), key
            else:
                scale = float(b.abs().max()) + 1e-6
                assert float((a - b).abs().max()) <= 1e-5 * scale, key
    kept = whole["selectedTrue"][1]
    assert 0 < int(kept.sum()) < kept.numel()  # the selection kept some, dropped some


def test_gradients_skip_chunking():
    """Training (grad enabled) decodes everything in one pass."""
    assert md.MaskDecoder._split(None, B, torch.zeros(1, 256, 64, 64)) == [slice(0, B)]  # type: ignore[arg-type]
    with torch.no_grad():
        parts = md.MaskDecoder._split(None, B, torch.zeros(1, 256, 64, 64))  # type: ignore[arg-type]
    assert parts == md._chunks(B, 64 * 64) and len(parts) > 1


@pytest.mark.parametrize("family", ["sam1", "sam2"])
@pytest.mark.parametrize("b", [1, 3])
def test_upscaling_in_row_bands_equals_one_pass(family, b, monkeypatch):
    """At inference the upscaling runs on bands of rows (``UPSCALE_PIXELS``), with a
    partial last band and SAM 2's skip features sliced per band: same logits as one
    pass over all rows (what training, with gradients, runs)."""
    model = family_model(family)
    dec = model.mask_decoder
    h, w = model.prompt_encoder.image_embedding_size
    c = dec.transformer_dim
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, h, w, c, generator=g)
    hyper = torch.randn(b, 4, c // 8, generator=g)
    skips = None
    if dec.use_high_res_features:
        skips = (
            torch.randn(1, c // 8, 4 * h, 4 * w, generator=g),
            torch.randn(1, c // 4, 2 * h, 2 * w, generator=g),
        )
    with torch.enable_grad():
        whole = dec._upscale_and_project(x, hyper, skips).detach()
    monkeypatch.setattr(md, "UPSCALE_PIXELS", 3 * w * b)  # bands of 3 rows
    assert h % 3 != 0
    calls = []
    orig = dec._upscale_rows
    monkeypatch.setattr(dec, "_upscale_rows", lambda *a: calls.append(1) or orig(*a))
    with torch.inference_mode():
        banded = dec._upscale_and_project(x, hyper, skips)
    assert len(calls) == -(-h // 3)
    assert torch.equal(banded, whole)
