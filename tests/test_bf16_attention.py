"""bf16 inference on the CPU: the blockwise attention path (``samkit.layers.sdpa``).

Torch's fused CPU attention kernel is no faster in bf16 than in fp32, so bf16 inference on
the CPU computes attention with bf16 matrix products on bounded blocks of queries. These
tests compare it with float32 attention on the same (bf16-rounded) inputs, check that
everything else (fp32, gradients, dropout) still goes to the fused kernel, and that a
trained model's bf16 masks match its fp32 masks. SAM 2's memory attention in bf16 (and a
video session on a bf16 model) is compared with the official code under bf16 autocast.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import helpers_sam as H
import helpers_sam2 as H2
import numpy as np
import pytest
import test_sam2_tracking_parity as tp
import torch
import torch.nn.functional as F
from PIL import Image

import samkit
from samkit.build import set_inference_dtype
from samkit.layers import common
from samkit.layers.rel_pos import rel_pos_attention
from samkit.layers.sdpa import blockwise_bf16, scaled_dot_product_attention
from samkit.train.losses import mask_iou

SMALL = 8 * 1024  # bytes: forces many query blocks


@pytest.fixture
def small_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "TRANSIENT_BYTES", SMALL)


def _errors(actual: torch.Tensor, expected: torch.Tensor) -> tuple[float, float]:
    """(max, mean) absolute error relative to the mean magnitude of ``expected``."""
    diff = (actual.float() - expected.float()).abs()
    scale = expected.float().abs().mean().item()
    return diff.max().item() / scale, diff.mean().item() / scale


def _qkv_from_fused(b: int, n: int, heads: int, c: int, seed: int) -> tuple[torch.Tensor, ...]:
    """q, k, v as the encoders make them: non-contiguous views of one fused projection."""
    g = torch.Generator().manual_seed(seed)
    qkv = torch.randn(b, n, 3, heads, c, generator=g).bfloat16()
    return tuple(qkv.permute(2, 0, 3, 1, 4).unbind(0))


@pytest.mark.parametrize(
    ("b", "heads", "n", "c", "mask"),
    [
        (6, 2, 49, 16, None),  # windows
        (1, 3, 256, 32, None),  # one global block
        (4, 2, 49, 16, "float"),  # TinyViT-style bias (heads, N, N)
        (2, 2, 64, 16, "bool"),
    ],
)
def test_blockwise_bf16_matches_float32_attention(
    small_budget: None, b: int, heads: int, n: int, c: int, mask: str | None
) -> None:
    q, k, v = _qkv_from_fused(b, n, heads, c, seed=n)
    bias = None
    if mask == "float":
        bias = torch.randn(heads, n, n, generator=torch.Generator().manual_seed(1))
    elif mask == "bool":
        bias = torch.rand(n, n, generator=torch.Generator().manual_seed(2)) > 0.3
        bias |= torch.eye(n, dtype=torch.bool)  # every query attends somewhere
    with torch.inference_mode():
        assert blockwise_bf16(q)
        assert common.rows_per_chunk(b * heads * n, 2) < n  # really several blocks
        out = scaled_dot_product_attention(q, k, v, attn_mask=bias)
        ref_mask = bias if bias is None or bias.dtype == torch.bool else bias.bfloat16().float()
        ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=ref_mask)
        fused = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    assert out.dtype == torch.bfloat16 and out.shape == (b, heads, n, c)
    _check_error(out, fused, ref)


def _check_error(out: torch.Tensor, fused: torch.Tensor, ref: torch.Tensor) -> None:
    """bf16 scores and probabilities (as the official code under autocast) cost precision
    against the fused kernel, which accumulates in float32: allow a few times its error."""
    worst, mean = _errors(out, ref)
    fused_worst, fused_mean = _errors(fused, ref)
    assert mean < 0.015, (mean, fused_mean)
    assert mean < 4 * fused_mean + 1e-3, (mean, fused_mean)
    assert worst < 4 * fused_worst + 0.02, (worst, fused_worst)


def test_other_cases_keep_the_fused_kernel() -> None:
    q, k, v = (t.float() for t in _qkv_from_fused(2, 40, 2, 8, seed=0))
    with torch.inference_mode():
        assert not blockwise_bf16(q)
        assert torch.equal(
            scaled_dot_product_attention(q, k, v), F.scaled_dot_product_attention(q, k, v)
        )
    qb = q.bfloat16().requires_grad_(True)
    kb, vb = k.bfloat16(), v.bfloat16()
    assert not blockwise_bf16(qb)  # gradients: the fused kernel
    out = scaled_dot_product_attention(qb, kb, vb)
    assert torch.equal(out, F.scaled_dot_product_attention(qb, kb, vb))
    out.float().sum().backward()
    assert qb.grad is not None
    with torch.inference_mode():  # dropout also keeps the fused kernel
        torch.manual_seed(0)
        a = scaled_dot_product_attention(q.bfloat16(), kb, vb, dropout_p=0.5)
        torch.manual_seed(0)
        b = F.scaled_dot_product_attention(q.bfloat16(), kb, vb, dropout_p=0.5)
    assert torch.equal(a, b)


@pytest.mark.parametrize("size", [(7, 7), (16, 12)])
def test_rel_pos_attention_bf16_blockwise(small_budget: None, size: tuple[int, int]) -> None:
    h, w = size
    q, k, v = _qkv_from_fused(2, h * w, 2, 16, seed=h)
    g = torch.Generator().manual_seed(5)
    rel_h = (torch.randn(2 * h - 1, 16, generator=g) * 0.5).bfloat16()
    rel_w = (torch.randn(2 * w - 1, 16, generator=g) * 0.5).bfloat16()
    with torch.inference_mode():
        out = rel_pos_attention(q, k, v, rel_h, rel_w, size)
        ref = rel_pos_attention(q.float(), k.float(), v.float(), rel_h.float(), rel_w.float(), size)
    with torch.no_grad(), torch.enable_grad():  # not inference: the fused kernel, bf16 bias
        fused = rel_pos_attention(q, k, v, rel_h, rel_w, size)
    assert out.dtype == torch.bfloat16 and out.shape == ref.shape
    _check_error(out, fused, ref)


def test_trained_model_bf16_masks_match_fp32() -> None:
    """The bundled trained model, encoder in bf16 (global and windowed rel-pos attention on
    the blockwise path) against fp32 on the sample image.

    Clicks on objects give the same masks (IoU >= 0.98 for every candidate). A click on
    the textured background ([90, 80]) gives low-confidence candidates whose boundaries
    run through logits near zero: there bf16 moves a few percent of a mask (IoU 0.962 for
    the phase-9 weights' first candidate, predicted IoU 0.21, largest low-res logit change
    0.07), so for every candidate the test checks where the masks differ instead: only at
    pixels where the fp32 logit itself is within 0.5 of the threshold."""
    fp32 = samkit.load_model("samkit-demo")
    bf16 = set_inference_dtype(copy.deepcopy(fp32), torch.bfloat16)
    image = np.asarray(Image.open(Path(samkit.__file__).parent / "assets" / "sample.jpg"))
    clicks = {"yellow disc": [210, 245], "background": [90, 80], "red box": [300, 140]}
    results = []
    for model in (fp32, bf16):
        predictor = samkit.ImagePredictor(model)
        predictor.set_image(image)
        results.append(
            [predictor.predict(points=[p], labels=[1], return_logits=True) for p in clicks.values()]
        )
    for name, a, b in zip(clicks, *results, strict=True):
        ma, mb = a.masks > 0, b.masks > 0
        assert ma.any(axis=(1, 2)).all()
        flipped = ma != mb
        assert (np.abs(a.masks[flipped]) < 0.5).all(), (name, np.abs(a.masks[flipped]).max())
        ious = mask_iou(torch.from_numpy(mb)[None], torch.from_numpy(ma)[None])[0]
        if name != "background":
            assert ious.min().item() >= 0.98, (name, ious)
        assert np.abs(a.scores - b.scores).max() < 0.02


def _rel(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual.float() - expected.float()).norm() / expected.float().norm()).item()


def test_bf16_encoders_as_precise_as_official_autocast() -> None:
    """samkit's bf16 encoders (blockwise attention; SAM 2's folded high-resolution
    projections in fp32) against the official encoders run under CPU bf16 autocast, both
    measured against the official fp32 output: the errors are of the same size."""
    g = torch.Generator().manual_seed(0)
    official, ours, _ = H.reduced_pair()
    sam2_ours, sam2_official = H2.model_pair("2.1", 512)
    cases = []
    with torch.inference_mode():
        x = torch.randn(1, 3, 1024, 1024, generator=g)
        bf = copy.deepcopy(ours)
        bf.image_encoder.to(torch.bfloat16)
        ref = official.image_encoder(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            theirs = official.image_encoder(x)
        cases.append(("sam1 embedding", bf.encode_image(x), theirs, ref))
        x = torch.randn(1, 3, 512, 512, generator=g)
        bf = copy.deepcopy(sam2_ours)
        bf.image_encoder.to(torch.bfloat16)
        ref = sam2_official.forward_image(x)["backbone_fpn"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            theirs = sam2_official.forward_image(x)["backbone_fpn"]
        mine = bf.forward_image(x)
        cases += [(f"sam2 level {i}", mine[i], theirs[i], ref[i]) for i in range(3)]
    for what, mine, theirs, ref in cases:
        assert mine.dtype == torch.float32 and mine.shape == ref.shape, what
        err, official_err = _rel(mine, ref), _rel(theirs, ref)
        assert 0 < err < 1.5 * official_err + 1e-3, (what, err, official_err)


def test_bf16_memory_attention_as_precise_as_official_autocast() -> None:
    """SAM 2's memory attention with bf16 weights (narrow-value cross-attention and
    blockwise self-attention in bf16) against the official module under CPU bf16
    autocast, both measured against the official fp32 output; the result comes back in
    the caller's float32."""
    ours, official = H2.model_pair("2.1", 512)
    g = torch.Generator().manual_seed(1)
    n, frames, ptr_tokens = 32 * 32, 3, 16  # 32 x 32 grid, 3 memory frames, 4 pointers
    curr = torch.randn(n, 2, 256, generator=g)
    curr_pos = torch.randn(n, 2, 256, generator=g)
    memory = torch.randn(frames * n + ptr_tokens, 2, 64, generator=g)
    memory_pos = torch.randn(frames * n + ptr_tokens, 2, 64, generator=g)
    args = dict(
        curr=curr, curr_pos=curr_pos, memory=memory, memory_pos=memory_pos,
        num_obj_ptr_tokens=ptr_tokens,
    )  # fmt: skip
    bf = copy.deepcopy(ours.memory_attention).to(torch.bfloat16)
    with torch.inference_mode():
        ref = official.memory_attention(**args)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            theirs = official.memory_attention(**args)
        fp32 = ours.memory_attention(**args)
        mine = bf(**args)
    assert mine.dtype == torch.float32 and mine.shape == ref.shape == (n, 2, 256)
    assert _rel(fp32, ref) < 1e-5
    err, official_err = _rel(mine, ref), _rel(theirs, ref)
    assert 0 < err < 1.5 * official_err + 1e-3, (err, official_err)


def test_bf16_dtype_casts_encoder_and_memory_attention_only() -> None:
    model = samkit.build_model(H2.tiny_video_config(), dtype=torch.bfloat16)
    dtypes = {name: {p.dtype for p in part.parameters()} for name, part in model.named_children()}
    assert dtypes["image_encoder"] == dtypes["memory_attention"] == {torch.bfloat16}
    for name in ("memory_encoder", "sam_prompt_encoder", "sam_mask_decoder"):
        assert dtypes[name] == {torch.float32}, name


def test_bf16_video_session_tracks_like_official_autocast(tmp_path: Path) -> None:
    """A session on a model with a bf16 encoder and memory attention, against the fp32
    session, errs no more than the official video predictor under CPU bf16 autocast
    against its fp32 run: the tracking parity clip and random weights (objects visible),
    a click and a box on frame 0, propagation; per frame, the low-res logits of both
    objects and the object-presence decisions."""
    official, ours = tp._pair("2.1")
    bf = set_inference_dtype(copy.deepcopy(ours), torch.bfloat16)
    tp._write_clip(tmp_path)
    runs = []
    for model in (ours, bf):
        session = samkit.VideoPredictor(model).start(tmp_path)
        session.add_prompt(0, 1, points=tp.CLICK, labels=[1])
        session.add_prompt(0, 2, box=tp.BOX)
        visible = [r.visible for r in session.propagate()]
        low = [
            torch.cat([session.objects[i].output(f).low_res_logits for i in (1, 2)])
            for f in range(tp.NUM_FRAMES)
        ]
        runs.append((visible, low))
        session.close()
    (vis32, low32), (vis16, low16) = runs
    assert vis16 == vis32
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mp.setattr(tp._misc, "get_connected_components", tp._connected_components)
        ref = tp._run_official(official, tmp_path, correct=False)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = tp._run_official(official, tmp_path, correct=False)[0]
    frames = range(1, tp.NUM_FRAMES)  # the tracked frames
    ours_err = max(_rel(low16[f], low32[f]) for f in frames)
    official_err = max(_rel(auto.low[f], ref.low[f]) for f in frames)
    assert 0 < ours_err < 1.5 * official_err, (ours_err, official_err)
