"""Checkpoint goldens, loading, load errors and the weights cache / download.

- Key sets and shapes of every SAM 1-family preset equal the official architecture's
  (built on the meta device on both sides where possible, so nothing is allocated).
- The same for the eight SAM 2 / 2.1 presets against the official yaml files as shipped,
  and their parameter counts against the official README's model table.
- ``samkit.load_model`` loads official-format state dicts (plain, ``{"model": ...}``,
  ``.safetensors``) bit for bit, and every bad file raises ``samkit.CheckpointError``.
- Downloads: offline, sha256/size mismatches and stream failures raise
  ``samkit.DownloadError`` and leave nothing behind; a good download is atomic.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import urllib.error
import urllib.request
from pathlib import Path

import helpers_sam as H
import helpers_sam2 as H2
import numpy as np
import pytest
import reference_shims
import torch
from PIL import Image
from safetensors.torch import save_file

import samkit
import samkit.build
import samkit.weights
from samkit import CheckpointError, DownloadError, UnknownModel, WeightSpec
from samkit.configs import ModelPreset, TinyViTConfig, ViTConfig


def _sam1_presets() -> list[str]:
    return [n for n in samkit.list_models() if samkit.get_preset(n).config.family == "sam"]


def _sam2_presets() -> list[str]:
    """The published SAM 2 / 2.1 presets (not samkit's own demo video model)."""
    return [
        n
        for n in samkit.list_models()
        if samkit.get_preset(n).config.family == "sam2" and n.startswith("sam2")
    ]


def _shapes(module: torch.nn.Module) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    return {k: (tuple(v.shape), v.dtype) for k, v in module.state_dict().items()}


# ---------------------------------------------------------------------- goldens
def test_sam1_presets_are_registered() -> None:
    assert set(H.OFFICIAL_SAM1_KEYS) <= set(_sam1_presets())


@pytest.mark.parametrize("name", _sam1_presets())
def test_state_dict_matches_official_architecture(name: str) -> None:
    key = H.OFFICIAL_SAM1_KEYS.get(name)
    if key is None:
        # samkit's own presets (samkit-demo): the official classes with the same numbers
        cfg = samkit.get_preset(name).config
        if isinstance(cfg.encoder, ViTConfig):
            with torch.device("meta"):
                official = H.official_sam_from_config(cfg)
        else:  # TinyViT (MobileSAM classes) calls .item() in __init__: no meta device
            assert isinstance(cfg.encoder, TinyViTConfig), f"no official class for {name!r}"
            official = H.official_sam_from_config(cfg)
    elif key == "vit_t":
        # the official TinyViT calls .item() in __init__, so it cannot be built on meta
        official = H.official_registry_model(key)
    else:
        with torch.device("meta"):
            official = H.official_registry_model(key)
    with torch.device("meta"):
        ours = samkit.build_model(name, device="meta")
    expected, actual = _shapes(official), _shapes(ours)
    missing = sorted(set(expected) - set(actual))
    unexpected = sorted(set(actual) - set(expected))
    assert not missing and not unexpected, f"missing {missing[:5]}, unexpected {unexpected[:5]}"
    wrong = {k: (actual[k], expected[k]) for k in expected if actual[k] != expected[k]}
    assert not wrong, f"shape/dtype mismatches: {list(wrong.items())[:5]}"


@pytest.mark.parametrize("alias", sorted(H.OFFICIAL_SAM1_KEYS.values()))
def test_official_registry_keys_are_aliases(alias: str) -> None:
    preset = samkit.get_preset(alias)
    assert H.OFFICIAL_SAM1_KEYS[preset.name] == alias


def test_default_alias_is_vit_h_like_official() -> None:
    sa = reference_shims.import_segment_anything()
    assert sa.sam_model_registry["default"] is sa.sam_model_registry["vit_h"]
    assert samkit.get_preset("default").name == "sam-vit-h"


# ------------------------------------------------------------------ SAM 2 goldens
SAM2_SIZES = ("tiny", "small", "base-plus", "large")

#: "Size (M)" of the model tables in the official README (sam2 1.1.0 package METADATA).
#: The 2.1 table repeats the 2.0 numbers although 2.1 adds 16,512 parameters.
SAM2_PUBLISHED_MILLIONS = {"tiny": 38.9, "small": 46.0, "base-plus": 80.8, "large": 224.4}

#: Parameters that 2.1 adds to every size: ``no_obj_embed_spatial`` (1, 64) and
#: ``obj_ptr_tpos_proj`` (Linear 256 -> 64).
SAM2_1_EXTRA_PARAMS = 64 + 256 * 64 + 64


def _sam2_size_version(name: str) -> tuple[str, str]:
    cfg = samkit.get_preset(name).config
    return name.split("-hiera-", 1)[1], cfg.version


def _n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_sam2_presets_are_registered() -> None:
    expected = {f"{p}-hiera-{s}" for p in ("sam2", "sam2.1") for s in SAM2_SIZES}
    assert set(_sam2_presets()) == expected
    for name in expected:
        size, version = _sam2_size_version(name)
        assert version == ("2.1" if name.startswith("sam2.1-") else "2.0"), name
        assert size in H2.OFFICIAL_SIZES, name


@pytest.mark.parametrize("name", _sam2_presets())
def test_sam2_state_dict_matches_official_yaml(name: str) -> None:
    """Every key, shape and dtype of the official model built from its yaml as shipped."""
    size, version = _sam2_size_version(name)
    official = H2.official_sam2_preset(size, version, device="meta")
    with torch.device("meta"):
        ours = samkit.build_model(name, device="meta")
    expected, actual = _shapes(official), _shapes(ours)
    missing = sorted(set(expected) - set(actual))
    unexpected = sorted(set(actual) - set(expected))
    assert not missing and not unexpected, f"missing {missing[:5]}, unexpected {unexpected[:5]}"
    wrong = {k: (actual[k], expected[k]) for k in expected if actual[k] != expected[k]}
    assert not wrong, f"shape/dtype mismatches: {list(wrong.items())[:5]}"
    assert _n_params(ours) == _n_params(official)


def _hiera_blocks(trunk: torch.nn.Module) -> list[tuple]:
    """Per block: width in/out, heads, window (0 = global) and q-pooling stride."""
    return [
        (b.dim, b.dim_out, b.attn.num_heads, b.window_size, b.q_stride and tuple(b.q_stride))
        for b in trunk.blocks
    ]


@pytest.mark.parametrize("name", _sam2_presets())
def test_sam2_config_matches_official_yaml(name: str) -> None:
    """What shapes cannot show: windows, global blocks, pooling, neck and model flags."""
    size, version = _sam2_size_version(name)
    cfg = samkit.get_preset(name).config
    official = H2.official_sam2_preset(size, version, device="meta")
    with torch.device("meta"):
        ours = samkit.build_model(name, device="meta")
    trunk, enc = official.image_encoder.trunk, cfg.encoder
    assert _hiera_blocks(ours.image_encoder.trunk) == _hiera_blocks(trunk)
    stage_ends = [sum(enc.stages[: i + 1]) - 1 for i in range(len(enc.stages))]
    assert list(trunk.stage_ends) == stage_ends
    assert tuple(trunk.window_spec) == enc.window_spec
    assert tuple(trunk.global_att_blocks) == enc.global_att_blocks
    assert tuple(trunk.window_pos_embed_bkg_spatial_size) == enc.window_pos_embed_bkg_spatial_size
    assert (len(trunk.q_pool_blocks), tuple(trunk.q_stride)) == (enc.q_pool, enc.q_stride)
    neck = official.image_encoder.neck
    assert tuple(neck.backbone_channel_list) == enc.channel_list
    assert tuple(neck.fpn_top_down_levels) == cfg.neck.top_down_levels
    assert (neck.d_model, neck.fpn_interp_model) == (cfg.neck.d_model, cfg.neck.interp_mode)
    assert official.image_encoder.scalp == cfg.neck.scalp
    layer = official.memory_attention.layers[0]
    mem = cfg.memory
    assert official.memory_attention.num_layers == mem.num_layers
    assert (layer.dim_feedforward, layer.dropout_value) == (mem.dim_feedforward, mem.dropout)
    assert layer.self_attn.freqs_cis.shape[0] == mem.feat_sizes[0] * mem.feat_sizes[1]
    for flag in (
        "image_size",
        "backbone_stride",
        "num_maskmem",
        "max_obj_ptrs_in_encoder",
        "sigmoid_scale_for_mem_enc",
        "sigmoid_bias_for_mem_enc",
        "add_tpos_enc_to_obj_ptrs",
        "proj_tpos_enc_in_obj_ptrs",
        "use_signed_tpos_enc_to_obj_ptrs",
    ):
        assert getattr(official, flag) == getattr(cfg, flag), flag
    assert (official.no_obj_embed_spatial is not None) == cfg.no_obj_embed_spatial


@pytest.mark.parametrize("size", SAM2_SIZES)
def test_sam2_parameter_counts_match_published(size: str) -> None:
    with torch.device("meta"):
        v20 = _n_params(samkit.build_model(f"sam2-hiera-{size}", device="meta"))
        v21 = _n_params(samkit.build_model(f"sam2.1-hiera-{size}", device="meta"))
    published = SAM2_PUBLISHED_MILLIONS[size]
    assert round(v20 / 1e6, 1) == published, (size, v20)
    assert v21 == v20 + SAM2_1_EXTRA_PARAMS, (size, v20, v21)
    assert abs(v21 / 1e6 - published) < 0.1, (size, v21)


# ------------------------------------------------------------------------- loading
@pytest.fixture(scope="module")
def reduced_sd() -> dict[str, torch.Tensor]:
    template = H.official_sam(**H.REDUCED_VIT).state_dict()
    return H.random_state_dict(template, seed=31)


@pytest.fixture(scope="module")
def mobile_sd() -> dict[str, torch.Tensor]:
    template = H.official_registry_model("vit_t").state_dict()
    return H.random_state_dict(template, seed=32)


@pytest.fixture(scope="module")
def files(tmp_path_factory, reduced_sd, mobile_sd) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ckpt")
    out = {
        "pth": d / "reduced.pth",
        "pt": d / "reduced.pt",
        "wrapped": d / "wrapped.pth",
        "safetensors": d / "model.safetensors",
        "mobile": d / "mobile_sam.pt",
    }
    torch.save(reduced_sd, out["pth"])
    torch.save(reduced_sd, out["pt"])
    torch.save({"model": reduced_sd, "epoch": 3}, out["wrapped"])
    save_file(reduced_sd, str(out["safetensors"]))
    torch.save(mobile_sd, out["mobile"])
    return out


@pytest.mark.parametrize("fmt", ["pth", "pt", "wrapped", "safetensors"])
def test_load_model_round_trip(files, reduced_sd, fmt: str) -> None:
    model = samkit.load_model(H.REDUCED_CFG, checkpoint=files[fmt])
    assert not model.training
    assert model.device == torch.device("cpu")
    loaded = model.state_dict()
    assert set(loaded) == set(reduced_sd)
    for k, v in reduced_sd.items():
        assert loaded[k].dtype == v.dtype, k
        assert torch.equal(loaded[k], v), k
    # buffers that checkpoints do not store are rebuilt, as the official model has them
    official = H.official_sam(**H.REDUCED_VIT)
    assert torch.equal(model.pixel_mean, official.pixel_mean)
    assert torch.equal(model.pixel_std, official.pixel_std)


def test_load_model_accepts_str_path(files, reduced_sd) -> None:
    model = samkit.load_model(H.REDUCED_CFG, checkpoint=str(files["pth"]))
    key = "image_encoder.blocks.3.attn.rel_pos_h"
    assert torch.equal(model.state_dict()[key], reduced_sd[key])


def test_loaded_model_predicts_like_official(files, reduced_sd) -> None:
    """A model from ``load_model`` (meta build + load) decodes like the official one."""
    official = H.official_sam(**H.REDUCED_VIT)
    official.load_state_dict(reduced_sd, strict=True)
    model = samkit.load_model(H.REDUCED_CFG, checkpoint=files["pth"])
    gen = torch.Generator().manual_seed(33)
    features = torch.randn(1, 256, 64, 64, generator=gen)
    coords = torch.tensor([[[100.0, 200.0], [700.0, 300.0]]])
    labels = torch.tensor([[1, 0]])
    with torch.no_grad():
        sparse, dense = official.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        expected, iou_ref = official.mask_decoder(
            image_embeddings=features,
            image_pe=official.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )
    with torch.inference_mode():
        actual, iou = model.decode(features, points=(coords, labels), multimask_output=True)
    H.assert_close(actual, expected, "load_model decode logits")
    H.assert_close(iou, iou_ref, "load_model decode iou")


def test_load_mobile_sam_checkpoint_matches_official(files, mobile_sd) -> None:
    """Meta build + load must rebuild TinyViT's non-persistent attention-bias index."""
    official = H.official_registry_model("vit_t")
    official.load_state_dict(mobile_sd, strict=True)
    official.eval()  # rebuilds the official cached attention bias from the loaded weights
    model = samkit.load_model("mobile-sam", checkpoint=files["mobile"])
    assert model.name == "mobile-sam"
    ours_buffers = dict(model.named_buffers())
    official_buffers = dict(official.named_buffers())
    idx = [k for k in official_buffers if k.endswith("attention_bias_idxs")]
    assert idx
    for k in idx:
        assert torch.equal(ours_buffers[k], official_buffers[k]), k
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(34))
    with torch.no_grad():
        expected = official.image_encoder(x)
    with torch.inference_mode():
        actual = model.image_encoder(x)
    H.assert_close(actual, expected, "load_model mobile-sam encoder")


def test_reloading_weights_refreshes_derived_state(reduced_sd) -> None:
    """Loading new weights into a model that already ran must not reuse stale caches."""
    model = samkit.build_model(H.REDUCED_CFG)
    with torch.inference_mode():
        model.prompt_encoder.get_dense_pe()  # whatever the model derives from its weights
    official = H.official_sam(**H.REDUCED_VIT)
    official.load_state_dict(reduced_sd, strict=True)
    model.load_state_dict(reduced_sd, strict=True)
    with torch.inference_mode():
        actual = model.prompt_encoder.get_dense_pe()
    with torch.no_grad():
        expected = official.prompt_encoder.get_dense_pe()
    H.assert_close(actual, expected, "dense PE after reload")
    # and once more with load_state_dict(assign=True), which swaps the tensors
    sd2 = H.random_state_dict(reduced_sd, seed=35)
    official.load_state_dict(sd2, strict=True)
    model.load_state_dict({k: v.clone() for k, v in sd2.items()}, strict=True, assign=True)
    with torch.inference_mode():
        actual = model.prompt_encoder.get_dense_pe()
    with torch.no_grad():
        expected = official.prompt_encoder.get_dense_pe()
    H.assert_close(actual, expected, "dense PE after assign reload")


# -------------------------------------------------------------------- load errors
def _load_error(name, checkpoint) -> str:
    with pytest.raises(CheckpointError) as info:
        samkit.load_model(name, checkpoint=checkpoint)
    assert type(info.value) is CheckpointError
    return str(info.value)


def test_checkpoint_of_another_model(files, mobile_sd) -> None:
    msg = _load_error("sam-vit-b", files["mobile"])
    with torch.device("meta"):
        vit_b = set(H.official_registry_model("vit_b").state_dict())
    missing = sorted(vit_b - set(mobile_sd))
    unexpected = sorted(set(mobile_sd) - vit_b)
    assert str(files["mobile"]) in msg
    assert f"{len(missing)} missing keys" in msg, msg
    assert f"{len(unexpected)} unexpected keys" in msg, msg
    assert missing[0] in msg and unexpected[0] in msg, msg


def test_checkpoint_with_wrong_shapes(files, reduced_sd) -> None:
    # the reduced ViT into the full ViT-B: missing blocks and shape mismatches
    msg = _load_error("sam-vit-b", files["pth"])
    with torch.device("meta"):
        vit_b = {
            k: tuple(v.shape) for k, v in H.official_registry_model("vit_b").state_dict().items()
        }
    missing = sorted(set(vit_b) - set(reduced_sd))
    mismatched = sorted(
        k for k in vit_b if k in reduced_sd and tuple(reduced_sd[k].shape) != vit_b[k]
    )
    assert f"{len(missing)} missing keys" in msg and missing[0] in msg, msg
    assert f"{len(mismatched)} shape mismatches" in msg, msg
    first = mismatched[0]
    assert f"{first} {tuple(reduced_sd[first].shape)} vs {vit_b[first]}" in msg, msg
    assert "unexpected" not in msg, msg


def test_truncated_checkpoint(tmp_path, files) -> None:
    for fmt in ("pth", "safetensors"):
        data = files[fmt].read_bytes()
        path = tmp_path / f"truncated.{fmt}"
        path.write_bytes(data[: len(data) // 2])
        msg = _load_error(H.REDUCED_CFG, path)
        assert str(path) in msg and "truncated" in msg, msg


def test_empty_file(tmp_path) -> None:
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    assert str(path) in _load_error(H.REDUCED_CFG, path)


def test_text_file_is_not_a_checkpoint(tmp_path) -> None:
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights\n")
    msg = _load_error(H.REDUCED_CFG, path)
    assert str(path) in msg and "cannot read checkpoint" in msg, msg


@pytest.mark.parametrize("suffix", [".png", ".pth", ".safetensors"])
def test_png_is_not_a_checkpoint(tmp_path, suffix: str) -> None:
    path = tmp_path / f"picture{suffix}"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path, format="PNG")
    msg = _load_error(H.REDUCED_CFG, path)
    assert str(path) in msg, msg


_UNPICKLED: list[str] = []


def _record_unpickle(tag: str) -> str:
    _UNPICKLED.append(tag)
    return tag


class _Payload:
    """Unpickling it would call ``_record_unpickle``: weights_only loading must refuse."""

    def __reduce__(self):
        return (_record_unpickle, ("executed",))


def test_pickled_object_is_refused_without_running_it(tmp_path, reduced_sd) -> None:
    path = tmp_path / "evil.pth"
    torch.save({**reduced_sd, "extra": _Payload()}, path)
    msg = _load_error(H.REDUCED_CFG, path)
    assert str(path) in msg, msg
    assert _UNPICKLED == [], "the checkpoint's pickled code was executed"


class _Custom:
    def __init__(self) -> None:
        self.value = 1


def test_pickled_custom_class_is_refused(tmp_path) -> None:
    path = tmp_path / "custom.pth"
    torch.save({"weights": torch.zeros(2), "config": _Custom()}, path)
    assert str(path) in _load_error(H.REDUCED_CFG, path)


@pytest.mark.parametrize(
    "obj",
    [{"a": 1}, [torch.zeros(1)], torch.zeros(3), {"model": {"w": "x"}}, {1: torch.zeros(1)}],
    ids=["dict-of-int", "list", "tensor", "wrapped-non-tensor", "int-key"],
)
def test_non_state_dict_objects(tmp_path, obj) -> None:
    path = tmp_path / "odd.pth"
    torch.save(obj, path)
    msg = _load_error(H.REDUCED_CFG, path)
    assert str(path) in msg and "state dict" in msg, msg


def test_missing_checkpoint_path(tmp_path) -> None:
    path = tmp_path / "nowhere" / "sam_vit_b.pth"
    msg = _load_error("sam-vit-b", path)
    assert str(path) in msg and "not found" in msg, msg


def test_directory_is_not_a_checkpoint(tmp_path) -> None:
    assert str(tmp_path) in _load_error(H.REDUCED_CFG, tmp_path)


def test_custom_config_needs_a_checkpoint() -> None:
    with pytest.raises(CheckpointError, match="checkpoint"):
        samkit.load_model(H.REDUCED_CFG)


@pytest.mark.parametrize(
    "call",
    [
        lambda: samkit.load_model("sam-vit-x"),
        lambda: samkit.build_model("sam-vit-x"),
        lambda: samkit.get_preset("sam-vit-x"),
    ],
    ids=["load_model", "build_model", "get_preset"],
)
def test_unknown_model(call) -> None:
    with pytest.raises(UnknownModel) as info:
        call()
    msg = str(info.value)
    assert "sam-vit-x" in msg
    for name in samkit.list_models():
        assert name in msg, f"{name} not listed in {msg!r}"
    assert isinstance(info.value, KeyError)  # documented: UnknownModel is a KeyError
    assert not msg.startswith(("'", '"')), "message must not be quoted like a bare KeyError"


# ------------------------------------------------------------ SAM 2 loading/errors
@pytest.fixture(scope="module")
def sam2_tiny_sd() -> dict[str, torch.Tensor]:
    """Random weights with the keys and shapes of the official SAM 2.1 Hiera-T."""
    official = H2.official_sam2_preset("tiny", "2.1", device="meta")
    return H2.random_state_dict(official, seed=36)


def test_load_sam2_official_format_checkpoint(tmp_path, sam2_tiny_sd) -> None:
    """``{"model": state_dict}`` (the official SAM 2 file layout) loads strictly, bit for bit."""
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": sam2_tiny_sd}, path)
    model = samkit.load_model("sam2.1-hiera-tiny", checkpoint=path)
    assert model.name == "sam2.1-hiera-tiny"
    assert model.family == "sam2"
    assert not model.training
    loaded = model.state_dict()
    assert set(loaded) == set(sam2_tiny_sd)
    for k, v in sam2_tiny_sd.items():
        assert loaded[k].dtype == v.dtype, k
        assert torch.equal(loaded[k], v), k


def test_sam2_checkpoint_missing_a_key(tmp_path, sam2_tiny_sd) -> None:
    key = "sam_mask_decoder.obj_score_token.weight"
    path = tmp_path / "missing.pt"
    torch.save({"model": {k: v for k, v in sam2_tiny_sd.items() if k != key}}, path)
    msg = _load_error("sam2.1-hiera-tiny", path)
    assert str(path) in msg, msg
    assert f"1 missing keys: {key}" in msg, msg
    assert "unexpected" not in msg and "shape" not in msg, msg


def test_sam2_checkpoint_with_a_wrong_shape(tmp_path, sam2_tiny_sd) -> None:
    key = "image_encoder.trunk.pos_embed"
    good = tuple(sam2_tiny_sd[key].shape)
    bad = (good[0], good[1], good[2] + 1, good[3])
    path = tmp_path / "wrong_shape.pt"
    torch.save({"model": {**sam2_tiny_sd, key: torch.zeros(bad)}}, path)
    msg = _load_error("sam2.1-hiera-tiny", path)
    assert str(path) in msg, msg
    assert f"1 shape mismatches: {key} {bad} vs {good}" in msg, msg
    assert "missing" not in msg and "unexpected" not in msg, msg


def test_sam2_0_checkpoint_into_sam2_1_model(tmp_path, sam2_tiny_sd) -> None:
    """A 2.0 file (no 2.1-only keys) for a 2.1 preset names exactly the three 2.1 keys."""
    only_21 = ["no_obj_embed_spatial", "obj_ptr_tpos_proj.bias", "obj_ptr_tpos_proj.weight"]
    official_20 = set(H2.official_sam2_preset("tiny", "2.0", device="meta").state_dict())
    assert sorted(set(sam2_tiny_sd) - official_20) == only_21
    path = tmp_path / "sam2_hiera_tiny.pt"
    torch.save({"model": {k: v for k, v in sam2_tiny_sd.items() if k in official_20}}, path)
    msg = _load_error("sam2.1-hiera-tiny", path)
    assert f"3 missing keys: {', '.join(only_21)}" in msg, msg
    assert "unexpected" not in msg and "shape" not in msg, msg


# ----------------------------------------------------------------- cache/download
class _FakeResponse(io.BytesIO):
    """What ``urllib.request.urlopen`` returns, serving ``data`` from memory."""

    def __init__(self, data: bytes, on_read=None, fail_after: int | None = None, exc=None):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}
        self.on_read, self.fail_after, self.exc = on_read, fail_after, exc
        self.reads = 0

    def read(self, size: int = -1) -> bytes:
        if self.on_read is not None:
            self.on_read()
        if self.fail_after is not None and self.reads >= self.fail_after:
            raise self.exc
        self.reads += 1
        return super().read(size)


class _Server:
    def __init__(self, monkeypatch, data: bytes | None, **kw) -> None:
        self.data, self.kw, self.urls = data, kw, []
        self.responses: list[_FakeResponse] = []
        monkeypatch.setattr(urllib.request, "urlopen", self)

    def __call__(self, url, *args, **kwargs):
        self.urls.append(url if isinstance(url, str) else url.full_url)
        if self.data is None:
            raise urllib.error.URLError("offline")
        response = _FakeResponse(self.data, **self.kw)
        self.responses.append(response)
        return response


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("SAMKIT_CACHE", str(d))
    return d


def _payload(n: int = 2_500_000) -> bytes:
    return np.random.default_rng(41).integers(0, 256, n, dtype=np.uint8).tobytes()


def _listing(d: Path) -> list[str]:
    return sorted(os.listdir(d)) if d.exists() else []


def test_offline_load_model_raises_download_error(cache, monkeypatch) -> None:
    server = _Server(monkeypatch, None)
    spec = samkit.get_preset("sam-vit-b").weights
    with pytest.raises(DownloadError) as info:
        samkit.load_model("sam-vit-b", progress=False)
    msg = str(info.value)
    assert spec.url in msg, msg
    assert str(cache / spec.filename) in msg, msg
    assert server.urls == [spec.url]
    assert _listing(cache) == []


def test_unusable_cache_dir_raises_a_samkit_error(tmp_path, monkeypatch) -> None:
    """SAMKIT_CACHE pointing at a file: a typed samkit error naming the path, no OSError."""
    _Server(monkeypatch, _payload(10))
    not_a_dir = tmp_path / "cache-is-a-file"
    not_a_dir.write_text("x")
    monkeypatch.setenv("SAMKIT_CACHE", str(not_a_dir))
    with pytest.raises((DownloadError, samkit.OutputError)) as info:
        samkit.load_model("sam-vit-b", progress=False)
    assert str(not_a_dir) in str(info.value)


def test_cache_dir_follows_env(cache) -> None:
    spec = samkit.get_preset("sam-vit-b").weights
    assert samkit.weights.cache_dir() == cache
    assert samkit.weights.cached_path(spec) == cache / spec.filename


def test_http_error_raises_download_error(tmp_path, monkeypatch) -> None:
    def fail(url, *a, **k):
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)

    monkeypatch.setattr(urllib.request, "urlopen", fail)
    spec = WeightSpec(url="https://example.invalid/w.pth", filename="w.pth")
    with pytest.raises(DownloadError, match="example.invalid"):
        samkit.weights.download(spec, tmp_path / "d" / "w.pth", progress=False)
    assert _listing(tmp_path / "d") == []


def test_malformed_http_response_raises_download_error(tmp_path, monkeypatch) -> None:
    """http.client errors (not OSError/URLError) from urlopen are download failures too."""

    def fail(url, *a, **k):
        raise http.client.BadStatusLine("garbage status line")

    monkeypatch.setattr(urllib.request, "urlopen", fail)
    spec = WeightSpec(url="https://example.invalid/w.pth", filename="w.pth")
    with pytest.raises(DownloadError, match="example.invalid"):
        samkit.weights.download(spec, tmp_path / "d" / "w.pth", progress=False)
    assert _listing(tmp_path / "d") == []


def test_sha256_mismatch_leaves_nothing(tmp_path, monkeypatch) -> None:
    data = _payload()
    _Server(monkeypatch, data)
    dest = tmp_path / "dl" / "w.pth"
    spec = WeightSpec(
        url="https://example.invalid/w.pth", filename="w.pth", sha256="0" * 64, size=len(data)
    )
    with pytest.raises(DownloadError) as info:
        samkit.weights.download(spec, dest, progress=False)
    msg = str(info.value)
    assert "sha256" in msg and spec.url in msg and str(dest) in msg, msg
    assert hashlib.sha256(data).hexdigest() in msg, msg
    assert _listing(dest.parent) == []


def test_size_mismatch_leaves_nothing(tmp_path, monkeypatch) -> None:
    data = _payload()
    _Server(monkeypatch, data)
    dest = tmp_path / "dl" / "w.pth"
    spec = WeightSpec(
        url="https://example.invalid/w.pth",
        filename="w.pth",
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data) + 1,
    )
    with pytest.raises(DownloadError, match="incomplete"):
        samkit.weights.download(spec, dest, progress=False)
    assert _listing(dest.parent) == []


@pytest.mark.parametrize(
    "exc",
    [ConnectionResetError("reset by peer"), http.client.IncompleteRead(b"partial", 100)],
    ids=["connection-reset", "incomplete-read"],
)
def test_stream_failure_raises_download_error(tmp_path, monkeypatch, exc) -> None:
    """A connection that dies mid-transfer is a DownloadError, and leaves no file."""
    data = _payload()
    _Server(monkeypatch, data, fail_after=1, exc=exc)
    dest = tmp_path / "dl" / "w.pth"
    spec = WeightSpec(url="https://example.invalid/w.pth", filename="w.pth")
    with pytest.raises(DownloadError) as info:
        samkit.weights.download(spec, dest, progress=False)
    assert spec.url in str(info.value)
    assert _listing(dest.parent) == []


@pytest.mark.parametrize("progress", [False, True])
def test_good_download_is_verified_and_atomic(tmp_path, monkeypatch, progress: bool) -> None:
    data = _payload()
    dest = tmp_path / "dl" / "weights.pth"
    seen: list[bool] = []
    server = _Server(monkeypatch, data, on_read=lambda: seen.append(dest.exists()))
    spec = WeightSpec(
        url="https://example.invalid/weights.pth",
        filename="weights.pth",
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )
    out = samkit.weights.download(spec, dest, progress=progress)
    assert Path(out) == dest
    assert dest.read_bytes() == data
    assert server.responses[0].reads >= 3  # streamed in chunks (2.5 MB payload)
    assert seen and not any(seen), "the destination appeared before the download finished"
    assert _listing(dest.parent) == ["weights.pth"]


def test_download_defaults_to_cache(cache, monkeypatch) -> None:
    data = _payload(1000)
    _Server(monkeypatch, data)
    spec = WeightSpec(
        url="https://example.invalid/x.pth",
        filename="x.pth",
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )
    out = samkit.weights.download(spec, progress=False)
    assert Path(out) == cache / "x.pth"
    assert (cache / "x.pth").read_bytes() == data


def test_load_model_downloads_once_then_uses_cache(cache, monkeypatch, reduced_sd) -> None:
    buf = io.BytesIO()
    torch.save(reduced_sd, buf)
    data = buf.getvalue()
    spec = WeightSpec(
        url="https://example.invalid/reduced.pth",
        filename="reduced.pth",
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )
    preset = ModelPreset(name="test-reduced", config=H.REDUCED_CFG, weights=spec)
    real_get_preset = samkit.build.get_preset

    def get_preset(name):
        return preset if name == "test-reduced" else real_get_preset(name)

    monkeypatch.setattr(samkit.build, "get_preset", get_preset)
    server = _Server(monkeypatch, data)
    for _ in range(2):
        model = samkit.load_model("test-reduced", progress=False)
        assert model.name == "test-reduced"
        key = "mask_decoder.iou_token.weight"
        assert torch.equal(model.state_dict()[key], reduced_sd[key])
    assert server.urls == [spec.url]  # the second load used the cache
    assert _listing(cache) == ["reduced.pth"]


def test_cached_file_of_wrong_size_is_refused(cache, monkeypatch) -> None:
    server = _Server(monkeypatch, None)
    spec = samkit.get_preset("sam-vit-b").weights
    cache.mkdir(parents=True)
    (cache / spec.filename).write_bytes(b"partial download")
    with pytest.raises(CheckpointError) as info:
        samkit.load_model("sam-vit-b", progress=False)
    msg = str(info.value)
    assert str(cache / spec.filename) in msg and spec.url in msg, msg
    assert server.urls == []


class _NotATensor:
    """A picklable object that weights-only loading refuses."""


def test_pickled_objects_are_refused_without_unsafe_advice(tmp_path: Path) -> None:
    """A checkpoint holding Python objects is refused with samkit's own reason; torch's
    message goes on to suggest weights_only=False, which must never reach the user."""
    path = tmp_path / "objects.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "extra": _NotATensor()}, path)
    with pytest.raises(CheckpointError, match="holds Python objects besides tensors") as info:
        samkit.weights.read_state_dict(path)
    assert "weights_only=False" not in str(info.value)
    assert "can still be loaded" not in str(info.value)


@pytest.mark.parametrize(
    "content", [os.urandom(3000), b'{"model": {}}', b"hello, not a checkpoint"]
)
def test_unreadable_files_are_not_called_python_objects(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="corrupt or not a PyTorch") as info:
        samkit.weights.read_state_dict(path)
    assert "Python objects" not in str(info.value) and "weights_only=False" not in str(info.value)


def test_safetensors_suffix_in_any_case(tmp_path: Path) -> None:
    path = tmp_path / "w.SAFETENSORS"
    save_file({"w": torch.ones(2)}, str(path))
    assert torch.equal(samkit.weights.read_state_dict(path)["w"], torch.ones(2))


def test_dtype_is_checked_before_loading() -> None:
    """Names are accepted; integer/complex dtypes and unknown names are a ValueError up
    front (they failed after loading, or at predict time)."""
    assert samkit.load_model("samkit-demo", dtype="bfloat16").encoder_dtype == torch.bfloat16
    for bad in (torch.int32, torch.complex64, "half-ish"):
        with pytest.raises(ValueError, match="dtype must be one of"):
            samkit.load_model("samkit-demo", dtype=bad)
        with pytest.raises(ValueError, match="dtype must be one of"):
            samkit.build_model("samkit-demo", dtype=bad)


def test_cache_verification_and_messages(tmp_path: Path, monkeypatch) -> None:
    """A cached file of the right size but wrong bytes: `samkit download` hashes it and
    says to delete it (it printed the path as verified); loading it names the cached
    download and how to fix it, without torch's weights_only advice; `models` shows a
    wrong-size file as such. A folder given as a checkpoint is named a folder; a
    download larger than expected is not called incomplete."""
    from typer.testing import CliRunner

    from samkit.cli.main import app
    from samkit.cli.models import weights_status

    monkeypatch.setenv("SAMKIT_CACHE", str(tmp_path / "cache"))
    preset = samkit.get_preset("mobile-sam")
    spec = preset.weights
    cached = samkit.weights.cached_path(spec)
    cached.parent.mkdir(parents=True)
    with open(cached, "wb") as f:
        f.truncate(spec.size)  # zeros of the right size
    result = CliRunner().invoke(app, ["download", "mobile-sam", "--no-progress"])
    assert result.exit_code == 2 and "sha256" in result.output and "delete it" in result.output
    with pytest.raises(CheckpointError, match="cached download of mobile-sam") as info:
        samkit.load_model("mobile-sam")
    assert "weights_only=False" not in str(info.value) and "Re-runn" not in str(info.value)
    assert weights_status(preset) == "yes"
    cached.write_bytes(b"short")
    assert weights_status(preset) == "bad size"
    with pytest.raises(CheckpointError, match="is a folder, not a file"):
        samkit.weights.read_state_dict(tmp_path)
    source = tmp_path / "w.bin"
    source.write_bytes(b"x" * 3000)
    bigger = WeightSpec(url=source.as_uri(), filename="w.bin", sha256=None, size=2999)
    with pytest.raises(DownloadError, match="larger than expected"):
        samkit.weights.download(bigger, tmp_path / "dest.bin", progress=False)


def test_load_model_uses_the_preset_it_is_given(tmp_path: Path) -> None:
    """A preset object that is not registered (or whose weights differ) is loaded with
    its own weights spec, not looked up by name."""
    import dataclasses

    preset = dataclasses.replace(samkit.get_preset("samkit-demo"), name="my-demo", aliases=())
    model = samkit.load_model(preset)
    assert model.name == "my-demo"
