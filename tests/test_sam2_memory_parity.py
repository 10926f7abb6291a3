"""Parity of samkit's SAM 2 memory encoder / memory attention with the official modules.

The official modules are built with the numbers of ``sam2.1_hiera_*.yaml`` (identical for
all sizes), mostly on a reduced 16x16 token grid to keep the run short; one case runs the
full 64x64 grid. Both sides load the same random state dict strictly and run in eval
mode. The official package is imported through ``reference_shims``; these tests fail
(not skip) if it cannot be imported.
"""

from __future__ import annotations

import pytest
import reference_shims
import torch
from torch import nn

from samkit.configs.base import MemoryConfig
from samkit.layers.attention import Attention, RoPEAttention
from samkit.layers.rope import AxialRope, apply_rope_qk, axial_rope, axial_rope_cos_sin
from samkit.modeling.memory import (
    MemoryAttention,
    MemoryAttentionLayer,
    MemoryEncoder,
    build_memory_attention,
    build_memory_encoder,
)

REL_TOL = 1e-5  # max |ours - official| relative to max |official|

_pe = reference_shims.import_sam2_module("modeling.position_encoding")
_tr = reference_shims.import_sam2_module("modeling.sam.transformer")
_ma = reference_shims.import_sam2_module("modeling.memory_attention")
_me = reference_shims.import_sam2_module("modeling.memory_encoder")


# --------------------------------------------------------------------------- builders


def official_rope_attention(cross: bool, feat_sizes=(64, 64)) -> nn.Module:
    kw = dict(rope_theta=10000.0, feat_sizes=list(feat_sizes), embedding_dim=256)
    kw.update(num_heads=1, downsample_rate=1, dropout=0.1)
    if cross:
        kw.update(rope_k_repeat=True, kv_in_dim=64)
    return _tr.RoPEAttention(**kw)


def official_memory_attention(feat_sizes=(64, 64), num_layers: int = 4) -> nn.Module:
    layer = _ma.MemoryAttentionLayer(
        activation="relu",
        dim_feedforward=2048,
        dropout=0.1,
        pos_enc_at_attn=False,
        self_attention=official_rope_attention(False, feat_sizes),
        d_model=256,
        pos_enc_at_cross_attn_keys=True,
        pos_enc_at_cross_attn_queries=False,
        cross_attention=official_rope_attention(True, feat_sizes),
    )
    return _ma.MemoryAttention(
        d_model=256, pos_enc_at_input=True, layer=layer, num_layers=num_layers
    )


def official_memory_encoder() -> nn.Module:
    position_encoding = _pe.PositionEmbeddingSine(
        num_pos_feats=64, normalize=True, scale=None, temperature=10000
    )
    mask_downsampler = _me.MaskDownSampler(kernel_size=3, stride=2, padding=1)
    block = _me.CXBlock(
        dim=256, kernel_size=7, padding=3, layer_scale_init_value=1e-6, use_dwconv=True
    )
    fuser = _me.Fuser(layer=block, num_layers=2)
    return _me.MemoryEncoder(
        out_dim=64,
        mask_downsampler=mask_downsampler,
        fuser=fuser,
        position_encoding=position_encoding,
    )


def random_state_dict(module: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Seeded random weights for every entry of ``module.state_dict()``.

    Matrices/kernels ``~ N(0, 1 / fan_in)``, norm weights ``1 + N(0, 0.1^2)``, biases
    ``N(0, 0.1^2)`` and the ConvNeXt layer scales ``N(0, 0.5^2)`` (the default 1e-6
    would make the blocks almost the identity and the comparison insensitive to them).
    """
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, t in module.state_dict().items():
        noise = torch.randn(t.shape, generator=gen)
        if name.endswith("gamma"):
            out[name] = 0.5 * noise
        elif t.ndim >= 2:
            out[name] = noise / t[0].numel() ** 0.5
        elif name.endswith("weight"):
            out[name] = 1 + 0.1 * noise
        else:
            out[name] = 0.1 * noise
    return out


def load_pair(ours: nn.Module, official: nn.Module, seed: int = 0) -> None:
    """Same random weights, strictly, into both; identical key sets and shapes."""
    ours_sd, ref_sd = ours.state_dict(), official.state_dict()
    assert set(ours_sd) == set(ref_sd)
    assert {k: v.shape for k, v in ours_sd.items()} == {k: v.shape for k, v in ref_sd.items()}
    sd = random_state_dict(official, seed)
    official.load_state_dict(sd, strict=True)
    ours.load_state_dict(sd, strict=True)
    ours.eval()
    official.eval()


def rel_err(ours: torch.Tensor, ref: torch.Tensor) -> float:
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    return ((ours - ref).abs().max() / ref.abs().max()).item()


def memory_inputs(
    side: int, batch: int, frames: int, ptr_tokens: int, seed: int
) -> dict[str, torch.Tensor | int]:
    """Sequence-first inputs of the memory attention, as SAM 2 passes them."""
    gen = torch.Generator().manual_seed(seed)
    n, m = side * side, frames * side * side + ptr_tokens
    return dict(
        curr=torch.randn(n, batch, 256, generator=gen),
        memory=torch.randn(m, batch, 64, generator=gen),
        curr_pos=torch.randn(n, batch, 256, generator=gen),
        memory_pos=torch.randn(m, batch, 64, generator=gen),
        num_obj_ptr_tokens=ptr_tokens,
    )


# --------------------------------------------------------------------------- RoPE


@pytest.mark.parametrize(("dim", "end_x", "end_y"), [(256, 64, 64), (32, 6, 4), (16, 5, 5)])
def test_rope_tables_match_official_cis(dim: int, end_x: int, end_y: int) -> None:
    cis = _pe.compute_axial_cis(dim=dim, end_x=end_x, end_y=end_y, theta=10000.0)
    cos, sin = axial_rope_cos_sin(dim, end_x, end_y, 10000.0)
    assert cos.shape == sin.shape == cis.shape == (end_x * end_y, dim // 2)
    torch.testing.assert_close(cos, cis.real, rtol=0, atol=1e-6)
    torch.testing.assert_close(sin, cis.imag, rtol=0, atol=1e-6)


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("kernel", ["complex", "real"])
@pytest.mark.parametrize(("repeat", "exclude"), [(1, 0), (3, 0), (3, 5), (2, 7)])
def test_apply_rope_matches_official(
    kernel: str, repeat: int, exclude: int, chunked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``chunked``: without gradients and with a budget of one 16-token grid, the keys are
    rotated a grid at a time straight into the result."""
    from samkit.layers import common

    if chunked:
        monkeypatch.setattr(common, "TRANSIENT_BYTES", 16 * 32 * 8)
    gen = torch.Generator().manual_seed(1)
    b, h, side, d = 2, 2, 4, 32
    n = side * side
    q = torch.randn(b, h, n, d, generator=gen)
    k = torch.randn(b, h, repeat * n + exclude, d, generator=gen)
    cis = _pe.compute_axial_cis(dim=d, end_x=side, end_y=side)
    k_ref = k.clone()
    n_rope = repeat * n
    q_ref, k_ref[:, :, :n_rope] = _pe.apply_rotary_enc(
        q, k_ref[:, :, :n_rope], freqs_cis=cis, repeat_freqs_k=repeat > 1
    )
    rope = axial_rope(d, side, side)
    assert rope.cis is not None  # CPU uses the complex kernel
    if kernel == "real":
        rope = AxialRope(rope.cos, rope.sin, None)
    with torch.set_grad_enabled(not chunked):
        q_out, k_out = apply_rope_qk(q, k, rope, repeat_k=repeat > 1, num_k_exclude=exclude)
    assert rel_err(q_out, q_ref) <= 1e-6
    assert rel_err(k_out, k_ref) <= 1e-6
    assert torch.equal(k_out[:, :, n_rope:], k[:, :, n_rope:])


def test_apply_rope_chunked_equals_whole_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inference with bounded temporaries (a grid at a time, written into the result)
    gives the same bf16 keys, bit for bit, as rotating everything at once."""
    from samkit.layers import common

    gen = torch.Generator().manual_seed(3)
    rope = axial_rope(32, 4, 4)
    q = torch.randn(3, 1, 16, 32, generator=gen).bfloat16()
    k = torch.randn(3, 1, 4 * 16 + 6, 32, generator=gen).bfloat16()
    whole = apply_rope_qk(q, k, rope, repeat_k=True, num_k_exclude=6)
    monkeypatch.setattr(common, "TRANSIENT_BYTES", 16 * 32 * 8)
    with torch.inference_mode():
        parts = apply_rope_qk(q, k, rope, repeat_k=True, num_k_exclude=6)
    assert parts[1].dtype == torch.bfloat16
    assert torch.equal(parts[0], whole[0]) and torch.equal(parts[1], whole[1])


def test_apply_rope_keeps_dtype_and_heads_layout() -> None:
    """bfloat16 in, bfloat16 out (rotated in float32); non-contiguous multi-head views."""
    rope = axial_rope(16, 3, 3)
    x = torch.randn(2, 9, 4, 16).transpose(1, 2)  # (B, H, N, D) view, as from the heads
    out, _ = apply_rope_qk(x.bfloat16(), x.bfloat16(), rope)
    assert out.dtype == torch.bfloat16
    real = AxialRope(rope.cos, rope.sin, None).rotate(x)
    torch.testing.assert_close(rope.rotate(x), real, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.float(), real, rtol=1e-2, atol=1e-2)


# --------------------------------------------------------------------------- RoPEAttention


@pytest.mark.parametrize("feat_sizes", [(16, 16), (64, 64)])
def test_rope_self_attention(feat_sizes: tuple[int, int]) -> None:
    """q = k = v over a 16x16 grid; with feat_sizes 64x64 the tables are recomputed."""
    ref = official_rope_attention(False, feat_sizes)
    ours = RoPEAttention(256, 1, dropout=0.1, feat_sizes=feat_sizes)
    load_pair(ours, ref, seed=2)
    x = torch.randn(2, 256, 256, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        err = rel_err(ours(x, x, x), ref(x, x, x))
    assert err <= REL_TOL


@pytest.mark.parametrize(("frames", "exclude"), [(1, 0), (3, 0), (3, 16), (2, 4)])
def test_rope_cross_attention(frames: int, exclude: int) -> None:
    """Keys: ``frames`` stacked 16x16 memory grids (64 channels), then pointer tokens."""
    ref = official_rope_attention(True, (16, 16))
    ours = RoPEAttention(256, 1, dropout=0.1, kv_in_dim=64, rope_k_repeat=True, feat_sizes=(16, 16))
    load_pair(ours, ref, seed=4)
    gen = torch.Generator().manual_seed(5)
    q = torch.randn(2, 256, 256, generator=gen)
    k = torch.randn(2, frames * 256 + exclude, 64, generator=gen)
    v = torch.randn(2, frames * 256 + exclude, 64, generator=gen)
    with torch.no_grad():
        out = ours(q, k, v, num_k_exclude_rope=exclude)
        expected = ref(q, k, v, num_k_exclude_rope=exclude)
    assert rel_err(out, expected) <= REL_TOL


@pytest.mark.parametrize(("heads", "budget"), [(1, 1 << 25), (1, 12_000), (2, 12_000)])
def test_rope_narrow_values_equal_projected_values(
    heads: int, budget: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At inference, 64-channel memories narrower than a head are weighted before they
    are projected (``_narrow_values``, the scores in query blocks); with autograd on the
    projected-value SDPA path runs. Both agree, with several heads and a partial block."""
    from samkit.layers import common

    # 12,000 bytes: blocks of 3 query rows (1 with two heads), the last one partial
    monkeypatch.setattr(common, "TRANSIENT_BYTES", budget)
    attn = RoPEAttention(256, heads, kv_in_dim=64, rope_k_repeat=True, feat_sizes=(16, 16))
    attn.eval()
    gen = torch.Generator().manual_seed(11)
    for p in attn.parameters():
        p.data.normal_(0, 0.1, generator=gen)
    q = torch.randn(2, 256, 256, generator=gen)
    k = torch.randn(2, 3 * 256 + 8, 64, generator=gen)
    v = torch.randn(2, 3 * 256 + 8, 64, generator=gen)
    with torch.no_grad():
        fast = attn(q, k, v, num_k_exclude_rope=8)
    with torch.enable_grad():
        plain = attn(q, k, v, num_k_exclude_rope=8)
    assert plain.requires_grad  # the autograd path really ran
    assert rel_err(fast, plain.detach()) <= 1e-5


def test_rope_attention_state_dict_and_meta() -> None:
    with torch.device("meta"):
        ours = RoPEAttention(256, 1, kv_in_dim=64, rope_k_repeat=True)
    sd = ours.state_dict()
    assert not any("freqs" in key for key in sd)
    assert set(sd) == set(Attention(256, 1, kv_in_dim=64).state_dict())
    assert set(sd) == set(official_rope_attention(True).state_dict())


def test_rope_attention_rejects_bad_grids() -> None:
    attn = RoPEAttention(32, 1, feat_sizes=(6, 4)).eval()
    with torch.no_grad():
        attn(torch.randn(1, 24, 32), torch.randn(1, 24, 32), torch.randn(1, 24, 32))
        with pytest.raises(ValueError):  # neither 6x4 nor square
            x = torch.randn(1, 20, 32)
            attn(x, x, x)
        with pytest.raises(ValueError):  # more keys than queries without rope_k_repeat
            attn(torch.randn(1, 24, 32), torch.randn(1, 48, 32), torch.randn(1, 48, 32))


def test_rope_cache_from_inference_mode_usable_with_autograd() -> None:
    attn = RoPEAttention(32, 2, feat_sizes=(64, 64))
    x = torch.randn(1, 13 * 13, 32)
    with torch.inference_mode():
        attn(x, x, x)  # first use of the 13x13 tables happens in inference mode
    y = torch.randn(1, 13 * 13, 32, requires_grad=True)
    attn(y, y, y).sum().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()


# --------------------------------------------------------------------------- memory attention


@pytest.mark.parametrize(("batch", "frames", "ptr_tokens"), [(2, 2, 16), (2, 3, 0)])
def test_memory_attention_16x16(batch: int, frames: int, ptr_tokens: int) -> None:
    cfg = MemoryConfig(feat_sizes=(16, 16))
    ref = official_memory_attention((16, 16))
    ours = build_memory_attention(cfg)
    load_pair(ours, ref, seed=6)
    inputs = memory_inputs(16, batch, frames, ptr_tokens, seed=7)
    with torch.no_grad():
        out = ours(**inputs)
        expected = ref(**inputs)
    assert out.shape == (256, batch, 256)  # sequence-first, like the input
    assert rel_err(out, expected) <= REL_TOL


def test_memory_attention_layer_batch_first() -> None:
    ref = official_memory_attention((16, 16), num_layers=1).layers[0]
    ours = MemoryAttentionLayer(feat_sizes=(16, 16))
    load_pair(ours, ref, seed=8)
    gen = torch.Generator().manual_seed(9)
    tgt, query_pos = torch.randn(2, 256, 256, generator=gen), torch.randn(2, 256, 256)
    memory, pos = torch.randn(2, 2 * 256 + 8, 64, generator=gen), torch.randn(2, 520, 64)
    with torch.no_grad():
        out = ours(tgt, memory, pos=pos, query_pos=query_pos, num_k_exclude_rope=8)
        expected = ref(tgt, memory, pos=pos, query_pos=query_pos, num_k_exclude_rope=8)
    assert rel_err(out, expected) <= REL_TOL


def test_memory_attention_full_grid() -> None:
    """The real 64x64 grid (4096 tokens): one memory frame and one object pointer (4
    tokens). One layer keeps the run short; the 16x16 cases cover the 4-layer stack."""
    ref = official_memory_attention((64, 64), num_layers=1)
    ours = MemoryAttention(num_layers=1, feat_sizes=(64, 64))
    load_pair(ours, ref, seed=10)
    inputs = memory_inputs(64, 1, 1, 4, seed=11)
    with torch.no_grad():
        out = ours(**inputs)
        expected = ref(**inputs)
    assert out.shape == (4096, 1, 256)
    assert rel_err(out, expected) <= REL_TOL


def test_memory_attention_list_inputs_and_options() -> None:
    ours = MemoryAttention(num_layers=1, feat_sizes=(4, 4)).eval()
    inputs = memory_inputs(4, 2, 1, 0, seed=12)
    with torch.no_grad():
        out = ours(**inputs)
        out_list = ours(
            [inputs["curr"]], inputs["memory"], [inputs["curr_pos"]], inputs["memory_pos"]
        )
    assert torch.equal(out, out_list)
    with pytest.raises(ValueError):
        ours(inputs["curr"][:, :1], inputs["memory"], inputs["curr_pos"][:, :1])


# --------------------------------------------------------------------------- memory encoder


@pytest.mark.parametrize("skip_mask_sigmoid", [False, True])
def test_memory_encoder(skip_mask_sigmoid: bool) -> None:
    ref = official_memory_encoder()
    ours = build_memory_encoder(MemoryConfig())
    load_pair(ours, ref, seed=13)
    gen = torch.Generator().manual_seed(14)
    pix_feat = torch.randn(2, 256, 16, 16, generator=gen)
    masks = 8 * torch.randn(2, 1, 256, 256, generator=gen)
    if skip_mask_sigmoid:
        masks = (masks > 0).float()
    with torch.no_grad():
        feats, pos = ours(pix_feat, masks, skip_mask_sigmoid=skip_mask_sigmoid)
        expected = ref(pix_feat, masks, skip_mask_sigmoid=skip_mask_sigmoid)
    assert feats.shape == pos.shape == (2, 64, 16, 16)
    assert rel_err(feats, expected["vision_features"]) <= REL_TOL
    assert rel_err(pos, expected["vision_pos_enc"][0]) <= 1e-6


def test_memory_modules_key_sets_and_meta() -> None:
    """Full-size builds have the official keys and shapes and build on the meta device."""
    cfg = MemoryConfig()
    with torch.device("meta"):
        attn, enc = build_memory_attention(cfg), build_memory_encoder(cfg)
    assert isinstance(enc, MemoryEncoder)
    for ours, ref in ((attn, official_memory_attention()), (enc, official_memory_encoder())):
        ours_sd, ref_sd = ours.state_dict(), ref.state_dict()
        assert {k: v.shape for k, v in ours_sd.items()} == {k: v.shape for k, v in ref_sd.items()}
    keys = set(enc.state_dict())
    for key in (
        "mask_downsampler.encoder.0.weight",
        "mask_downsampler.encoder.12.weight",
        "pix_feat_proj.weight",
        "fuser.layers.0.dwconv.weight",
        "fuser.layers.1.gamma",
        "out_proj.weight",
    ):
        assert key in keys
    assert "layers.3.cross_attn_image.k_proj.weight" in attn.state_dict()
    assert attn.state_dict()["layers.0.cross_attn_image.k_proj.weight"].shape == (256, 64)
