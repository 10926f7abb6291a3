"""Trainer on SAM 2 models: the image path trained with SAM 2's loss (L1 on the IoU head,
BCE on the object score), the embedding cache with high-resolution features, Hiera
layer-wise lr decay, and checkpoints in the official ``{"model": state_dict}`` layout."""

from __future__ import annotations

from pathlib import Path

import helpers_sam2
import numpy as np
import pytest
import torch
from test_trainer import config as trainer_config

import samkit
from samkit.data.types import Sample
from samkit.train.config import TrainConfig
from samkit.train.embedding_cache import encoder_fingerprint, preprocess_image
from samkit.train.params import build_param_groups
from samkit.train.trainer import Trainer

TINY = helpers_sam2.tiny_video_config("2.1")  # 64-pixel input, 4 Hiera blocks


def square() -> Sample:
    """A bright square on a dark 64x64 background, one mask."""
    image = np.full((64, 64, 3), 20, np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[12:36, 10:34] = True
    image[mask] = 230
    return Sample(image=image, masks=mask[None], image_id="square")


def wide() -> Sample:
    """A 48x96 image (SAM 2 squashes it to its square input, no padding), one mask."""
    image = np.full((48, 96, 3), 20, np.uint8)
    mask = np.zeros((48, 96), bool)
    mask[12:36, 48:96] = True  # the right half of the middle rows
    image[mask] = 230
    return Sample(image=image, masks=mask[None], image_id="wide")


def config(tmp_path: Path, **kw) -> TrainConfig:
    """test_trainer's run settings, with a smaller lr and the encoder trained."""
    return trainer_config(tmp_path, **{"lr": 1e-3, "freeze_image_encoder": False, **kw})


def tiny(seed: int = 0) -> samkit.Sam2:
    torch.manual_seed(seed)
    return samkit.build_model(TINY)


def test_sam2_targets_fill_the_square_input() -> None:
    """SAM 2's input frame is the whole square (no padding): the right half of a wide
    image is the right half of the target."""
    trainer = Trainer(config(Path("unused")), tiny(), [wide()])
    size = trainer.model.input_size_for((48, 96))
    assert size == (64, 64)
    target = trainer.targets(wide().masks, size)[0, 0]  # (16, 16) low-res frame
    assert target.shape == (16, 16)
    assert target[4:12, 8:].all() and not target[:, :8].any()
    assert not target[:3].any() and not target[13:].any()


def test_sam2_training_fits_a_mask_and_saves_the_official_layout(tmp_path: Path) -> None:
    trainer = Trainer(config(tmp_path), tiny(), [wide()])
    records = trainer.fit()
    assert trainer.model.sam_mask_decoder.training  # no stability swap while training
    loss = [r["loss"] for r in records]
    assert np.mean(loss[-5:]) < 0.2 * np.mean(loss[:5])
    assert np.mean([r["iou"] for r in records[-5:]]) > 0.9
    assert all(r["score_loss"] > 0 for r in records)
    assert records[-1]["score_loss"] < records[0]["score_loss"]
    saved = torch.load(tmp_path / "run" / "model_final.pt", map_location="cpu", weights_only=True)
    assert list(saved) == ["model"]  # as sam2.1_hiera_*.pt: what build_sam2 reads
    loaded = samkit.load_model(TINY, checkpoint=tmp_path / "run" / "model_final.pt")
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value.cpu()), key


def test_sam2_checkpoint_loads_strictly_into_the_official_model(tmp_path: Path) -> None:
    """The reduced SAM 2.1 config (official decoder widths) that the official builder
    also assembles: one step, then the official ``SAM2Base`` loads the file strictly."""
    cfg = helpers_sam2.reduced_config("2.1", 128)
    torch.manual_seed(0)
    model = samkit.build_model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = Trainer(config(tmp_path, max_steps=1, warmup_steps=1), model, [square()])
    trainer.fit()
    state = torch.load(tmp_path / "run" / "model_final.pt", map_location="cpu", weights_only=True)
    official = helpers_sam2.official_sam2(cfg)
    official.load_state_dict(state["model"], strict=True)
    name = "sam_mask_decoder.conv_s0.weight"
    assert torch.equal(official.state_dict()[name], state["model"][name])
    assert not torch.equal(state["model"][name], before[name])  # it was trained


def test_sam2_gradients_reach_the_image_path_and_all_heads(tmp_path: Path) -> None:
    model = tiny()
    trainer = Trainer(config(tmp_path), model, [square()])
    trainer._set_train_mode()
    out = trainer.image_loss(square(), np.random.default_rng(0))
    assert out is not None
    out["loss"].backward()
    grads = {n: p.grad for n, p in model.named_parameters()}

    def touched(prefix: str) -> bool:
        hits = [g for n, g in grads.items() if n.startswith(prefix)]
        assert hits, prefix
        return any(g is not None and bool(g.abs().sum() > 0) for g in hits)

    for prefix in (
        "image_encoder.trunk.blocks.0.",
        "image_encoder.trunk.patch_embed.",
        "image_encoder.neck.",
        "no_mem_embed",
        "sam_mask_decoder.conv_s0.",
        "sam_mask_decoder.conv_s1.",
        "sam_mask_decoder.iou_prediction_head.",
        "sam_mask_decoder.pred_obj_score_head.",
        "sam_mask_decoder.transformer.",
        "sam_prompt_encoder.point_embeddings.",
    ):
        assert touched(prefix), prefix
    for prefix in ("memory_attention.", "memory_encoder.", "obj_ptr_proj.", "maskmem_tpos_enc"):
        assert not touched(prefix), prefix  # the video modules are not on the image path


def test_sam2_frozen_encoder_and_cache(tmp_path: Path) -> None:
    """With a frozen encoder the cached embedding holds SAM 2's high-resolution maps, so
    everything that makes them (encoder, conv_s0 / conv_s1, no_mem_embed) stays fixed
    while the rest of the decoder trains; a second run reads the cache."""
    model = tiny()
    fixed = model.EMBEDDING_PREFIXES
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = config(tmp_path, freeze_image_encoder=True, max_steps=3)
    trainer = Trainer(cfg, model, [square()])
    trainer.fit()
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items() if k.startswith(fixed))
    changed = "sam_mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight"
    assert not torch.equal(after[changed], before[changed])

    cache = trainer.embedding_cache
    assert cache is not None and cache.misses == 1
    features, high_res = cache.get_embedding("square", square().image)
    with torch.no_grad():
        x, _, _ = preprocess_image(model, square().image)
        want, want_high = model.embed_image(x)
    assert len(high_res) == 2 and features.shape == (1, 256, 4, 4)
    assert [t.shape[-1] for t in high_res] == [16, 8]
    torch.testing.assert_close(features, want)
    for got, ref in zip(high_res, want_high, strict=True):
        torch.testing.assert_close(got, ref)

    second = Trainer(cfg, tiny(), [square()])
    second.image_embedding(square())
    assert second.embedding_cache is not None
    assert (second.embedding_cache.hits, second.embedding_cache.misses) == (1, 0)


def test_sam2_freeze_prefix_hint_names_this_models_keys(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sam_prompt_encoder\\."):
        Trainer(config(tmp_path, freeze=("prompt_encoder.",)), tiny(), [square()])
    trainer = Trainer(config(tmp_path, freeze=("sam_prompt_encoder.",)), tiny(), [square()])
    assert not any(p.requires_grad for p in trainer.model.sam_prompt_encoder.parameters())


def test_sam2_fingerprint_covers_the_high_res_projections() -> None:
    model = tiny()
    first = encoder_fingerprint(model)
    with torch.no_grad():
        model.memory_attention.layers[0].linear1.weight.add_(1.0)  # not on the image path
    assert encoder_fingerprint(model) == first
    with torch.no_grad():
        model.sam_mask_decoder.conv_s0.weight.add_(1.0)
    assert encoder_fingerprint(model) != first


def test_sam2_layer_decay_follows_the_hiera_blocks(tmp_path: Path) -> None:
    model = tiny()
    depth = len(model.image_encoder.trunk.blocks)
    cfg = config(tmp_path, layer_decay=0.5)
    scale = {
        name: group["lr_scale"]
        for group in build_param_groups(model, cfg)
        for name in group["names"]
    }
    assert scale["image_encoder.trunk.patch_embed.proj.weight"] == 0.5 ** (depth + 1)
    # the official SAM 2 configs keep Hiera's position embeddings at the full lr
    assert scale["image_encoder.trunk.pos_embed"] == 1.0
    assert scale["image_encoder.trunk.pos_embed_window"] == 1.0
    assert scale["image_encoder.trunk.blocks.0.attn.qkv.weight"] == 0.5**depth
    assert scale[f"image_encoder.trunk.blocks.{depth - 1}.attn.qkv.weight"] == 0.5
    assert scale["image_encoder.neck.convs.0.conv.weight"] == 1.0
    assert scale["sam_mask_decoder.conv_s0.weight"] == 1.0


@pytest.mark.parametrize("freeze", [False, True])
def test_sam2_bf16_autocast_step(tmp_path: Path, freeze: bool) -> None:
    trainer = Trainer(
        config(tmp_path, bf16=True, max_steps=1, freeze_image_encoder=freeze), tiny(), [square()]
    )
    metrics = trainer.train_step()
    assert np.isfinite(metrics["loss"]) and metrics["score_loss"] > 0
