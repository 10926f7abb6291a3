"""Tests of the ``samkit`` command line (Typer app in-process, plus real subprocesses).

No full-size model is ever built with weights here: a tiny random architecture is
registered as the preset ``cli-test-tiny`` (in this process only) and its checkpoint is
saved once per session. Subprocess tests only exercise error paths that fail before a
model is built, or that fail while reading a bad ``--checkpoint``.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from tiny_models import assert_cli_error, save_and_register_tiny
from typer.testing import CliRunner

import samkit
from samkit.cli import main as cli_main
from samkit.cli.main import app
from samkit.cli.segment import DEFAULT_MODEL

TINY = "cli-test-tiny"
TINY_URL = "https://example.invalid/samkit/cli-test-tiny.pth"
H, W = 48, 64  # non-square on purpose: catches (H, W) / (W, H) mix-ups

runner = CliRunner()

# pycocotools' decode trips a numpy 2 deprecation warning inside pycocotools itself.
pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.usefixtures("cli_isolated"),  # private cache, cwd = tmp (conftest.py)
]


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Save a tiny random model and register its architecture as ``cli-test-tiny``."""
    return save_and_register_tiny(
        tmp_path_factory.mktemp("weights"),
        TINY,
        TINY_URL,
        "tiny random model for the CLI tests",
        aliases=("cli-tiny",),
    )


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A ``W x H`` RGB PNG with a bright rectangle on a noisy background."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 60, (H, W, 3), dtype=np.uint8)
    pixels[10:30, 15:45] = (220, 200, 40)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path


def run(*args: str | os.PathLike[str], env: dict[str, str] | None = None):
    """Invoke the app in-process with stdout and stderr captured separately."""
    return runner.invoke(app, [str(a) for a in args], env=env)


def segment(image: Path, checkpoint: Path, *args: str | os.PathLike[str], env=None):
    return run("segment", image, "--model", TINY, "--checkpoint", checkpoint, *args, env=env)


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im)


def samkit_executable() -> str:
    """The installed console script of this environment."""
    candidate = Path(sys.executable).parent / "samkit"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("samkit")
    if found is None:
        pytest.skip("the samkit console script is not installed")
    return found


def run_process(*args: str | os.PathLike[str], env: dict[str, str] | None = None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [samkit_executable(), *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )


# ---------------------------------------------------------------- segment: happy paths
def test_segment_point_writes_mask_overlay_and_json(
    image: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    out, overlay, js = tmp_path / "mask.png", tmp_path / "overlay.png", tmp_path / "result.json"
    result = segment(
        image, tiny_checkpoint, "--point", "30,20", "--out", out, "--overlay", overlay, "--json", js
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    summary = result.stdout.strip().splitlines()
    assert len(summary) == 1 and "chose mask" in summary[0] and str(out) in summary[0]

    mask = read_png(out)
    assert mask.shape == (H, W) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255}
    with Image.open(out) as im:
        assert im.mode == "L"

    picture = read_png(overlay)
    assert picture.shape == (H, W, 3)

    record = json.loads(js.read_text())
    assert record["image"] == str(image)
    assert record["size"] == [H, W]
    assert record["model"] == TINY
    assert len(record["scores"]) == 3 and len(record["masks"]) == 3
    assert record["chosen"] == int(np.argmax(record["scores"]))
    assert record["prompt"]["points"] == [[30.0, 20.0]]
    assert record["prompt"]["labels"] == [1]
    assert record["prompt"]["box"] is None
    for rle in record["masks"]:
        assert rle["size"] == [H, W] and isinstance(rle["counts"], str)
    chosen = mask_utils.decode(record["masks"][record["chosen"]])
    np.testing.assert_array_equal(chosen.astype(bool), mask == 255)
    # The str form decodes too once turned back into the bytes pycocotools produced.
    rle = dict(record["masks"][0], counts=record["masks"][0]["counts"].encode())
    assert mask_utils.decode(rle).shape == (H, W)


def test_segment_matches_library(image: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    out, js = tmp_path / "mask.png", tmp_path / "r.json"
    result = segment(image, tiny_checkpoint, "-p", "30,20", "-o", out, "--json", js)
    assert result.exit_code == 0, result.output
    predictor = samkit.ImagePredictor(samkit.load_model(TINY, checkpoint=tiny_checkpoint))
    predictor.set_image(image)
    expected = predictor.predict(points=[[30, 20]], labels=[1])
    np.testing.assert_allclose(json.loads(js.read_text())["scores"], expected.scores, rtol=1e-5)
    np.testing.assert_array_equal(read_png(out) == 255, expected.best_mask)


def test_segment_single_box_and_negative(
    image: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    out, overlay, js = tmp_path / "m.png", tmp_path / "o.png", tmp_path / "r.json"
    result = segment(
        image,
        tiny_checkpoint,
        "--box",
        "15,10,45,30",
        "--point",
        "30,20",
        "--negative",
        "5,5",
        "--single",
        "-o",
        out,
        "--overlay",
        overlay,
        "--json",
        js,
    )
    assert result.exit_code == 0, result.output
    record = json.loads(js.read_text())
    assert len(record["scores"]) == 1 and record["chosen"] == 0
    assert record["prompt"] == {
        "points": [[30.0, 20.0], [5.0, 5.0]],
        "labels": [1, 0],
        "box": [15.0, 10.0, 45.0, 30.0],
        "multimask": False,
    }
    np.testing.assert_array_equal(mask_utils.decode(record["masks"][0]), read_png(out) // 255)
    assert read_png(overlay).shape == (H, W, 3)


def test_segment_box_only(image: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    result = segment(image, tiny_checkpoint, "--box", "0,0,64,48", "-o", tmp_path / "m.png")
    assert result.exit_code == 0, result.output
    assert read_png(tmp_path / "m.png").shape == (H, W)
    # a second --box was silently taken instead of the first
    twice = segment(
        image, tiny_checkpoint, "--box", "0,0,64,48", "-b", "1,1,9,9", "-o", tmp_path / "n.png"
    )
    assert_cli_error(twice, "--box given 2 times")
    assert not (tmp_path / "n.png").exists()


def test_segment_negative_only(image: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    result = segment(image, tiny_checkpoint, "--negative", "5,5", "-o", tmp_path / "m.png")
    assert result.exit_code == 0, result.output


def test_segment_bfloat16(image: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    result = segment(image, tiny_checkpoint, "-p", "30,20", "-o", "m.png", "--dtype", "bfloat16")
    assert result.exit_code == 0, result.output
    assert read_png(tmp_path / "m.png").shape == (H, W)


def test_segment_uses_cached_weights_without_checkpoint(
    image: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(tiny_checkpoint, cache / "cli-test-tiny.pth")
    result = run("segment", image, "-m", "cli-tiny", "-p", "3,4", "-o", tmp_path / "m.png")
    assert result.exit_code == 0, result.output


def test_default_model_is_a_registered_preset() -> None:
    assert samkit.get_preset(DEFAULT_MODEL).name == DEFAULT_MODEL


# ---------------------------------------------------------------- segment: errors
@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--point", "10,abc"], ["--point", "abc", "not a number"]),
        (["--point", "1,2,3"], ["--point", "X,Y"]),
        (["--point", "10"], ["--point", "X,Y"]),
        (["--point", "nan,3"], ["finite"]),
        (["--negative", "x,1"], ["--negative"]),
        (["--box", "1,2,3"], ["--box", "X0,Y0,X1,Y1"]),
        (["--box", "30,30,10,10"], ["x0 <= x1"]),
        (["--point", "100,10"], ["outside", "64x48"]),
        (["--point", "-1,10"], ["outside"]),
        (["--box", "0,0,65,10"], ["outside"]),
        ([], ["no prompt"]),
    ],
)
def test_segment_prompt_errors(
    image: Path, tiny_checkpoint: Path, tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    result = segment(image, tiny_checkpoint, *args, "-o", tmp_path / "m.png")
    assert_cli_error(result, *fragments)
    assert not (tmp_path / "m.png").exists()


def test_segment_missing_image(tiny_checkpoint: Path, tmp_path: Path) -> None:
    result = segment(tmp_path / "nope.jpg", tiny_checkpoint, "-p", "1,1", "-o", tmp_path / "m.png")
    assert_cli_error(result, "image not found", "nope.jpg")


def test_segment_corrupt_image(tiny_checkpoint: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    result = segment(bad, tiny_checkpoint, "-p", "1,1", "-o", tmp_path / "m.png")
    assert_cli_error(result, "cannot read image", "bad.jpg")


def test_segment_unknown_model(image: Path, tmp_path: Path) -> None:
    result = run("segment", image, "-m", "sam-vit-z", "-p", "1,1", "-o", tmp_path / "m.png")
    assert_cli_error(result, "unknown model 'sam-vit-z'", "sam-vit-b")


def test_segment_missing_checkpoint(image: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    result = segment(image, tmp_path / "none.pth", "-p", "1,1", "-o", tmp_path / "m.png")
    assert_cli_error(result, "checkpoint not found")


def test_segment_corrupt_checkpoint(image: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(tiny_checkpoint.read_bytes()[:1000])
    result = segment(image, bad, "-p", "1,1", "-o", tmp_path / "m.png")
    assert_cli_error(result, "cannot read checkpoint", "bad.pth")


def test_segment_checkpoint_of_another_model(
    image: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    state = torch.load(tiny_checkpoint, weights_only=True)
    state["extra.weight"] = state.pop("mask_decoder.iou_token.weight")
    other = tmp_path / "other.pth"
    torch.save(state, other)
    result = segment(image, other, "-p", "1,1", "-o", "m.png")
    assert_cli_error(result, "does not match this architecture", "mask_decoder.iou_token.weight")


def test_segment_missing_output_folder(image: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "dir" / "m.png"
    result = segment(image, tiny_checkpoint, "-p", "1,1", "-o", out)
    assert_cli_error(result, "--out", "does not exist")


@pytest.mark.parametrize("option", ["--out", "--overlay", "--json"])
def test_segment_refuses_to_overwrite_the_image(
    image: Path, tiny_checkpoint: Path, tmp_path: Path, option: str
) -> None:
    before = image.read_bytes()
    # A different spelling of the same file must be caught too.
    alias = tmp_path / "." / image.name
    outputs = {"--out": tmp_path / "m.png", option: alias}
    args = [x for key, value in outputs.items() for x in (key, value)]
    result = segment(image, tiny_checkpoint, "-p", "1,1", *args)
    assert_cli_error(result, option, "input IMAGE", "refusing")
    assert image.read_bytes() == before


def test_segment_refuses_symlink_to_the_image(
    image: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    link = tmp_path / "link.png"
    link.symlink_to(image)
    result = segment(image, tiny_checkpoint, "-p", "1,1", "-o", link)
    assert_cli_error(result, "refusing")


def test_segment_refuses_duplicate_outputs(
    image: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "m.png"
    result = segment(image, tiny_checkpoint, "-p", "1,1", "-o", out, "--overlay", out)
    assert_cli_error(result, "--overlay and --out")


def test_segment_output_is_a_directory(image: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    result = segment(image, tiny_checkpoint, "-p", "1,1", "-o", tmp_path)
    assert_cli_error(result, "is a directory")


def test_segment_bad_device(image: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    result = segment(image, tiny_checkpoint, "-p", "1,1", "-o", "m.png", "--device", "toaster")
    assert_cli_error(result, "--device", "toaster")


@pytest.mark.parametrize(("device", "fragment"), [("meta", "holds no data"), ("xla", "cannot use")])
def test_segment_unusable_device_type(
    image: Path, tiny_checkpoint: Path, device: str, fragment: str
) -> None:
    """A device type torch parses but this build cannot compute on (or the data-less
    meta device) is one line, not a traceback from deep inside the model."""
    result = segment(image, tiny_checkpoint, "-p", "1,1", "-o", "m.png", "--device", device)
    assert_cli_error(result, f"--device {device}", fragment)
    assert not Path("m.png").exists()


def test_segment_refuses_to_overwrite_the_checkpoint(
    image: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """The --checkpoint is an input too: no output may replace it."""
    weights = tmp_path / "weights.pth"
    shutil.copy(tiny_checkpoint, weights)
    for option in ("--out", "--overlay", "--json"):
        outputs = {"--out": tmp_path / "m.png", option: weights}
        args = [x for key, value in outputs.items() for x in (key, value)]
        result = segment(image, weights, "-p", "1,1", *args)
        assert_cli_error(result, option, "input --checkpoint", "refusing")
    assert weights.read_bytes() == tiny_checkpoint.read_bytes()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_segment_refuses_to_replace_a_special_file(
    image: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """An output that is a pipe or a device (e.g. ``--json /dev/stdout``, ``--out
    /dev/null``) would be replaced by a plain file by the atomic rename (as root, even
    ``/dev/null`` itself): refused up front, and by :func:`samkit.fileio.atomic_write`."""
    from samkit.errors import OutputError
    from samkit.fileio import atomic_write_bytes

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "link.png"
    link.symlink_to(fifo)
    for target in (fifo, link):
        result = segment(image, tiny_checkpoint, "-p", "1,1", "-o", target)
        assert_cli_error(result, "--out", "not a regular file")
    with pytest.raises(OutputError, match="not a regular file"):
        atomic_write_bytes(fifo, b"data")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and link.is_symlink()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_through_a_symlink_keeps_the_link(tmp_path: Path) -> None:
    """Writing to a link to a regular file replaces the target's contents atomically and
    leaves the link in place (the rename alone would replace the link by a plain file)."""
    from samkit.fileio import atomic_write_bytes

    target = tmp_path / "real.json"
    target.write_bytes(b"old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert target.read_bytes() == b"new"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_refuses_a_symlink_loop(tmp_path: Path) -> None:
    from samkit.errors import OutputError
    from samkit.fileio import atomic_write_bytes

    loop = tmp_path / "loop.json"
    loop.symlink_to(tmp_path / "other.json")
    (tmp_path / "other.json").symlink_to(loop)
    with pytest.raises(OutputError, match="cannot write"):
        atomic_write_bytes(loop, b"data")
    assert loop.is_symlink()


def test_segment_bad_dtype_is_a_usage_error(image: Path, tiny_checkpoint: Path) -> None:
    result = segment(image, tiny_checkpoint, "-p", "1,1", "-o", "m.png", "--dtype", "int8")
    assert_cli_error(result, "--dtype", "int8", "(see 'samkit segment -h')")


def test_segment_requires_out(image: Path, tiny_checkpoint: Path) -> None:
    result = segment(image, tiny_checkpoint, "-p", "1,1")
    assert_cli_error(result, "--out")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["segment", "x.jpg", "--bogus", "1"], ["No such option: --bogus", "'samkit segment -h'"]),
        (["segment"], ["Missing argument", "'samkit segment -h'"]),
        (["segmnt", "x.jpg"], ["No such command 'segmnt'", "'samkit -h'"]),
        (["auto", "x.jpg", "--format", "tiff"], ["--format", "tiff", "'samkit auto -h'"]),
        (["track", "v.mp4", "--point", "0:1,2"], ["--out"]),
    ],
)
def test_usage_errors_are_one_line(args: list[str], fragments: list[str]) -> None:
    """Click's usage errors (unknown option or command, missing argument, a value outside
    its choices) get the same one-line form as samkit's own errors, naming the help."""
    assert_cli_error(run(*args), *fragments)


def test_no_arguments_shows_the_help() -> None:
    result = run()
    assert "Usage" in result.output and "segment" in result.output
    assert "samkit: error" not in result.output


def test_debug_env_reraises(image: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    result = segment(
        tmp_path / "nope.jpg",
        tiny_checkpoint,
        "-p",
        "1,1",
        "-o",
        "m.png",
        env={"SAMKIT_DEBUG": "1"},
    )
    assert isinstance(result.exception, samkit.InvalidImage)
    assert "samkit: error:" not in result.stderr


# ---------------------------------------------------------------- eval
@pytest.fixture
def sa1b(tmp_path: Path) -> Path:
    """Two synthetic images with their SA-1B JSONs in ``data/``."""
    data = tmp_path / "data"
    result = run("synth", data, "--n", "2", "--size", "48,64", "--seed", "0")
    assert result.exit_code == 0, result.output
    return data


def evaluate(data: Path, checkpoint: Path, *args: str | os.PathLike[str]):
    return run("eval", data, "--model", TINY, "--checkpoint", checkpoint, *args)


def test_eval_refuses_to_overwrite_inputs(
    sa1b: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """--json may not replace a file of the dataset or the --checkpoint; a new file in
    the dataset folder is fine."""
    member = sa1b / "synth_000000.json"
    before = member.read_bytes()
    result = evaluate(sa1b, tiny_checkpoint, "--protocol", "box", "--json", member)
    assert_cli_error(result, "--json", "dataset folder", "refusing")
    assert member.read_bytes() == before
    weights = tmp_path / "weights.pth"
    shutil.copy(tiny_checkpoint, weights)
    result = evaluate(sa1b, weights, "--protocol", "box", "--json", weights)
    assert_cli_error(result, "--json", "input --checkpoint")
    assert weights.read_bytes() == tiny_checkpoint.read_bytes()
    result = evaluate(sa1b, tiny_checkpoint, "--protocol", "box", "--json", sa1b / "res.json")
    assert result.exit_code == 0, result.output
    assert json.loads((sa1b / "res.json").read_text())["results"]["box"]["count"] > 0
    # an earlier report in the folder may be replaced by the next run
    again = evaluate(sa1b, tiny_checkpoint, "--protocol", "box", "--json", sa1b / "res.json")
    assert again.exit_code == 0, again.output


@pytest.mark.parametrize("protocol", ["single-point", "box"])
def test_eval_skips_an_image_without_objects(
    sa1b: Path, tiny_checkpoint: Path, tmp_path: Path, protocol: str
) -> None:
    """An SA-1B JSON with an empty annotations list is an image without objects: skipped
    (it used to fail every protocol with numpy's 'cannot reshape array of size 0')."""
    first = sa1b / "synth_000000.json"
    first.write_text(json.dumps({"image": {"image_id": "synth_000000"}, "annotations": []}))
    objects = len(json.loads((sa1b / "synth_000001.json").read_text())["annotations"])
    out = tmp_path / "res.json"
    result = evaluate(sa1b, tiny_checkpoint, "--protocol", protocol, "--json", out)
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text())["results"][protocol]
    assert record["count"] == objects
    assert set(record["per_object"]["image_id"]) == {"synth_000001"}


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("[1, 2]", "is not an SA-1B annotation file"),
        ("{}", "is not an SA-1B annotation file"),  # was read as an image without objects
        ('{"annotations": {}}', "is not an SA-1B annotation file"),
        ('{"annotations": [{"bbox": [1, 2, 3, 4]}]}', "no 'segmentation' key"),
        ('{"annotations": [{"segmentation": {"size": [48, 64]}}]}', "and 'counts'"),
        ('{"annotations": [{"segmentation": {"size": [48, 64], "counts": "zz"}}]}', "outside"),
        (
            '{"annotations": [{"segmentation": {"size": [48, 64], "counts": [3072]}, '
            '"level": "x"}]}',
            "'level' must be an integer, got 'x'",
        ),
        ('{"annotations": [{"segmentation": [[1, 2, 3, 4, 5, 6]]}]}', "RLE 'segmentation'"),
        ("{", "cannot read"),
    ],
)
def test_eval_malformed_annotation_file(
    sa1b: Path, tiny_checkpoint: Path, content: str, fragment: str
) -> None:
    """A JSON next to an image that is not SA-1B gives one line naming the file (some
    used to end in an AttributeError / KeyError / TypeError traceback)."""
    (sa1b / "synth_000000.json").write_text(content)
    result = evaluate(sa1b, tiny_checkpoint, "--protocol", "box")
    assert_cli_error(result, "box evaluation failed", "synth_000000.json", fragment)


def test_eval_decompression_bomb_is_one_line(
    sa1b: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image over Pillow's pixel limit (lowered here) is one line naming it: Pillow's
    DecompressionBombError is no OSError, and came out as a traceback."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", H * W // 4)
    result = evaluate(sa1b, tiny_checkpoint, "--protocol", "box")
    assert_cli_error(result, "box evaluation failed", "cannot read image", "synth_000000.png")


# ---------------------------------------------------------------- models / download / version
def test_models_lists_all_presets_offline(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("samkit models must not touch the network")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    result = run("models")
    assert result.exit_code == 0, result.output
    for name in samkit.list_models():
        assert name in result.stdout
    assert "sam_vit_b_01ec64.pth" in result.stdout
    assert "375.0 MB" in result.stdout
    assert "93.7M" in result.stdout  # parameter count of SAM ViT-B


def test_models_shows_cached_state(tiny_checkpoint: Path, tmp_path: Path) -> None:
    def row() -> str:
        result = run("models")
        assert result.exit_code == 0, result.output
        return next(line for line in result.stdout.splitlines() if TINY in line)

    assert " no " in row()
    (tmp_path / "cache").mkdir()
    shutil.copy(tiny_checkpoint, tmp_path / "cache" / "cli-test-tiny.pth")
    assert " yes " in row()


@pytest.mark.usefixtures("offline")
def test_download_network_error(tiny_checkpoint: Path) -> None:
    result = run("download", "sam-vit-b", "--no-progress")
    assert_cli_error(result, "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth")
    result = run("download", TINY)
    assert_cli_error(result, TINY_URL)


class _FakeResponse(io.BytesIO):
    headers: dict[str, str] = {}


def test_download_success_and_force(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def serve(url, *args, **kwargs):
        calls.append(url)
        return _FakeResponse(tiny_checkpoint.read_bytes())

    monkeypatch.setattr("urllib.request.urlopen", serve)
    dest = tmp_path / "cache" / "cli-test-tiny.pth"
    result = run("download", "cli-tiny", "--no-progress")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(dest)
    assert dest.read_bytes() == tiny_checkpoint.read_bytes()
    assert run("download", TINY).exit_code == 0  # cached: no second request
    assert calls == [TINY_URL]
    assert run("download", TINY, "--force", "--no-progress").exit_code == 0
    assert calls == [TINY_URL, TINY_URL]


def test_download_honours_the_umask(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cached weights get the umask's permissions like every other output (the
    download's temporary file was moved into place with mkstemp's 0600, unreadable to
    the other users of a shared $SAMKIT_CACHE)."""
    monkeypatch.setattr(
        "urllib.request.urlopen", lambda url, *a, **k: _FakeResponse(tiny_checkpoint.read_bytes())
    )
    old = os.umask(0o022)
    try:
        result = run("download", TINY, "--no-progress")
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    dest = tmp_path / "cache" / "cli-test-tiny.pth"
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644


@pytest.mark.parametrize("below", ["", "sub"])
def test_cache_that_is_a_file(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, below: str
) -> None:
    """$SAMKIT_CACHE naming a file was reported as "cannot write ... (File exists)"."""
    cache = tmp_path / "cachefile"
    cache.write_text("mine")
    monkeypatch.setenv("SAMKIT_CACHE", str(cache / below))
    line = assert_cli_error(
        run("download", TINY, "--no-progress"), f"{cache} is a file, not a folder"
    )
    assert "SAMKIT_CACHE" in line and "File exists" not in line
    assert cache.read_text() == "mine"


@pytest.mark.usefixtures("offline")
def test_segment_failed_download_writes_nothing(
    image: Path, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    result = run("segment", image, "-m", TINY, "-p", "3,4", "-o", "m.png", "--json", "m.json")
    assert_cli_error(result, "could not download", TINY_URL)
    assert [p.name for p in tmp_path.iterdir() if p.name != "cache"] == [image.name]


def test_download_unknown_model() -> None:
    assert_cli_error(run("download", "nope"), "unknown model 'nope'")


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"samkit {samkit.__version__}"


def test_help_texts() -> None:
    for args in (["--help"], ["segment", "--help"], ["models", "--help"], ["download", "-h"]):
        result = run(*args)
        assert result.exit_code == 0, result.output
        assert "Usage" in result.stdout


def test_help_prose_reflows_and_examples_keep_their_lines() -> None:
    """Docstring lines wrapped in the source are joined, so an 80-column terminal shows
    prose wrapped once, not ragged; the indented examples stay on their own lines."""
    result = runner.invoke(app, ["auto", "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = [line.rstrip() for line in result.stdout.splitlines()]
    # In the source the docstring breaks after "distinct"; reflowed, "distinct" and
    # "masks" share a line at this width.
    assert any("distinct masks" in line for line in lines), result.stdout
    assert "     samkit auto photos/ --out masks/" in lines, result.stdout
    track = runner.invoke(app, ["track", "--help"], env={"COLUMNS": "80"})
    assert "     --box 10:300,0,500,400:2 --direction both --out masks/" in [
        line.rstrip() for line in track.stdout.splitlines()
    ], track.stdout


def test_main_entry_point(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"samkit {samkit.__version__}"


# ---------------------------------------------------------------- real processes
def test_process_missing_image(tmp_path: Path) -> None:
    proc = run_process("segment", tmp_path / "nope.jpg", "-p", "1,1", "-o", tmp_path / "m.png")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [f"samkit: error: image not found: {tmp_path / 'nope.jpg'}"]
    assert proc.stdout == ""


def test_process_bad_checkpoint_and_debug(image: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"definitely not a checkpoint")
    args = ("segment", image, "-m", "sam-vit-b", "-c", bad, "-p", "5,5", "-o", tmp_path / "m.png")
    proc = run_process(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("samkit: error: cannot read checkpoint")
    assert not (tmp_path / "m.png").exists()

    proc = run_process(*args, env={"SAMKIT_DEBUG": "1"})
    assert proc.returncode != 0
    assert "Traceback (most recent call last)" in proc.stderr
    assert "CheckpointError" in proc.stderr


def test_synth_video_jpeg_frames(tmp_path: Path) -> None:
    """--format jpg with --video writes JPEG frame folders (the official SAM 2 predictor's
    input); --format was ignored there and PNG frames were written."""
    from samkit.video import list_video_frames

    out = tmp_path / "clips"
    result = run("synth", out, "--n", "1", "--video", "3", "--size", "32,48", "--format", "jpg")
    assert result.exit_code == 0, result.output
    assert "JPEG folders" in result.output
    frames = list_video_frames(out / "clip_000000")
    assert [f.name for f in frames] == ["00000.jpg", "00001.jpg", "00002.jpg"]
    with Image.open(frames[0]) as im:
        assert im.format == "JPEG" and im.size == (48, 32)
    assert not list((out / "clip_000000").glob("*.png"))


@pytest.mark.parametrize(("option", "name"), [("-o", "m.jpg"), ("--overlay", "o.JPEG")])
def test_segment_refuses_non_png_names(
    image: Path, tiny_checkpoint: Path, tmp_path: Path, option: str, name: str
) -> None:
    """The mask and overlay are PNG data: a .jpg name held PNG bytes."""
    args = ["-p", "10,10", option, tmp_path / name]
    if option != "-o":
        args += ["-o", tmp_path / "m.png"]
    assert_cli_error(segment(image, tiny_checkpoint, *args), "samkit writes PNG files")
    assert not (tmp_path / name).exists() and not (tmp_path / "m.png").exists()


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch: pytest.MonkeyPatch) -> None:
    """Typer turns KeyboardInterrupt into exit 130 without a word; samkit says so."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(samkit, "list_models", interrupted)
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines() == [
        "samkit: interrupted (outputs written so far are complete)"
    ]


def test_warnings_are_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The samkit program prints warnings (e.g. Pillow's DecompressionBombWarning for a
    95-megapixel image) as one line, not two naming Pillow's source."""
    import warnings

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after
    monkeypatch.delenv("SAMKIT_DEBUG", raising=False)
    with pytest.raises(SystemExit):
        cli_main.main(["--version"])
    assert warnings.formatwarning is cli_main._one_line_warning
    text = warnings.formatwarning(
        "Image size (95000000 pixels) exceeds\n limit", UserWarning, "/x/PIL/Image.py", 3593
    )
    assert text == "samkit: warning: UserWarning: Image size (95000000 pixels) exceeds limit\n"
