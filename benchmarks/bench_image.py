"""Image encoder and prompt-to-mask latency: samkit vs the official implementation.

Both sides get the same random weights and the same image in one run; the script prints
medians and the official/samkit ratio (>1 means samkit is faster). Run on demand:

    python benchmarks/bench_image.py --model sam-vit-b --repeats 3
    python benchmarks/bench_image.py --model mobile-sam
    python benchmarks/bench_image.py --model sam2.1-hiera-tiny   # vs the official sam2
    python benchmarks/bench_image.py --model sam2.1-hiera-base-plus --device cuda \
        --throughput 8                                          # GPU: encoder images/s

``--device cuda`` runs both sides on the GPU and synchronises it around every timed call.
``--throughput B`` adds encoder throughput rows: images/s of the image encoder alone
(the official ``image_encoder`` / SAM 2 ``forward_image``, samkit's ``embed_image``) on
batches of B preprocessed images, in fp32 and in bf16 (samkit's bf16 weights against the
official code under ``torch.autocast``, the way its own demos run bf16 on a GPU).
``--compile`` adds rows for samkit with :func:`samkit.compile_model` (image encoder under
``torch.compile``; compilation happens in untimed warm-up calls) against the same eager
official runs.

Needs the test extras (``pip install -c constraints.txt -e ".[test]"``); the official
packages are imported through the test suite's torchvision/timm shims.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import reference_shims  # noqa: E402

import samkit  # noqa: E402
from samkit.build import set_inference_dtype  # noqa: E402

OFFICIAL = {"sam-vit-b": "vit_b", "sam-vit-l": "vit_l", "sam-vit-h": "vit_h", "mobile-sam": "vit_t"}


SAM2 = [n for n in samkit.list_models() if n.startswith("sam2")]


class _OfficialSam2:
    """The official SAM2ImagePredictor behind SamPredictor-like calls."""

    def __init__(self, name: str) -> None:
        import helpers_sam2

        cfg = samkit.get_preset(name).config
        self.model = helpers_sam2.official_sam2(cfg)
        self.model.load_state_dict(helpers_sam2.random_state_dict(self.model, seed=0))
        self.predictor = helpers_sam2.official_image_predictor(self.model, cfg.image_size)

    def set_image(self, image: np.ndarray) -> None:
        self.predictor.set_image(image)

    def predict(self, point, label, multimask_output=True):
        return self.predictor.predict(
            point_coords=point, point_labels=label, multimask_output=multimask_output
        )


def _official(name: str):
    if name in SAM2:
        ref = _OfficialSam2(name)
        return None, ref
    if name == "mobile-sam":
        pkg = reference_shims.import_mobile_sam()
    else:
        pkg = reference_shims.import_segment_anything()
    return pkg, pkg.sam_model_registry[OFFICIAL[name]]().eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn, repeats: int, warmup: int = 1, device: torch.device | None = None) -> float:
    device = device or torch.device("cpu")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _throughput_rows(ref, ours, bf, sam2: bool, args, device: torch.device) -> list:
    """Encoder images/s rows: (name, official, samkit, samkit/official)."""
    official = ref.model if sam2 else ref
    size = ours.image_size
    x = torch.randn(args.throughput, 3, size, size, device=device)
    ref_fn = official.forward_image if sam2 else official.image_encoder

    def rate(fn) -> float:
        ms = _median_ms(fn, args.repeats, warmup=2, device=device)
        return args.throughput / (ms / 1000)

    rows = []
    ref_fp32 = rate(lambda: ref_fn(x))
    our_fp32 = rate(lambda: ours.embed_image(x))
    rows.append((f"encoder images/s fp32 (batch {args.throughput})", ref_fp32, our_fp32))
    if bf is not None:

        def ref_bf16():
            with torch.autocast(device.type, dtype=torch.bfloat16):
                return ref_fn(x)

        rows.append(
            (
                f"encoder images/s bf16 (batch {args.throughput})",
                rate(ref_bf16),
                rate(lambda: bf.embed_image(x)),
            )
        )
    return [(name, a, b, b / a) for name, a, b in rows]


def _compiled_rows(args, state, device, image, official, with_bf16: bool) -> list:
    """``set_image`` (and with ``--throughput`` encoder images/s) of samkit compiled
    (:func:`samkit.compile_model`), fp32 and bf16, against the eager official fp32."""
    t_ref, ref, sam2 = official
    rows = []
    for dtype in (torch.float32, torch.bfloat16) if with_bf16 else (torch.float32,):
        model = samkit.build_model(args.model)
        model.load_state_dict(state)
        set_inference_dtype(model.to(device), dtype)
        samkit.compile_model(model)
        pred = samkit.ImagePredictor(model)
        tag = "fp32" if dtype == torch.float32 else "bf16"
        t = _median_ms(lambda p=pred: p.set_image(image), args.repeats, 2, device)
        rows.append((f"set_image compiled {tag} vs official fp32 (ms)", t_ref, t, t_ref / t))
        if args.throughput:
            thr = _throughput_rows(ref, model, None, sam2, args, device)[0]
            rows.append((thr[0].replace("fp32", f"compiled {tag}"), *thr[1:]))
    return rows


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sam-vit-b", choices=sorted(OFFICIAL) + SAM2)
    parser.add_argument("--repeats", type=int, default=3, help="encoder repeats")
    parser.add_argument("--prompt-repeats", type=int, default=30)
    parser.add_argument("--no-bf16", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 (both sides)")
    parser.add_argument(
        "--throughput", type=int, default=0, metavar="B", help="encoder images/s, batch B"
    )
    parser.add_argument("--compile", action="store_true", help="also samkit compiled")
    args = parser.parse_args()
    device = torch.device(args.device)

    torch.manual_seed(0)
    pkg, ref = _official(args.model)
    sam2 = pkg is None
    state = (ref.model if sam2 else ref).state_dict()
    ours = samkit.build_model(args.model)
    ours.load_state_dict(state)
    (ref.model if sam2 else ref).to(device)
    ours.to(device)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(768, 1024, 3), dtype=np.uint8)  # H x W
    point, label = np.array([[500.0, 375.0]]), np.array([1])

    ref_pred = ref if sam2 else pkg.SamPredictor(ref)
    our_pred = samkit.ImagePredictor(ours)
    rows = []
    bf = None
    with torch.inference_mode():
        t_ref = _median_ms(lambda: ref_pred.set_image(image), args.repeats, device=device)
        t_our = _median_ms(lambda: our_pred.set_image(image), args.repeats, device=device)
        rows.append(("set_image fp32 (ms)", t_ref, t_our, t_ref / t_our))
        p_ref = _median_ms(
            lambda: ref_pred.predict(point, label, multimask_output=True),
            args.prompt_repeats,
            3,
            device,
        )
        p_our = _median_ms(
            lambda: our_pred.predict(points=point, labels=label), args.prompt_repeats, 3, device
        )
        rows.append(("prompt-to-mask (ms)", p_ref, p_our, p_ref / p_our))
        fp32 = our_pred.predict(points=point, labels=label)
        if not args.no_bf16:
            bf = samkit.build_model(args.model)
            bf.load_state_dict(state)
            set_inference_dtype(bf.to(device), torch.bfloat16)
            bf_pred = samkit.ImagePredictor(bf)
            t_bf = _median_ms(lambda: bf_pred.set_image(image), args.repeats, device=device)
            rows.append(("set_image bf16 vs official fp32 (ms)", t_ref, t_bf, t_ref / t_bf))
            p_bf = _median_ms(
                lambda: bf_pred.predict(points=point, labels=label),
                args.prompt_repeats,
                3,
                device,
            )
            rows.append(("prompt-to-mask bf16 vs official fp32 (ms)", p_ref, p_bf, p_ref / p_bf))
            low = bf_pred.predict(points=point, labels=label)
            ious = [_iou(a, b) for a, b in zip(fp32.masks, low.masks, strict=True)]
        if args.throughput:
            rows += _throughput_rows(ref, ours, bf, sam2, args, device)
        if args.compile:
            rows += _compiled_rows(args, state, device, image, (t_ref, ref, sam2), bf is not None)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"model {args.model}, image 1024x768, torch {torch.__version__}, {where}, "
        f"{torch.get_num_threads()} threads"
    )
    print("ratio: how many times faster samkit is (official/samkit for ms, samkit/official")
    print("for images/s)")
    print(f"{'measure':40s} {'official':>10s} {'samkit':>10s} {'ratio':>7s}")
    for name, a, b, ratio in rows:
        print(f"{name:40s} {a:10.1f} {b:10.1f} {ratio:6.2f}x")
    if not args.no_bf16:
        print("bf16 vs fp32 mask IoU (random weights): " + ", ".join(f"{v:.4f}" for v in ious))


if __name__ == "__main__":
    main()
