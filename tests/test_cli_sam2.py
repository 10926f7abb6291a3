"""The ``samkit`` command line with SAM 2 models: ``models``, ``segment`` and ``auto``.

The CLI takes registered model names only, so two SAM 2 architectures are used:

- the real ``sam2.1-hiera-tiny`` with random weights saved in the official file layout
  (``{"model": state_dict}``): one ``segment`` and one ``auto`` run at the full 1024
  input, the end-to-end check that the published preset works from the command line;
- ``cli-test-sam2-reduced``: the reduced Hiera of the SAM 2 parity tests at a 256-pixel
  input, registered in this process only, for the cheaper checks (the CLI gives the
  library's results, box / negative / bf16 runs, one-line errors).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import helpers_sam2 as H2
import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from tiny_models import assert_cli_error, register_checkpoint
from typer.testing import CliRunner

import samkit
from samkit.amg import MaskGenerator
from samkit.cli.auto import METADATA_FILE
from samkit.cli.main import app
from samkit.data.sa1b import read_amg_json

TINY = "sam2.1-hiera-tiny"
REDUCED = "cli-test-sam2-reduced"
H, W = 48, 64  # non-square: SAM 2 resizes to a square without keeping the aspect
KEEP_ALL = (
    "--points-per-side",
    "2",
    "--pred-iou-thresh",
    "0",
    "--stability-score-thresh",
    "0",
    "--box-nms-thresh",
    "1",
)

#: "Size (M)" of the official README's model tables (2.1 repeats the 2.0 numbers).
PUBLISHED_MILLIONS = {"tiny": 38.9, "small": 46.0, "base-plus": 80.8, "large": 224.4}

runner = CliRunner()
pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.usefixtures("cli_isolated"),  # private cache, cwd = tmp (conftest.py)
]


# ---------------------------------------------------------------- fixtures and helpers
def _random_weights(name_or_cfg, seed: int) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        template = samkit.build_model(name_or_cfg, device="meta")
    return H2.random_state_dict(template, seed=seed)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights of the real SAM 2.1 Hiera-T, in the official ``{"model": ...}`` file."""
    path = tmp_path_factory.mktemp("sam2-tiny") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": _random_weights(TINY, seed=51)}, path)
    return path


@pytest.fixture(scope="module")
def reduced_sd() -> dict[str, torch.Tensor]:
    return _random_weights(H2.reduced_config("2.1", 256), seed=52)


@pytest.fixture(scope="module")
def reduced_checkpoint(tmp_path_factory: pytest.TempPathFactory, reduced_sd) -> Path:
    """Save the reduced SAM 2.1 and register its architecture as ``cli-test-sam2-reduced``."""
    path = tmp_path_factory.mktemp("sam2-reduced") / "reduced.pt"
    torch.save({"model": reduced_sd}, path)
    return register_checkpoint(
        path,
        REDUCED,
        H2.reduced_config("2.1", 256),
        "https://example.invalid/samkit/cli-test-sam2-reduced.pt",
        "reduced random SAM 2.1 for the CLI tests",
    )


@pytest.fixture(scope="module")
def reduced_model(reduced_checkpoint: Path):
    """The library's view of the reduced checkpoint, loaded once."""
    return samkit.load_model(REDUCED, checkpoint=reduced_checkpoint)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A ``W x H`` RGB PNG with a bright rectangle on a noisy background."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 60, (H, W, 3), dtype=np.uint8)
    pixels[10:30, 15:45] = (220, 200, 40)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


def run(*args: str | os.PathLike[str]):
    return runner.invoke(app, [str(a) for a in args])


def read_mask(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "L"
        pixels = np.asarray(im)
    assert pixels.shape == (H, W)
    assert set(np.unique(pixels)) <= {0, 255}
    return pixels == 255


def decode(segmentation: dict) -> np.ndarray:
    rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


# ---------------------------------------------------------------- models
def test_models_lists_sam2_presets_with_parameter_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("samkit models must not touch the network")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    result = run("models")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    names = [
        n
        for n in samkit.list_models()
        if samkit.get_preset(n).config.family == "sam2" and not n.startswith("cli-test-")
    ]  # the official presets (other test modules register cli-test-* SAM 2 presets)
    assert len(names) == 8
    for name in names:
        preset = samkit.get_preset(name)
        row = next(line for line in lines if preset.weights.filename in line.split())
        assert name in row.split() and preset.aliases[0] in row.split(), row
        size = name.split("-hiera-", 1)[1]
        shown = next(
            t for t in row.split() if t.endswith("M") and t[:-1].replace(".", "").isdigit()
        )
        assert round(abs(float(shown[:-1]) - PUBLISHED_MILLIONS[size]), 6) <= 0.1, row
        assert " no " in row, row  # not cached in the private cache


# ---------------------------------------------------------------- the real sam2.1-hiera-tiny
def test_segment_sam2_1_hiera_tiny(image: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    out, overlay, js = tmp_path / "mask.png", tmp_path / "overlay.png", tmp_path / "result.json"
    result = run(
        "segment",
        image,
        "--model",
        TINY,
        "--checkpoint",
        tiny_checkpoint,
        "--point",
        "30,20",
        "--out",
        out,
        "--overlay",
        overlay,
        "--json",
        js,
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stderr == ""
    assert f"of {W}x{H}" in result.stdout
    mask = read_mask(out)
    with Image.open(overlay) as im:
        assert im.size == (W, H) and im.mode == "RGB"
    record = json.loads(js.read_text())
    assert record["model"] == TINY
    assert record["checkpoint"] == str(tiny_checkpoint)
    assert record["size"] == [H, W]
    assert len(record["scores"]) == len(record["masks"]) == 3
    assert record["chosen"] == int(np.argmax(record["scores"]))
    assert all(0.0 <= s <= 1.0 for s in record["scores"])  # SAM 2's IoU head ends in a sigmoid
    np.testing.assert_array_equal(decode(record["masks"][record["chosen"]]), mask)
    assert f"chose mask {record['chosen']}" in result.stdout


def test_auto_sam2_1_hiera_tiny(image: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    result = run(
        "auto", image, "--model", TINY, "--checkpoint", tiny_checkpoint, "--out", tmp_path / "out",
        *KEEP_ALL, "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    assert result.stderr == ""
    assert "1 done, 0 skipped, 0 failed of 1 images" in result.stdout
    info, records = read_amg_json(tmp_path / "out" / "photo.json")
    assert info == {"image_id": "photo", "file_name": "../photo.png", "width": W, "height": H}
    assert len(records) == 12  # 4 points x 3 candidates, nothing filtered
    assert f"{len(records)} masks" in result.stdout
    for rec in records:
        mask = decode(rec["segmentation"])
        assert mask.shape == (H, W)
        assert rec["area"] == mask.sum() > 0
        assert rec["crop_box"] == [0, 0, W, H]


# ---------------------------------------------------------------- reduced SAM 2: library parity
@pytest.mark.parametrize(
    "prompt",
    [("--point", "30,20"), ("--box", "12,8,50,34", "--negative", "5,40", "--single")],
    ids=["point", "box-negative-single"],
)
def test_segment_sam2_matches_library(
    image: Path, reduced_checkpoint: Path, reduced_model, tmp_path: Path, prompt: tuple[str, ...]
) -> None:
    out, js = tmp_path / "mask.png", tmp_path / "r.json"
    result = run(
        "segment", image, "-m", REDUCED, "-c", reduced_checkpoint, *prompt, "-o", out, "--json", js
    )
    assert result.exit_code == 0, (result.output, result.exception)
    record = json.loads(js.read_text())
    p = record["prompt"]
    predictor = samkit.ImagePredictor(reduced_model)
    predictor.set_image(np.asarray(Image.open(image).convert("RGB")))
    expected = predictor.predict(
        points=p["points"] or None,
        labels=p["labels"] or None,
        box=p["box"],
        multimask=p["multimask"],
    )
    assert record["chosen"] == expected.best_index
    np.testing.assert_allclose(record["scores"], expected.scores, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(read_mask(out), expected.masks[expected.best_index])
    assert len(record["masks"]) == (1 if "--single" in prompt else 3)


def test_segment_sam2_bfloat16(image: Path, reduced_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "mask.png"
    result = run(
        "segment", image, "-m", REDUCED, "-c", reduced_checkpoint, "-p", "30,20",
        "-o", out, "--dtype", "bfloat16",
    )  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    read_mask(out)


def test_auto_sam2_matches_library(
    image: Path, reduced_checkpoint: Path, reduced_model, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = run(
        "auto", image, "-m", REDUCED, "-c", reduced_checkpoint, "--out", out,
        "--format", "png", *KEEP_ALL, "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    expected = MaskGenerator(
        reduced_model,
        points_per_side=2,
        pred_iou_thresh=0,
        stability_score_thresh=0,
        box_nms_thresh=1,
    ).generate(image)
    assert expected, "the reduced random model should give masks with no filtering"
    with open(out / "photo" / METADATA_FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["area"]) for r in rows] == [r["area"] for r in expected]
    for i, exp in enumerate(expected):
        np.testing.assert_array_equal(read_mask(out / "photo" / f"{i}.png"), exp["segmentation"])


# ---------------------------------------------------------------- errors stay one line
def test_segment_sam2_checkpoint_of_another_size(
    image: Path, reduced_checkpoint: Path, tmp_path: Path
) -> None:
    result = run(
        "segment", image, "-m", TINY, "-c", reduced_checkpoint, "-p", "30,20",
        "-o", tmp_path / "m.png",
    )  # fmt: skip
    assert_cli_error(result, str(reduced_checkpoint), "does not match", "shape mismatches")
    assert not (tmp_path / "m.png").exists()


def test_auto_sam2_checkpoint_missing_a_key(
    image: Path, reduced_checkpoint: Path, reduced_sd, tmp_path: Path
) -> None:
    path = tmp_path / "missing.pt"
    torch.save(
        {"model": {k: v for k, v in reduced_sd.items() if k != "no_obj_embed_spatial"}}, path
    )
    result = run(
        "auto", image, "-m", REDUCED, "-c", path, "--out", tmp_path / "out", "--no-progress"
    )
    assert_cli_error(result, str(path), "1 missing keys: no_obj_embed_spatial")
    assert not (tmp_path / "out" / "photo.json").exists()


def test_segment_sam1_checkpoint_for_sam2_model(
    image: Path, reduced_checkpoint: Path, tmp_path: Path
) -> None:
    path = tmp_path / "sam1.pth"
    torch.save(_random_weights("samkit-demo", seed=53), path)
    result = run("segment", image, "-m", REDUCED, "-c", path, "-p", "1,1", "-o", tmp_path / "m.png")
    line = assert_cli_error(result, str(path), "missing keys", "unexpected keys")
    assert "image_encoder.blocks.0." in line, line  # a SAM 1 key is named
