"""Parity of ``samkit`` TinyViT (MobileSAM image encoder) with the official ``mobile_sam``.

The official package is imported through ``reference_shims``; if it cannot be imported the
tests fail (they never skip).
"""

from __future__ import annotations

import math

import pytest
import reference_shims
import torch
from torch import nn

from samkit.modeling.encoders.tiny_vit import TinyViT


def _official_encoder() -> nn.Module:
    mobile_sam = reference_shims.import_mobile_sam()
    return mobile_sam.sam_model_registry["vit_t"]().image_encoder


def _randomise_(module: nn.Module, gen: torch.Generator) -> None:
    """Overwrite every parameter and persistent buffer with random, O(1)-preserving values."""
    with torch.no_grad():
        for name, t in module.state_dict().items():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "num_batches_tracked":
                t.copy_(torch.randint(0, 1000, (), generator=gen))
            elif leaf == "running_var":
                t.copy_(0.5 + torch.rand(t.shape, generator=gen))
            elif leaf == "running_mean":
                t.copy_(0.2 * torch.randn(t.shape, generator=gen))
            elif leaf == "attention_biases":
                t.copy_(torch.randn(t.shape, generator=gen))
            elif t.ndim == 1 and leaf == "weight":  # BatchNorm / LayerNorm scale
                t.copy_(1.0 + 0.2 * torch.randn(t.shape, generator=gen))
            elif t.ndim == 1 and leaf == "bias":
                t.copy_(0.1 * torch.randn(t.shape, generator=gen))
            elif t.ndim >= 2 and leaf == "weight":  # Linear / Conv2d, fan-in scaled
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=gen) / math.sqrt(fan_in))
            else:
                raise AssertionError(f"unhandled state dict entry {name}")


@pytest.fixture(scope="module")
def models() -> tuple[nn.Module, TinyViT]:
    gen = torch.Generator().manual_seed(0)
    official = _official_encoder()
    _randomise_(official, gen)
    official.eval()  # rebuilds the official cached bias from the randomised weights
    ours = TinyViT().eval()  # eval before loading: no stale cached bias may survive
    ours.load_state_dict(official.state_dict(), strict=True)
    return official, ours


def test_state_dict_keys_and_shapes_match_official() -> None:
    official = _official_encoder().state_dict()
    ours = TinyViT().state_dict()
    assert list(ours) == list(official)
    for key, value in official.items():
        assert ours[key].shape == value.shape, key
        assert ours[key].dtype == value.dtype, key
    assert any(k.startswith("head.") for k in ours)
    assert any(k.startswith("norm_head.") for k in ours)
    assert not any(k.endswith("attention_bias_idxs") for k in ours)


def test_attention_bias_index_matches_official() -> None:
    official = dict(_official_encoder().named_buffers())
    ours = dict(TinyViT().named_buffers())
    idx_keys = [k for k in official if k.endswith("attention_bias_idxs")]
    assert idx_keys and idx_keys == [k for k in ours if k.endswith("attention_bias_idxs")]
    for key in idx_keys:
        assert torch.equal(ours[key], official[key]), key


def _check_parity(models: tuple[nn.Module, TinyViT], batch: int, seed: int) -> None:
    official, ours = models
    x = torch.randn(batch, 3, 1024, 1024, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = official(x)
        actual = ours(x)
    assert actual.shape == expected.shape == (batch, 256, 64, 64)
    scale = max(1.0, expected.abs().max().item())
    diff = (actual - expected).abs().max().item()
    print(f"tiny_vit parity batch={batch}: max abs diff {diff:.3e}, output scale {scale:.3f}")
    assert diff <= 1e-4 * scale


def test_parity_batch1(models: tuple[nn.Module, TinyViT]) -> None:
    _check_parity(models, batch=1, seed=1)


def test_parity_batch2(models: tuple[nn.Module, TinyViT]) -> None:
    _check_parity(models, batch=2, seed=2)


def test_train_mode_uses_batch_stats_and_backprops() -> None:
    model = TinyViT().train()
    x = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(3))
    out = model(x)
    assert out.shape == (2, 256, 16, 16)
    out.square().mean().backward()
    bn = model.patch_embed.seq[0].bn
    assert int(bn.num_batches_tracked) == 1
    assert not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    bias_grad = model.layers[1].blocks[0].attn.attention_biases.grad
    assert bias_grad is not None and bias_grad.abs().sum() > 0
