"""At inference, encoders bound their temporaries (``layers.common.TRANSIENT_BYTES``).

MLPs run on chunks of tokens, the ViT's windowed attention on bands of window rows, its
global attention's rel-pos bias on blocks of query rows, Hiera's windowed attention on
groups of windows and MobileSAM's first-stage MBConv blocks on bands of image rows (with
a halo row for the 3x3 conv). SAM 2's high-resolution levels skip the neck (folded
projection). Here the budget
is shrunk so that every one of those paths splits into many pieces, and the results are
compared with the official implementations on the same random weights (and with the
unsplit computation).
"""

from __future__ import annotations

import helpers_sam as H
import helpers_sam2 as H2
import pytest
import torch
from torch import nn

import samkit
from samkit.layers import common
from samkit.modeling.encoders.tiny_vit import MBConv

SMALL = 64 * 1024  # bytes: a few rows of every intermediate at a time


@pytest.fixture
def small_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "TRANSIENT_BYTES", SMALL)


def _rel_diff(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = max(1.0, expected.abs().max().item())
    return (actual - expected).abs().max().item() / scale


def test_residual_rowwise_chunks_equal_plain_sum(small_budget: None) -> None:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.LayerNorm(16), nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 16))
    x = torch.randn(2, 37, 23, 16)  # 1702 rows, chunks of 256: a partial last chunk
    assert common.rows_per_chunk(64, 4) == 256
    with torch.inference_mode():
        chunked = common.residual_rowwise(x, mlp, 64)
        plain = x + mlp(x)
    assert chunked.shape == x.shape
    assert torch.allclose(chunked, plain, rtol=0, atol=1e-6)
    # with gradients it is the plain expression, and gradients flow
    y = x.clone().requires_grad_(True)
    common.residual_rowwise(y, mlp, 64).sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("pair", "budget", "seed"),
    [
        (H.reduced_pair, SMALL, 3),  # reduced ViT: windows, rel-pos rows, MLP chunks
        (H.mobile_pair, 4 * 2**20, 4),  # full MobileSAM: MBConv bands; quick, still split
    ],
    ids=["reduced-vit", "mobile-sam"],
)
def test_sam1_encoder_in_pieces_matches_official(
    small_budget: None, pair, budget: int, seed: int
) -> None:
    official, ours, _ = pair()
    common.TRANSIENT_BYTES = budget
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = official.image_encoder(x)
    with torch.inference_mode():
        actual = ours.image_encoder(x)
    diff = _rel_diff(actual, expected)
    print(f"{budget} byte budget: max rel diff {diff:.2e}")
    assert diff <= 1e-4


def test_mbconv_bands_match_whole_block(small_budget: None) -> None:
    torch.manual_seed(0)
    block = MBConv(8, 4.0)
    for p in block.parameters():
        nn.init.normal_(p, std=0.3)
    block.eval()
    x = torch.randn(2, 8, 45, 33)  # hidden rows of 2*33*32 floats: bands of 7 rows
    with torch.inference_mode():
        banded = block(x)
    with torch.no_grad():
        common.TRANSIENT_BYTES = 1 << 40
        whole = block(x)
    assert banded.shape == whole.shape
    assert _rel_diff(banded, whole) <= 1e-5


def test_hiera_encoder_in_pieces_matches_official(small_budget: None) -> None:
    ours, official = H2.model_pair("2.1", 512, 0)
    x = torch.randn(1, 3, 512, 512, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = official.image_encoder(x)["backbone_fpn"]
    with torch.inference_mode():
        actual = ours.image_encoder(x)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        assert a.shape == e.shape
        assert _rel_diff(a, e) <= 1e-4


def test_pieces_are_used_with_the_default_budget() -> None:
    """The full presets split: ViT-B's MLP (4096 x 3072 floats) and MobileSAM's first
    stage (256 hidden channels at 256x256) exceed the default budget."""
    assert common.rows_per_chunk(3072, 4) < 64 * 64
    assert common.rows_per_chunk(256 * 256, 4) < 256
    assert samkit.get_preset("sam-vit-b").config.encoder.embed_dim * 4 == 3072


def test_sam2_high_res_levels_fold_the_neck_into_the_decoder_projection() -> None:
    """At inference the stride-4/8 FPN levels go straight from the trunk through one
    folded 1x1 product (their 256-channel maps are never built); same values as the
    plain neck + conv_s0/conv_s1 path that runs with gradients."""
    ours, _ = H2.model_pair("2.1", 512, 0)
    enc = ours.image_encoder
    n = len(enc.neck.convs) - 1
    called: list[int] = []
    hooks = [
        enc.neck.convs[n - i].conv.register_forward_hook(lambda *a, i=i: called.append(i))
        for i in range(n + 1)
    ]
    x = torch.randn(1, 3, 512, 512, generator=torch.Generator().manual_seed(6))
    try:
        with torch.inference_mode():
            folded = ours.forward_image(x)
        assert 0 not in called and 1 not in called and 2 in called
        with torch.enable_grad():
            plain = [t.detach() for t in ours.forward_image(x)]
    finally:
        for h in hooks:
            h.remove()
    for a, e in zip(folded, plain, strict=True):
        assert a.shape == e.shape
        assert _rel_diff(a, e) <= 1e-5
    with pytest.raises(ValueError, match="top-down"):
        enc.neck([torch.zeros(1)] * 4, skip={2})
