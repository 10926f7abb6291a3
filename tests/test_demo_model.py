"""End-to-end: the bundled ``samkit-demo`` weights load offline and segment.

The model card (``docs/model_card_samkit_demo.md``) reports the demo model on 40 held-out
images (generator seed 1000, 400 objects): single-point mIoU 0.427 (top-scored) and
0.772 (oracle), box mIoU 0.801, mIoU 0.427 -> 0.830 from 1 to 5 interactive clicks.
These are *below* the acceptance levels of issue 3 (oracle >= 0.85, top >= 0.75,
NoC@90 <= 3, nested levels covered): the shipped model is under-trained and the issue
stays open. This test therefore guards the shipped weights with regression floors set
about 0.07 under the values measured on a smaller, different held-out sample (12
images, seed 2024: oracle 0.773, top 0.382, box 0.805, 0.349 -> 0.828 from 1 to 5
clicks) and checks the properties that hold already: prompts are localised (box far
better than the empty mask), more clicks help, all three multimask outputs are used (an
earlier model had one collapsed), and the weights are the registered, bundled file.
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np
import pytest

import samkit
from samkit.data.synthetic import SyntheticDataset
from samkit.eval import box_prompt, interactive, single_point
from samkit.weights import bundled_path


@functools.cache
def predictor() -> samkit.ImagePredictor:
    return samkit.ImagePredictor(samkit.load_model("samkit-demo"))


@functools.cache
def held_out() -> SyntheticDataset:
    return SyntheticDataset(12, seed=2024)


def test_bundled_weights_match_the_registry() -> None:
    spec = samkit.get_preset("samkit-demo").weights
    path = bundled_path(spec)
    assert path is not None and path.is_file(), "samkit-demo weights are not bundled"
    data = path.read_bytes()
    assert len(data) == spec.size and len(data) <= 20 * 2**20
    assert hashlib.sha256(data).hexdigest() == spec.sha256
    model = samkit.load_model("demo")  # alias, no download, no checkpoint argument
    assert model.name == "samkit-demo" and model.image_size == 256


def test_single_point_and_box_floors() -> None:
    point = single_point(predictor(), held_out())
    assert point.count >= 80
    assert point.miou_oracle >= 0.70, point.summary()
    assert point.miou_top >= 0.33, point.summary()
    box = box_prompt(predictor(), held_out())
    assert box.miou >= 0.73, box.summary()


def test_more_clicks_help() -> None:
    result = interactive(predictor(), held_out(), max_clicks=5, max_objects=3)
    assert result.count >= 30
    assert result.miou_per_click[4] >= result.miou_per_click[0] + 0.3, result.summary()


def test_all_three_outputs_are_used() -> None:
    """Each multimask output is the best of the three for a fair share of single clicks
    (measured 42 / 46 / 41 of 129). The first demo model's output 2 had collapsed to the
    whole image and won about 1 % of clicks; the best-of-three loss never revives such
    an output on its own (see the model card)."""
    from samkit.eval.metrics import click_point_farthest_from_boundary, iou

    pred = predictor()
    wins = np.zeros(3, dtype=int)
    for sample in held_out():
        pred.set_image(sample.image)
        for gt in sample.masks:
            if not gt.any():
                continue
            x, y = click_point_farthest_from_boundary(gt)
            out = pred.predict(points=[[x, y]], labels=[1])
            wins[int(np.argmax([iou(m, gt) for m in out.masks]))] += 1
    assert wins.sum() >= 80
    assert (wins >= 0.15 * wins.sum()).all(), wins


def test_prompt_location_matters() -> None:
    """Two clicks on two different objects give different masks, each mostly inside
    its own object (the model is not a saliency map)."""
    sample = held_out()[0]
    wholes = [i for i, level in enumerate(sample.levels) if level == 0][:2]
    pred = predictor()
    pred.set_image(sample.image)
    from samkit.eval.metrics import click_point_farthest_from_boundary, iou

    masks = []
    for i in wholes:
        x, y = click_point_farthest_from_boundary(sample.masks[i])
        out = pred.predict(points=[[x, y]], labels=[1])
        masks.append(out.masks[int(np.argmax([iou(m, sample.masks[i]) for m in out.masks]))])
    assert iou(masks[0], masks[1]) < 0.2
    for m, i in zip(masks, wholes, strict=True):
        assert (m & sample.masks[i]).sum() > 0.5 * m.sum()


@pytest.mark.parametrize("name", ["samkit-demo", "demo"])
def test_demo_model_runs_a_prompt(name: str) -> None:
    sample = held_out()[0]
    pred = samkit.ImagePredictor(samkit.load_model(name))
    pred.set_image(sample.image)
    out = pred.predict(box=[10, 10, 200, 200], multimask=False)
    assert out.masks.shape == (1, *sample.image.shape[:2])
