"""Streaming memory: resident memory stays flat over 2,000 frames with ``keep_results=False``.

A very small SAM 2.1 (the tiny streaming model of ``test_video_session`` made smaller
still: 32-pixel input, Hiera width 8, transformer width 64) tracks one object, prompted
on frame 0, through 2,000 synthetic 64x64 frames that a generator creates on the fly
(a red square moving over a grey background). The process's resident set size
(``VmRSS`` from ``/proc/self/status``, so Linux only) is read after frame 200, when
every memory window is full, and after the last frame; it must grow by less than
``MAX_RSS_GROWTH_MIB``. The session's counts of stored memories, cached features and
buffered frames must stay bounded and be the same at frame 200 and at the end.

Sizing: on a loaded 2-core machine one frame takes about 20 ms with one thread (per-op
dispatch and per-module Python overhead dominate, so a smaller model barely helps), i.e.
about 40 s for the 2,000 frames (less on an idle machine). The measured RSS growth between frame 200 and frame
2,000 is well under 1 MiB; keeping every frame's results instead (the video-resolution
float logits, 16 KiB a frame here) or every frame would grow it by about 20-30 MiB.
"""

from __future__ import annotations

import dataclasses
import gc
import sys
from pathlib import Path

import numpy as np
import pytest
import test_video_session as tvs
import torch

import samkit
from samkit.video import VideoPredictor

NUM_FRAMES = 2000
WARM_FRAME = 200  # every memory / pointer window is full by then
FRAME_SIZE = 64
MAX_CACHED_FRAMES = 2
MAX_RSS_GROWTH_MIB = 8.0  # measured: < 1 MiB; a per-frame leak of results is ~20-30 MiB


def _rss_mib() -> float:
    """Resident set size of this process in MiB (``VmRSS``, Linux ``/proc``)."""
    status = Path("/proc/self/status")
    if not sys.platform.startswith("linux") or not status.exists():
        raise RuntimeError("the streaming memory test reads /proc/self/status (Linux only)")
    for line in status.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmRSS line in /proc/self/status")


def _smallest_model() -> samkit.Sam2:
    """``test_video_session``'s tiny streaming model at a 32-pixel input, Hiera width 8,
    and width 64 for the neck, memory attention, prompt encoder and mask decoder (the
    memory and pointer windows keep their official sizes)."""
    cfg = tvs._tiny_model().config
    size, width = 32, 64
    emb = size // cfg.backbone_stride
    cfg = dataclasses.replace(
        cfg,
        image_size=size,
        encoder=dataclasses.replace(cfg.encoder, embed_dim=8),
        neck=dataclasses.replace(cfg.neck, d_model=width),
        memory=dataclasses.replace(
            cfg.memory,
            d_model=width,
            mem_dim=width,
            dim_feedforward=width,
            fuser_layers=1,
            feat_sizes=(emb, emb),
        ),
        prompt_encoder=dataclasses.replace(
            cfg.prompt_encoder,
            embed_dim=width,
            image_embedding_size=emb,
            input_image_size=size,
        ),
        mask_decoder=dataclasses.replace(
            cfg.mask_decoder,
            transformer_dim=width,
            transformer_heads=2,
            transformer_mlp_dim=width,
            iou_head_hidden_dim=width,
        ),
    )
    torch.manual_seed(0)
    return samkit.build_model(cfg).eval()


def _frames(n: int):
    """``n`` 64x64 RGB frames made on the fly: a 20-pixel red square moving right."""
    for t in range(n):
        img = np.full((FRAME_SIZE, FRAME_SIZE, 3), 40, dtype=np.uint8)
        x = 4 + (3 * t) % 40
        img[20:40, x : x + 20] = (230, 40, 40)
        yield img


def _counts(session) -> dict[str, int]:
    track = session.objects[1]
    return {
        "memories": session.stored_memory_frames,
        "spatial": session.stored_spatial_memory_frames,
        "features": session.cached_feature_frames,
        "frames": session.buffered_frames,
        "tracked": len(track.tracked),
        "non_cond": len(track.non_cond),
    }


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_streaming_resident_memory_is_flat(one_thread):
    model = _smallest_model()
    session = VideoPredictor(model).start(
        _frames(NUM_FRAMES), keep_results=False, max_cached_frames=MAX_CACHED_FRAMES
    )
    session.add_prompt(0, 1, points=[[14.0, 30.0]], labels=[1])
    num_ptrs = model.config.max_obj_ptrs_in_encoder
    limits = {
        "memories": 1 + num_ptrs,  # the conditioning memory + the pointer window
        "spatial": 1 + model.num_maskmem + 1,
        "features": MAX_CACHED_FRAMES,
        "frames": MAX_CACHED_FRAMES,
        "tracked": num_ptrs,
        "non_cond": num_ptrs,
    }
    peak = dict.fromkeys(limits, 0)
    count, rss_warm, counts_warm = 0, None, None
    for result in session.propagate():
        count += 1
        now = _counts(session)
        peak = {k: max(peak[k], now[k]) for k in peak}
        if result.frame_index == WARM_FRAME:
            gc.collect()
            rss_warm, counts_warm = _rss_mib(), now
    assert count == NUM_FRAMES and session.num_frames == NUM_FRAMES
    gc.collect()
    rss_end = _rss_mib()
    counts_end = _counts(session)
    growth = rss_end - rss_warm
    assert growth < MAX_RSS_GROWTH_MIB, (
        f"RSS grew by {growth:.1f} MiB between frame {WARM_FRAME} ({rss_warm:.1f} MiB) "
        f"and frame {NUM_FRAMES} ({rss_end:.1f} MiB)"
    )
    for key, limit in limits.items():
        assert peak[key] <= limit, f"{key}: peak {peak[key]} > {limit}"
    assert counts_end == counts_warm  # a steady state, not a slow climb
    session.close()
