"""Video files (``samkit.video.io``, PyAV): random-access reading, atomic writing, and a
video session on an MP4 giving what the same frames give from memory.

The clips are written in the tests with PyAV itself (H.264 with B-frames and a keyframe
every 4 frames, so reads out of order exercise seeking and the presentation-order frame
index) or with :class:`VideoFileWriter`. Each frame carries its index as a flat grey
level, so a decoded frame can be checked to be the right one despite lossy coding.
"""

from __future__ import annotations

import os
import sys
from fractions import Fraction
from pathlib import Path

import av
import helpers_sam2 as H2
import numpy as np
import pytest
import torch
from PIL import Image

import samkit
from samkit.errors import FrameOutOfRange, InvalidVideo
from samkit.video import VideoFileReader, VideoFileWriter, VideoPredictor
from samkit.video.sources import FrameSource

H, W = 48, 64
NUM = 14
LEVEL = 16  # grey level step between frames


def _frame(i: int) -> np.ndarray:
    """Frame ``i``: grey level ``LEVEL * (i + 1)`` with a bright square moving right."""
    rgb = np.full((H, W, 3), LEVEL * (i + 1), dtype=np.uint8)
    rgb[12:30, 4 + 3 * i : 22 + 3 * i] = (230, 210, 40)
    return rgb


def _index_of(rgb: np.ndarray) -> int:
    """The frame index encoded by a decoded frame's background grey level."""
    return round(float(np.median(rgb[36:, :, 1])) / LEVEL) - 1


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """An H.264 MP4 with B-frames and a keyframe every 4 frames, written by PyAV."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.gop_size = 4
        stream.options = {"bf": "2", "crf": "12", "sc_threshold": "0"}
        for i in range(NUM):
            frame = av.VideoFrame.from_ndarray(_frame(i), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_reader_random_access_equals_sequential(clip):
    with VideoFileReader(clip) as reader:
        assert len(reader) == NUM
        assert reader.size == (H, W)
        assert reader.fps == pytest.approx(25.0)
        sequential = list(reader)
    assert [_index_of(f) for f in sequential] == list(range(NUM))
    for i, f in enumerate(sequential):
        assert f.shape == (H, W, 3) and f.dtype == np.uint8
        assert np.abs(f.astype(int) - _frame(i)).mean() < 4  # lossy, but the same picture
    order = [9, 2, 13, 0, 5, 5, 12, 3, 7, 6, 1, 11, 4, 8, 10]
    with VideoFileReader(clip) as reader:
        for i in order:
            assert np.array_equal(reader.read(i), sequential[i]), f"frame {i}"


def test_reader_errors(clip, tmp_path):
    with VideoFileReader(clip) as reader:
        with pytest.raises(FrameOutOfRange):
            reader.read(NUM)
        with pytest.raises(FrameOutOfRange):
            reader.read(-1)
    garbage = tmp_path / "bad.mp4"
    garbage.write_bytes(b"\0" * 64)
    with pytest.raises(InvalidVideo, match="bad.mp4"):
        VideoFileReader(garbage)
    with pytest.raises(InvalidVideo):
        VideoFileReader(tmp_path / "missing.mp4")


def test_reader_without_pyav(clip, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(InvalidVideo, match=r"samkit\[video\]"):
        VideoFileReader(clip)


@pytest.mark.parametrize("codec", [None, "mpeg4"])
def test_writer_round_trip(tmp_path, codec):
    path = tmp_path / "out.mp4"
    with VideoFileWriter(path, fps=12.5, codec=codec) as writer:
        for i in range(6):
            writer.write(_frame(i))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # no temporary left
    with VideoFileReader(path) as reader:
        assert len(reader) == 6
        assert reader.fps == pytest.approx(12.5)
        frames = list(reader)
    assert [_index_of(f) for f in frames] == list(range(6))
    for i, f in enumerate(frames):
        assert np.abs(f.astype(int) - _frame(i)).mean() < 6


def test_writer_odd_size_is_padded(tmp_path):
    path = tmp_path / "odd.mp4"
    with VideoFileWriter(path) as writer:
        for i in range(3):
            writer.write(_frame(i)[:47, :63])
    with VideoFileReader(path) as reader:
        assert reader.size == (48, 64)
        assert _index_of(reader.read(2)) == 2


def test_writer_is_atomic(tmp_path):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"previous")
    with pytest.raises(RuntimeError), VideoFileWriter(path) as writer:
        writer.write(_frame(0))
        raise RuntimeError("interrupted")
    assert path.read_bytes() == b"previous"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]
    with pytest.raises(ValueError, match="differs"), VideoFileWriter(path) as writer:
        writer.write(_frame(0))
        writer.write(_frame(0)[:40])
    assert path.read_bytes() == b"previous"


def test_writer_honours_the_umask(tmp_path):
    """The written video gets the mode the umask allows, as other outputs do (it kept
    the 0600 of its ``mkstemp`` temporary file)."""
    path = tmp_path / "overlay.mp4"
    old = os.umask(0o022)
    try:
        with VideoFileWriter(path) as writer:
            for i in range(2):
                writer.write(_frame(i))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_frame_over_the_pixel_limit_is_invalid_video(tmp_path, monkeypatch):
    """A frame of a folder over Pillow's decompression-bomb limit (lowered here) after
    the first is an InvalidVideo naming it, not a DecompressionBombError (no OSError)."""
    for i in range(3):
        Image.fromarray(_frame(i)).save(tmp_path / f"{i:05d}.png")
    source = FrameSource(tmp_path, keep=2, num_frames=None)  # reads frame 0
    try:
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", H * W // 4)  # over 2x: an error
        with pytest.raises(InvalidVideo, match=r"cannot read .*00001\.png.*exceeds limit"):
            source.rgb(1)
    finally:
        source.close()


# ----------------------------------------------------------------- video session
@pytest.fixture(scope="module")
def model():
    cfg = H2.tiny_video_config()
    with torch.device("meta"):
        template = samkit.build_model(cfg, device="meta")
    sam = samkit.build_model(cfg)
    sam.load_state_dict(H2.random_state_dict(template, seed=0))  # seed 0: non-empty masks
    return sam.eval()


def _run(model, source, direction: str, start: int, prompt_frame: int):
    with VideoPredictor(model).start(source) as session:
        assert session.num_frames == NUM
        square_x = 13.0 + 3 * prompt_frame  # the centre of the moving square
        session.add_prompt(prompt_frame, 1, points=[[square_x, 20.0]], labels=[1])
        session.add_prompt(prompt_frame, 2, box=[30.0, 30.0, 60.0, 46.0])
        return {r.frame_index: r for r in session.propagate(direction=direction, start=start)}


def test_session_on_a_video_file(model, clip):
    """A session reads an MP4 lazily and gives exactly what the same decoded frames give
    as an in-memory array; ``both`` from the middle needs random access (backward to 0,
    then forward from 8)."""
    direction, frame = "both", 7
    with VideoFileReader(clip) as reader:
        decoded = np.stack(list(reader))
    with torch.inference_mode():
        from_file = _run(model, clip, direction, frame, frame)
        from_array = _run(model, decoded, direction, frame, frame)
    assert sorted(from_file) == sorted(from_array) == list(range(NUM))
    assert any(m.any() for r in from_file.values() for m in r.masks.values())
    for f, ref in from_array.items():
        got = from_file[f]
        for obj in (1, 2):
            assert np.array_equal(got.masks[obj], ref.masks[obj]), f"frame {f} object {obj}"
            assert got.scores[obj] == ref.scores[obj]


def test_session_on_an_open_reader(model, clip):
    """An open reader (the CLI's, already demuxed to check the file) is used as is: the
    results equal those from the path, and closing the session leaves the reader open
    for its owner."""
    with torch.inference_mode():
        from_path = _run(model, clip, "forward", 0, 0)
        with VideoFileReader(clip) as reader:
            from_reader = _run(model, reader, "forward", 0, 0)
            assert reader.read(NUM - 1).shape == reader.read(0).shape  # still open
    assert sorted(from_reader) == sorted(from_path)
    for f, ref in from_path.items():
        for obj in (1, 2):
            assert np.array_equal(from_reader[f].masks[obj], ref.masks[obj])


def test_16_bit_frames_are_scaled_not_clipped(tmp_path):
    """16-bit PNG frames of a folder read as 8 bits (v / 257), not clipped to white."""
    frame = np.array([[0, 257, 25700], [32896, 51400, 65535]], np.uint16)
    for i in range(2):
        Image.fromarray(frame).save(tmp_path / f"{i:05d}.png")
    expected = np.repeat(np.array([[0, 1, 100], [128, 200, 255]], np.uint8)[..., None], 3, 2)
    source = FrameSource(tmp_path, keep=2, num_frames=None)
    try:
        np.testing.assert_array_equal(source.rgb(1), expected)
    finally:
        source.close()
    from samkit.video import load_frame

    tensor, size = load_frame(tmp_path / "00000.png", 4, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert size == (2, 3)
    assert 0.3 < float(tensor.mean()) < 0.6  # clipped frames would be almost all 1.0
