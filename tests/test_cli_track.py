"""``samkit track``: SAM 2 video tracking from the command line.

A very small SAM 2.1 (64-pixel input, one-layer memory attention and decoder, random
weights) is registered in this process as ``cli-test-sam2-track``; the video is a folder
of a few synthetic JPEG frames with a moving rectangle. The command's PNG and RLE-JSON
outputs are compared with what :class:`samkit.video.VideoSession` gives for the same
prompts on the same checkpoint, then every one-line error is checked.
"""

from __future__ import annotations

import json
import os
import sys
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
from samkit.cli.main import app
from samkit.video import VideoFileReader, VideoFileWriter, VideoPredictor

NAME = "cli-test-sam2-track"
H, W = 48, 64
NUM_FRAMES = 5

runner = CliRunner()
pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.usefixtures("cli_isolated", "one_thread"),  # conftest.py
]


# ---------------------------------------------------------------- fixtures and helpers
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights of the tiny SAM 2.1, registered as ``cli-test-sam2-track``."""
    cfg = H2.tiny_video_config()
    with torch.device("meta"):
        template = samkit.build_model(cfg, device="meta")
    path = tmp_path_factory.mktemp("sam2-track") / "track.pt"
    # seed 3: non-empty masks, objects both visible and not on some frames
    torch.save({"model": H2.random_state_dict(template, seed=3)}, path)
    return register_checkpoint(
        path,
        NAME,
        cfg,
        f"https://example.invalid/samkit/{NAME}.pt",
        "tiny random SAM 2.1 for the samkit track tests",
    )


@pytest.fixture(scope="module")
def model(checkpoint: Path):
    return samkit.load_model(NAME, checkpoint=checkpoint)


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``NUM_FRAMES`` JPEG frames: a bright rectangle moving right on a noisy background."""
    folder = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(0)
    for i in range(NUM_FRAMES):
        pixels = rng.integers(0, 60, (H, W, 3), dtype=np.uint8)
        pixels[10:30, 8 + 4 * i : 30 + 4 * i] = (220, 200, 40)
        pixels[32:44, 40:56] = (40, 90, 220)
        Image.fromarray(pixels).save(folder / f"{i:05d}.jpg", quality=95)
    return folder


def run(*args: str | os.PathLike[str]):
    return runner.invoke(app, [str(a) for a in args])


def track(frames: Path, checkpoint: Path, out: Path, *args: str):
    return run("track", frames, "--model", NAME, "--checkpoint", checkpoint, "--out", out, *args)


def reference(model, frames: Path, prompts, direction: str, start: int) -> dict[int, object]:
    """Frame -> FrameResult of the library for ``[(frame, obj, kwargs), ...]``."""
    with VideoPredictor(model).start(frames) as session:
        for frame, obj, kwargs in prompts:
            session.add_prompt(frame, obj, **kwargs)
        results = {r.frame_index: r for r in session.propagate(direction=direction, start=start)}
    # the comparisons mean something only if the random model finds some pixels
    assert any(m.any() for r in results.values() for m in r.masks.values())
    return results


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


# ---------------------------------------------------------------- outputs
def test_png_one_object_matches_session(frames, checkpoint, model, tmp_path):
    out = tmp_path / "masks"
    result = track(frames, checkpoint, out, "--point", "0:18,20")
    assert result.exit_code == 0, result.output
    assert "tracked 1 object(s) [1] over 5 frames" in result.stdout
    ref = reference(model, frames, [(0, 1, {"points": [[18, 20]], "labels": [1]})], "forward", 0)
    assert sorted(p.name for p in out.iterdir()) == ["1"]
    assert sorted(p.name for p in (out / "1").iterdir()) == [
        f"{i:05d}.png" for i in range(NUM_FRAMES)
    ]
    for i in range(NUM_FRAMES):
        np.testing.assert_array_equal(read_mask(out / "1" / f"{i:05d}.png"), ref[i].masks[1])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".masks.")]  # no temp left
    assert sorted(p.name for p in frames.iterdir()) == [f"{i:05d}.jpg" for i in range(5)]


def test_bf16_dtype_matches_bf16_session(frames, checkpoint, tmp_path):
    """``--dtype bfloat16`` tracks with ``load_model(..., dtype=torch.bfloat16)``: the
    image encoder and memory attention in bf16."""
    out = tmp_path / "masks"
    result = track(frames, checkpoint, out, "--point", "0:18,20", "--dtype", "bfloat16")
    assert result.exit_code == 0, result.output
    bf16 = samkit.load_model(NAME, checkpoint=checkpoint, dtype=torch.bfloat16)
    assert bf16.memory_attention.norm.weight.dtype == torch.bfloat16
    ref = reference(bf16, frames, [(0, 1, {"points": [[18, 20]], "labels": [1]})], "forward", 0)
    for i in range(NUM_FRAMES):
        np.testing.assert_array_equal(read_mask(out / "1" / f"{i:05d}.png"), ref[i].masks[1])


def test_compile_flag_compiles_the_loaded_model(frames, checkpoint, model, tmp_path, monkeypatch):
    """``--compile`` hands the loaded model to ``samkit.compile_model`` before tracking
    (recorded here, not compiled: compiled tracking itself is tests/test_compile.py's)."""
    seen = []

    def record(sam):
        seen.append(type(sam).__name__)
        return sam

    monkeypatch.setattr(samkit, "compile_model", record)
    out = tmp_path / "masks"
    result = track(frames, checkpoint, out, "--point", "0:18,20", "--compile")
    assert result.exit_code == 0, result.output
    assert seen == ["Sam2"]
    ref = reference(model, frames, [(0, 1, {"points": [[18, 20]], "labels": [1]})], "forward", 0)
    for i in range(NUM_FRAMES):
        np.testing.assert_array_equal(read_mask(out / "1" / f"{i:05d}.png"), ref[i].masks[1])
    seen.clear()
    assert track(frames, checkpoint, tmp_path / "plain", "--point", "0:18,20").exit_code == 0
    assert seen == []  # off by default


def test_rle_json_two_objects_matches_session(frames, checkpoint, model, tmp_path):
    out = tmp_path / "rle"
    args = ("--point", "0:18,20", "--negative", "0:48,38:1", "--box", "0:38,30,58,46:2")
    result = track(frames, checkpoint, out, "--format", "rle-json", *args)
    assert result.exit_code == 0, result.output
    prompts = [
        (0, 1, {"points": [[18, 20], [48, 38]], "labels": [1, 0]}),
        (0, 2, {"box": [38, 30, 58, 46]}),
    ]
    ref = reference(model, frames, prompts, "forward", 0)
    assert sorted(p.name for p in out.iterdir()) == [f"{i:05d}.json" for i in range(NUM_FRAMES)]
    for i in range(NUM_FRAMES):
        record = json.loads((out / f"{i:05d}.json").read_text())
        assert record["frame_index"] == i and record["frame"] == f"{i:05d}.jpg"
        assert record["size"] == [H, W]
        assert [o["id"] for o in record["objects"]] == [1, 2]
        for obj in record["objects"]:
            oid = obj["id"]
            np.testing.assert_array_equal(decode(obj["segmentation"]), ref[i].masks[oid])
            assert obj["score"] == pytest.approx(ref[i].scores[oid], abs=1e-6)
            assert obj["visible"] == ref[i].visible[oid]
    assert {v for r in ref.values() for v in r.visible.values()} == {True, False}


@pytest.mark.parametrize(("direction", "start", "expected"), [("both", 2, 5), ("backward", 3, 4)])
def test_direction_from_a_middle_frame(
    frames, checkpoint, model, tmp_path, direction, start, expected
):
    out = tmp_path / "both"
    args = ("--point", "2:26,20:1", "--box", f"{start}:38,30,58,46:2", "--direction", direction)
    result = track(frames, checkpoint, out, *args)
    assert result.exit_code == 0, result.output
    prompts = [(2, 1, {"points": [[26, 20]], "labels": [1]}), (start, 2, {"box": [38, 30, 58, 46]})]
    ref_start = 2 if direction == "both" else start
    ref = reference(model, frames, prompts, direction, ref_start)
    assert len(ref) == expected
    for obj in (1, 2):
        names = sorted(p.name for p in (out / str(obj)).iterdir())
        assert names == [f"{i:05d}.png" for i in sorted(ref)]
        for i, res in ref.items():
            np.testing.assert_array_equal(
                read_mask(out / str(obj) / f"{i:05d}.png"), res.masks[obj]
            )


def test_overwrite(frames, checkpoint, tmp_path):
    out = tmp_path / "masks"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert_cli_error(
        track(frames, checkpoint, out, "--point", "0:18,20"), "not empty", "--overwrite"
    )
    result = track(frames, checkpoint, out, "--point", "0:18,20", "--overwrite")
    assert result.exit_code == 0, result.output
    assert (out / "keep.txt").read_text() == "x"
    assert len(list((out / "1").iterdir())) == NUM_FRAMES


def test_overlay_mp4(frames, checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "video"
    result = track(frames, checkpoint, out, "--point", "0:18,20", "--format", "overlay-mp4")
    assert result.exit_code == 0, result.output
    assert [p.name for p in out.iterdir()] == ["overlay.mp4"]
    with VideoFileReader(out / "overlay.mp4") as reader:
        assert len(reader) == NUM_FRAMES and reader.size == (H, W)
        assert reader.fps == pytest.approx(10.0)  # a folder has no frame rate: 10/s
        first = reader.read(0).astype(int)
    with Image.open(sorted(frames.iterdir())[0]) as im:
        original = np.asarray(im).astype(int)
    masks = reference(
        samkit.load_model(NAME, checkpoint=checkpoint),
        frames,
        [(0, 1, {"points": [[18, 20]], "labels": [1]})],
        "forward",
        0,
    )
    tinted = masks[0].masks[1]
    assert tinted.any() and not tinted.all()
    # tinted pixels changed, the others are the frame (up to video coding)
    assert np.abs(first - original)[tinted].mean() > 3 * np.abs(first - original)[~tinted].mean()
    monkeypatch.setitem(sys.modules, "av", None)
    result = track(frames, checkpoint, tmp_path / "v2", "--point", "0:18,20", "-f", "overlay-mp4")
    assert_cli_error(result, "overlay-mp4 needs PyAV")


def test_video_file_input(frames, checkpoint, tmp_path):
    """An MP4 input: the masks equal the library's on the same file; its frame rate
    carries over to the overlay; a prompt past its end is one clear error."""
    mp4 = tmp_path / "clip.mp4"
    with VideoFileWriter(mp4, fps=5) as writer:
        for path in sorted(frames.iterdir()):
            with Image.open(path) as im:
                writer.write(np.asarray(im.convert("RGB")))
    model = samkit.load_model(NAME, checkpoint=checkpoint)
    ref = reference(model, mp4, [(2, 1, {"points": [[26, 20]], "labels": [1]})], "both", 2)
    out = tmp_path / "masks"
    result = track(mp4, checkpoint, out, "--point", "2:26,20", "--direction", "both")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (out / "1").iterdir()) == [
        f"{i:05d}.png" for i in range(NUM_FRAMES)
    ]
    for i in range(NUM_FRAMES):
        assert np.array_equal(read_mask(out / "1" / f"{i:05d}.png"), ref[i].masks[1])
    result = track(mp4, checkpoint, tmp_path / "ov", "--point", "0:18,20", "-f", "overlay-mp4")
    assert result.exit_code == 0, result.output
    with VideoFileReader(tmp_path / "ov" / "overlay.mp4") as reader:
        assert reader.fps == pytest.approx(5.0) and len(reader) == NUM_FRAMES
    assert_cli_error(
        track(mp4, checkpoint, tmp_path / "o", "--point", f"{NUM_FRAMES}:18,20"),
        f"the video has {NUM_FRAMES} frames",
    )
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\0" * 64)
    assert_cli_error(track(bad, checkpoint, tmp_path / "o", "--point", "0:1,1"), "bad.mp4")
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("spec", "fragments"),
    [
        (("--point", "18,20"), ("--point expects FRAME:X,Y[:OBJ]",)),
        (("--point", "a:18,20"), ("FRAME='a' is not an integer",)),
        (("--point", "0:18"), ("--point expects FRAME:X,Y[:OBJ]",)),
        (("--point", "0:18,y"), ("Y='y' is not a number",)),
        (("--point", "0:18,20:x"), ("OBJ='x' is not an integer",)),
        (("--point", "-1:18,20"), ("FRAME must be >= 0",)),
        (("--negative", "0:1,2:3:4"), ("--negative expects",)),
        (("--box", "0:1,2,3"), ("--box expects FRAME:X0,Y0,X1,Y1[:OBJ]",)),
        (("--box", "0:5,5,1,1"), ("X0 <= X1",)),
        (("--box", "0:1,1,5,5", "--box", "0:2,2,6,6"), ("already has a box on frame 0",)),
        ((), ("no prompt",)),
    ],
)
def test_malformed_prompts(frames, checkpoint, tmp_path, spec, fragments):
    assert_cli_error(track(frames, checkpoint, tmp_path / "o", *spec), *fragments)
    assert not (tmp_path / "o").exists()


def test_frame_out_of_range(frames, checkpoint, tmp_path):
    result = track(frames, checkpoint, tmp_path / "o", "--point", "0:1,1", "--box", "5:1,1,9,9:2")
    assert_cli_error(result, "frame 5", "5 frames")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (("--point", f"0:{W + 1},20"), f"point ({W + 1}, 20) lies outside the {W}x{H} video"),
        (("--negative", "2:10,-1:1", "--point", "2:5,5"), "point (10, -1) lies outside"),
        (("--box", f"1:0,0,{W},{H + 0.5}:2"), f"box corner ({W}, {H + 0.5:g}) lies outside"),
    ],
)
def test_prompt_outside_the_frames(frames, checkpoint, tmp_path, spec, fragment):
    """Clicks and boxes outside the frames are refused before the model is loaded, as
    ``samkit segment`` does (the session took them silently); the frame edge is fine."""
    assert_cli_error(track(frames, checkpoint, tmp_path / "o", *spec), fragment)
    assert not (tmp_path / "o").exists()
    result = track(frames, checkpoint, tmp_path / "edge", "--box", f"0:0,0,{W},{H}")
    assert result.exit_code == 0, result.output


def test_existing_out_that_is_not_writable(frames, checkpoint, tmp_path, monkeypatch):
    """An existing --out folder that cannot be written is refused before tracking (the
    run used to track every frame and fail when moving the results in). ``os.access`` is
    patched: as root, a folder's permission bits do not stop writes."""
    out = tmp_path / "masks"
    (out / "1").mkdir(parents=True)
    real_access = os.access
    monkeypatch.setattr(
        os,
        "access",
        lambda path, mode, **kw: (
            False if Path(path) == out and mode & os.W_OK else real_access(path, mode, **kw)
        ),
    )
    result = track(frames, checkpoint, out, "--point", "0:18,20", "--overwrite")
    assert_cli_error(result, f"--out {out}", "not writable")
    assert [p.name for p in out.iterdir()] == ["1"] and not any((out / "1").iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".masks.")]


@pytest.mark.usefixtures("offline")
def test_failed_model_download_leaves_no_out_folder(frames, checkpoint, tmp_path):
    result = run("track", frames, "-m", NAME, "--point", "0:18,20", "--out", tmp_path / "o")
    assert_cli_error(result, "could not download", NAME)
    assert not [p for p in tmp_path.iterdir() if p.name != "cache"]  # no o/, no .o.*.tmp/


def test_frames_over_the_pixel_limit(frames, checkpoint, tmp_path, monkeypatch):
    """Frames over Pillow's decompression-bomb limit (lowered here) are one line naming
    the frame, not a DecompressionBombError traceback (it is no OSError)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", H * W // 4)
    result = track(frames, checkpoint, tmp_path / "o", "--point", "0:18,20")
    assert_cli_error(result, "cannot read", "00000.jpg", "exceeds limit")
    assert not (tmp_path / "o").exists()


def test_unreadable_video(checkpoint, tmp_path):
    assert_cli_error(
        track(tmp_path / "missing", checkpoint, tmp_path / "o", "--point", "0:1,1"),
        "video not found",
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no frames")
    assert_cli_error(
        track(empty, checkpoint, tmp_path / "o", "--point", "0:1,1"), "no JPEG or PNG frames"
    )
    text = tmp_path / "clip.txt"
    text.write_text("not a video")
    assert_cli_error(
        track(text, checkpoint, tmp_path / "o", "--point", "0:1,1"),
        "not a folder of frames or a video file",
    )
    assert not (tmp_path / "o").exists()


def test_not_sam2():
    result = run("track", ".", "--model", "samkit-demo", "--point", "0:1,1", "--out", "o")
    assert_cli_error(result, "samkit track needs a SAM 2 model")


def test_never_writes_into_the_input_folder(frames, checkpoint, tmp_path):
    assert_cli_error(
        track(frames, checkpoint, frames / "masks", "--point", "0:1,1"), "inside the input folder"
    )
    assert_cli_error(
        track(frames, checkpoint, frames, "--point", "0:1,1", "--overwrite"),
        "inside the input folder",
    )
    assert_cli_error(
        track(frames, checkpoint, frames.parent, "--point", "0:1,1", "--overwrite"),
        "holds the input folder",
    )
    assert sorted(p.name for p in frames.iterdir()) == [f"{i:05d}.jpg" for i in range(5)]
    file_out = tmp_path / "file"
    file_out.write_text("x")
    assert_cli_error(track(frames, checkpoint, file_out, "--point", "0:1,1"), "is a file")


def test_never_replaces_an_input_video_inside_out(frames, checkpoint, tmp_path):
    """An input video inside --out is refused, even with --overwrite: the overlay
    (--out/overlay.mp4) replaced an input of that name."""
    folder = tmp_path / "vd"
    folder.mkdir()
    mp4 = folder / "overlay.mp4"
    with VideoFileWriter(mp4, fps=5) as writer:
        for path in sorted(frames.iterdir())[:2]:
            with Image.open(path) as im:
                writer.write(np.asarray(im.convert("RGB")))
    before = mp4.read_bytes()
    result = track(
        mp4, checkpoint, folder, "--point", "0:18,20", "--overwrite", "-f", "overlay-mp4"
    )
    assert_cli_error(result, "holds the input video")
    assert mp4.read_bytes() == before


def test_help_names_the_video_extra():
    """Rich read '[video]' in the help as markup and printed pip install 'samkit'."""
    result = run("track", "--help")
    assert result.exit_code == 0
    assert "samkit[video]" in " ".join(result.output.split()).replace(" ", "")
