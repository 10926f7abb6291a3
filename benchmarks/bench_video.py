"""Video propagation speed (and streaming memory): samkit ``VideoSession`` vs the official
``SAM2VideoPredictor``.

Both sides get the same random weights and the same synthetic JPEG clip (coloured
squares moving over noise), one click per object on frame 0; the script times the
propagation through the clip and prints frames/s for each side and the samkit/official
ratio (>1 means samkit is faster). Run on demand:

    python benchmarks/bench_video.py                          # sam2.1-hiera-tiny, 24 frames
    python benchmarks/bench_video.py --objects 3 --frames 48 --size 480,640
    python benchmarks/bench_video.py --model reduced --frames 6   # quick smoke run
    python benchmarks/bench_video.py --frames 8 --repeat 3        # median of 3 per side
    python benchmarks/bench_video.py --peak-memory --frames 1000  # RSS while streaming
    python benchmarks/bench_video.py --bf16            # samkit in bf16 as well
    python benchmarks/bench_video.py --device cuda --frames 200 --objects 3

``--bf16`` adds a row with samkit's image encoder and memory attention in bf16
(``load_model(dtype=torch.bfloat16)``) against the same official fp32 run. ``--compile``
compiles samkit's models (:func:`samkit.compile_model`: image encoder, memory attention,
memory encoder) and runs each once over the clip, untimed, before the timed runs. ``--device cuda`` runs both sides
on the GPU (the official predictor with its default settings there).

``--peak-memory`` runs each side in a fresh subprocess and prints the resident set size
after frame 100 and at the end: samkit streams a generator with ``keep_results=False``;
the official predictor (``--official-memory``, needs the clip written to disk) loads
every frame up front from the folder and keeps every output.

Needs the test extras (``pip install -c constraints.txt -e ".[test]"``); the official
package is imported through the test suite's shims. The official hole filling needs a
CUDA extension: on the CPU it is replaced by the test suite's SciPy version, so both
sides do the same work.
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import helpers_sam2  # noqa: E402
import test_sam2_tracking_parity as tp  # noqa: E402

import samkit  # noqa: E402
from samkit.build import set_inference_dtype  # noqa: E402
from samkit.video import VideoPredictor  # noqa: E402

SAM2 = [n for n in samkit.list_models() if n.startswith("sam2")]
COLORS = [(230, 40, 40), (40, 200, 60), (50, 80, 230)]


def _config(name: str):
    if name == "reduced":
        return helpers_sam2.reduced_config("2.1", 256)
    return samkit.get_preset(name).config


def _squares(t: int, size: tuple[int, int], objects: int) -> list[tuple[int, int, int]]:
    """(top, left, side) of each object's square on frame ``t``."""
    h, w = size
    side = max(8, min(h, w) // 6)
    out = []
    for k in range(objects):
        top = (h // 4) + k * (h // 4) - side // 2
        span = max(1, w - side - 8)
        left = 4 + (3 * t + k * span // 3) % span
        out.append((max(0, min(top, h - side)), left, side))
    return out


def _frame(t: int, size: tuple[int, int], objects: int, rng) -> np.ndarray:
    img = (rng.integers(0, 256, (*size, 3), dtype=np.uint8) * 0.5 + 60).astype(np.uint8)
    for k, (top, left, side) in enumerate(_squares(t, size, objects)):
        img[top : top + side, left : left + side] = COLORS[k]
    return img


def _frames(n: int, size: tuple[int, int], objects: int):
    rng = np.random.default_rng(0)
    for t in range(n):
        yield _frame(t, size, objects, rng)


def _write_clip(folder: Path, n: int, size: tuple[int, int], objects: int) -> None:
    for t, img in enumerate(_frames(n, size, objects)):
        Image.fromarray(img).save(folder / f"{t:05d}.jpg", quality=90)


def _clicks(size: tuple[int, int], objects: int) -> list[list[float]]:
    return [[left + side / 2, top + side / 2] for top, left, side in _squares(0, size, objects)]


def _models(name: str):
    cfg = _config(name)
    official = helpers_sam2.official_sam2_video(cfg)
    state = helpers_sam2.random_state_dict(official, seed=0)
    official.load_state_dict(state, strict=True)
    ours = samkit.build_model(cfg)
    ours.load_state_dict(state, strict=True)
    return official.eval(), ours.eval(), cfg


class _OfficialHoles:
    """Run the official predictor with the test suite's CPU hole filling."""

    def __enter__(self):
        self._saved = tp._misc.get_connected_components
        tp._misc.get_connected_components = tp._connected_components
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        tp._misc.get_connected_components = self._saved
        self._warnings.__exit__(*exc)


def _time_official(official, folder: Path, clicks) -> tuple[float, int]:
    with _OfficialHoles(), torch.inference_mode():
        state = official.init_state(video_path=str(folder))
        for k, click in enumerate(clicks):
            official.add_new_points_or_box(state, 0, k + 1, points=[click], labels=[1])
        start, count = time.perf_counter(), 0
        for _ in official.propagate_in_video(state):
            count += 1
        return time.perf_counter() - start, count


def _time_samkit(ours, folder: Path, clicks) -> tuple[float, int]:
    session = VideoPredictor(ours).start(folder)
    for k, click in enumerate(clicks):
        session.add_prompt(0, k + 1, points=[click], labels=[1])
    start, count = time.perf_counter(), 0
    for _ in session.propagate():
        count += 1
    elapsed = time.perf_counter() - start
    session.close()
    return elapsed, count


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def _memory_side(args, size) -> None:
    """One side of ``--peak-memory``, in its own process: prints one line."""
    official, ours, _ = _models(args.model)
    clicks = _clicks(size, args.objects)
    at = min(100, args.frames - 1)
    marks = {}
    start = time.perf_counter()
    if args.side == "samkit":
        del official
        session = VideoPredictor(ours).start(
            _frames(args.frames, size, args.objects), keep_results=False
        )
        for k, click in enumerate(clicks):
            session.add_prompt(0, k + 1, points=[click], labels=[1])
        for r in session.propagate():
            if r.frame_index == at:
                marks["at"] = _rss_mib()
    else:
        del ours
        with tempfile.TemporaryDirectory() as tmp, _OfficialHoles(), torch.inference_mode():
            _write_clip(Path(tmp), args.frames, size, args.objects)
            state = official.init_state(video_path=tmp)
            for k, click in enumerate(clicks):
                official.add_new_points_or_box(state, 0, k + 1, points=[click], labels=[1])
            for f, _, _ in official.propagate_in_video(state):
                if f == at:
                    marks["at"] = _rss_mib()
    end = _rss_mib()
    fps = args.frames / (time.perf_counter() - start)
    print(
        f"{args.side:8s} RSS after frame {at}: {marks['at']:8.1f} MiB   at the end "
        f"(frame {args.frames - 1}): {end:8.1f} MiB   growth {end - marks['at']:+7.1f} MiB"
        f"   ({fps:.1f} frames/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sam2.1-hiera-tiny", choices=SAM2 + ["reduced"])
    parser.add_argument("--frames", type=int, default=None, help="24 (1000 for --peak-memory)")
    parser.add_argument("--objects", type=int, default=1, choices=(1, 3))
    parser.add_argument("--size", default="480,640", help="video H,W (default 480,640)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--repeat", type=int, default=1, help="runs per side (median)")
    parser.add_argument("--peak-memory", action="store_true")
    parser.add_argument("--official-memory", action="store_true", help="with --peak-memory")
    parser.add_argument("--bf16", action="store_true", help="also samkit in bf16")
    parser.add_argument("--compile", action="store_true", help="samkit compiled (warm-up run)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 (both sides)")
    parser.add_argument("--side", choices=("samkit", "official"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split(","))
    if args.frames is None:
        args.frames = 1000 if args.peak_memory else 24
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    if args.side:
        _memory_side(args, size)
        return
    if args.peak_memory:
        print(
            f"model {args.model}, {args.frames} frames {size[0]}x{size[1]}, "
            f"{args.objects} object(s), torch {torch.__version__}",
            flush=True,
        )
        sides = ["samkit"] + (["official"] if args.official_memory else [])
        for side in sides:
            cmd = [sys.executable, __file__, "--side", side, "--model", args.model]
            cmd += ["--frames", str(args.frames), "--objects", str(args.objects)]
            cmd += ["--size", args.size] + (["--threads", str(args.threads)] * bool(args.threads))
            subprocess.run(cmd, check=True)
        return

    official, ours, cfg = _models(args.model)
    device = torch.device(args.device)
    official.to(device)
    ours.to(device)
    ours_bf16 = None
    if args.bf16:
        ours_bf16 = set_inference_dtype(copy.deepcopy(ours), torch.bfloat16)
    clicks = _clicks(size, args.objects)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _write_clip(folder, args.frames, size, args.objects)
        if args.compile:
            for model in (ours, ours_bf16):
                if model is not None:
                    samkit.compile_model(model)
                    _time_samkit(model, folder, clicks)  # compiles; every shape seen once
        # Alternate the sides and keep the median of each: single runs on a shared
        # host vary by +-20%.
        ref_fps, our_fps, bf16_fps = [], [], []
        for _ in range(args.repeat):
            t_ref, n_ref = _time_official(official, folder, clicks)
            t_our, n_our = _time_samkit(ours, folder, clicks)
            assert n_ref == n_our == args.frames, (n_ref, n_our)
            ref_fps.append(n_ref / t_ref)
            our_fps.append(n_our / t_our)
            if ours_bf16 is not None:
                t_bf, n_bf = _time_samkit(ours_bf16, folder, clicks)
                bf16_fps.append(n_bf / t_bf)
    fps_ref, fps_our = float(np.median(ref_fps)), float(np.median(our_fps))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"model {args.model} (image {cfg.image_size}), {args.frames} frames "
        f"{size[0]}x{size[1]}, {args.objects} object(s), torch {torch.__version__}, "
        f"{where}, {torch.get_num_threads()} threads, median of {args.repeat} run(s) per side"
    )
    print(f"{'measure':40s} {'official':>10s} {'samkit':>10s} {'ratio':>7s}")
    compiled = ", samkit compiled" if args.compile else ""
    print(
        f"{'propagation (frames/s)' + compiled:40s} {fps_ref:10.2f} {fps_our:10.2f} {fps_our / fps_ref:6.2f}x"
    )
    if bf16_fps:
        fps_bf = float(np.median(bf16_fps))
        name = "propagation, samkit bf16" + (" compiled" if args.compile else "")
        print(f"{name:40s} {fps_ref:10.2f} {fps_bf:10.2f} {fps_bf / fps_ref:6.2f}x")


if __name__ == "__main__":
    main()
