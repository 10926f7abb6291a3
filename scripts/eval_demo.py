"""Measure samkit-demo on a held-out synthetic set (the numbers of its model card).

    python scripts/eval_demo.py [--checkpoint PATH] [--n 200] [--seed 1000] [--json out.json]
        [--video-model]

Training used generator seed 1 (scripts/train_demo.sh); the held-out set uses another
seed, so no evaluation image was seen in training. Protocols (samkit.eval): single point
(top-scored and oracle mIoU), interactive (NoC@85/90, 20 clicks), tight-box mIoU, and
nested coverage (one click inside a subpart: which of subpart / part / whole some output
matches at IoU >= 0.8). The single-point result is also split by whether the click
lands inside a smaller object of the same image (a part or subpart: an ambiguous click,
where the three candidates should be subpart / part / whole and the IoU head must guess
which one was meant) or not.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import samkit
from samkit.data.synthetic import SyntheticDataset
from samkit.eval import box_prompt, interactive, nested_coverage, single_point
from samkit.eval.metrics import click_point_farthest_from_boundary
from samkit.eval.protocols import SinglePointResult
from samkit.eval.report import print_results, write_json


def ambiguity_split(result: SinglePointResult, data: SyntheticDataset) -> None:
    """Print top-scored / oracle mIoU for clicks inside a smaller object vs the rest."""
    # Each sample is generated on access: read every image's masks once.
    masks_of = {sample.image_id: np.asarray(sample.masks) for sample in data}
    inside = []
    for image_id, j in zip(result.image_ids, result.object_indices, strict=True):
        masks = masks_of[image_id]
        areas = masks.reshape(len(masks), -1).sum(axis=1)
        x, y = click_point_farthest_from_boundary(masks[j])
        inside.append(bool(np.any(masks[:, y, x] & (areas < areas[j]))))
    sel = np.asarray(inside, dtype=bool)
    for name, rows in (("click inside a smaller object", sel), ("other clicks", ~sel)):
        if rows.any():
            print(
                f"single point, {name}: {int(rows.sum())} objects, "
                f"top-scored {result.iou_top[rows].mean():.3f}, "
                f"oracle {result.iou_oracle[rows].mean():.3f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--video-model",
        action="store_true",
        help="evaluate a checkpoint of the demo video model's architecture "
        "(DEMO_VIDEO_CONFIG, e.g. from scripts/pretrain_demo_video.py) on its image path",
    )
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args.video_model:
        from samkit.configs.registry import DEMO_VIDEO_CONFIG

        model = samkit.load_model(DEMO_VIDEO_CONFIG, checkpoint=args.checkpoint)
    else:
        model = samkit.load_model("samkit-demo", checkpoint=args.checkpoint)
    predictor = samkit.ImagePredictor(model)
    data = SyntheticDataset(args.n, seed=args.seed)
    t0 = time.perf_counter()
    point = single_point(predictor, data)
    results = [
        point,
        interactive(predictor, data, max_clicks=20),
        box_prompt(predictor, data),
        nested_coverage(predictor, data, threshold=0.8),
    ]
    print_results(results)
    ambiguity_split(point, data)
    print(f"{args.n} images, seed {args.seed}, {time.perf_counter() - t0:.0f} s")
    if args.json is not None:
        write_json(args.json, results, meta={"n": args.n, "seed": args.seed})
        print(json.dumps([r.summary() for r in results], indent=1))


if __name__ == "__main__":
    main()
