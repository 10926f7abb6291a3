"""Checkpoint goldens, loading, load errors and the weights cache / download.

- Key sets and shapes of every SAM 1-family preset equal the official architecture's
  (built on the meta device on both sides where possible, so nothing is allocated).
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
from samkit.configs import ModelPreset, ViTConfig


def _sam1_presets() -> list[str]:
    return [n for n in samkit.list_models() if samkit.get_preset(n).config.family == "sam"]


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
        assert isinstance(cfg.encoder, ViTConfig), f"no official architecture for {name!r}"
        with torch.device("meta"):
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
