"""Upper bounds of the single-point top-scored mIoU on the synthetic held-out set.

    python scripts/demo_ceiling.py [--n 40] [--seed 1000]

No model is involved: the script asks how well a *perfect* segmenter could do under the
single-point protocol (one click at the point farthest from the object's boundary,
``samkit.eval.single_point``) when it must return one mask per click. On this generator
children sit near their parent's middle, so the click of a whole or a part usually lands
inside a smaller object: subpart, part and whole all contain it and the protocol scores
only the one that was meant.

For every object the objects containing its click form a stack (1 to 3 deep, sorted by
area). A segmenter that sees the image and the click can at best return exactly one
object of the stack; the script prints, per stack depth, the mean IoU with the meant
object of always returning the smallest / middle / largest one, and the best fixed
choice per depth: the ceiling of any model whose choice of level depends on the
stack, not on which object the evaluator had in mind. (A model could beat it only by
reading the exact click position, e.g. learning that the farthest-from-boundary point of
a whole is a few pixels from its part's; the script also prints that bound for clicks
that coincide exactly or lie within 2 pixels, where the best shared answer is taken
over the image's objects.)
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from samkit.data.synthetic import SyntheticDataset
from samkit.eval.metrics import click_point_farthest_from_boundary


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _shared_answer(masks: np.ndarray, clicks: list[tuple[int, int]], radius: int) -> list[float]:
    """Per object: the best mean IoU one answer can give all objects whose clicks are
    within ``radius`` pixels of each other (chained), the answer taken among the image's
    object masks."""
    n = len(masks)
    group = list(range(n))

    def root(i: int) -> int:
        while group[i] != i:
            i = group[i]
        return i

    for a in range(n):
        for b in range(a + 1, n):
            (xa, ya), (xb, yb) = clicks[a], clicks[b]
            if max(abs(xa - xb), abs(ya - yb)) <= radius:
                group[root(a)] = root(b)
    members = defaultdict(list)
    for i in range(n):
        members[root(i)].append(i)
    out = [0.0] * n
    for objs in members.values():
        best = max(sum(_iou(masks[c], masks[o]) for o in objs) for c in range(n)) / len(objs)
        for o in objs:
            out[o] = best
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()
    by_depth: dict[int, list[list[float]]] = defaultdict(list)
    shared = {0: [], 2: []}
    for sample in SyntheticDataset(args.n, seed=args.seed):
        masks = np.asarray(sample.masks)
        areas = masks.reshape(len(masks), -1).sum(axis=1)
        clicks = [click_point_farthest_from_boundary(m) for m in masks]
        for j, (x, y) in enumerate(clicks):
            stack = sorted(np.flatnonzero(masks[:, y, x]), key=lambda i: areas[i])
            by_depth[len(stack)].append([_iou(masks[i], masks[j]) for i in stack])
        for radius, out in shared.items():
            out.extend(_shared_answer(masks, clicks, radius))
    total = count = 0.0
    for depth in sorted(by_depth):
        rows = np.asarray(by_depth[depth])
        means = rows.mean(axis=0)
        levels = " / ".join(f"{m:.3f}" for m in means)
        print(f"stack depth {depth}: {len(rows)} clicks, IoU of smallest .. largest {levels}")
        total += rows[:, means.argmax()].sum()
        count += len(rows)
    print(
        f"ceiling, best level per stack depth with perfect masks: {total / count:.3f} "
        f"({int(count)} objects, {args.n} images, seed {args.seed})"
    )
    for radius, out in shared.items():
        print(f"bound when clicks within {radius} px must share one answer: {np.mean(out):.3f}")


if __name__ == "__main__":
    main()
