"""``MaskGenerator`` vs the official ``SamAutomaticMaskGenerator`` on the trained demo model.

The bundled ``samkit-demo`` weights are loaded into samkit and into the official classes
(assembled with the demo's numbers), and both generators run on synthetic scenes. Unlike
random weights, the trained model produces localised masks that depend on the clicked
point, so box NMS at the default 0.7 within and across crops, the crop-edge filter and
the small-region cleanup all act on real, overlapping candidates. The demo model is
under-trained (see its model card): its predicted IoUs stay below 0.6 and its logits are
small, so at the default thresholds (0.88 / 0.95 with offset 1.0) no mask survives; the
tests use ``pred_iou_thresh`` 0.1, ``stability_score_thresh`` 0.6 with offset 0.25, which
keep about a hundred masks per scene. Acceptance (issue 4): mask counts within 1% and a
one-to-one match at mask IoU >= 0.99 with equal record fields.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers_sam import official_sam_from_config
from test_amg_parity import assert_same_records, official_generator

import samkit
from samkit.amg import MaskGenerator
from samkit.data.synthetic import SyntheticConfig, SyntheticDataset, generate_sample


@functools.cache
def demo_pair():
    ours = samkit.load_model("samkit-demo")
    official = official_sam_from_config(samkit.get_preset("samkit-demo").config)
    official.load_state_dict(ours.state_dict(), strict=True)
    return official.eval(), ours


def scene(h: int, w: int, seed: int) -> np.ndarray:
    cfg = SyntheticConfig(size=(h, w), objects=(4, 6), scale=(0.2, 0.5))
    return generate_sample(np.random.default_rng([seed, 99]), cfg, "scene").image


DEMO_THRESHOLDS = {
    "pred_iou_thresh": 0.1,
    "stability_score_thresh": 0.6,
    "stability_score_offset": 0.25,
}


@pytest.mark.parametrize(("h", "w", "seed"), [(256, 256, 0), (300, 200, 2)])
def test_demo_amg_matches_official(h: int, w: int, seed: int) -> None:
    official, ours = demo_pair()
    image = scene(h, w, seed)
    kwargs = dict(points_per_side=12, **DEMO_THRESHOLDS)
    ref = official_generator(official, **kwargs).generate(image)
    got = MaskGenerator(ours, **kwargs).generate(image)
    assert_same_records(got, ref, min_masks=5)


def test_demo_amg_matches_official_with_crops_and_small_regions() -> None:
    official, ours = demo_pair()
    image = scene(256, 320, 3)
    kwargs = dict(
        points_per_side=8,
        crop_n_layers=1,
        crop_n_points_downscale_factor=1,
        min_mask_region_area=30,
        output_mode="coco_rle",
        **DEMO_THRESHOLDS,
    )
    ref = official_generator(official, **kwargs).generate(image)
    got = MaskGenerator(ours, **kwargs).generate(image)
    full = [0, 0, 320, 256]
    assert any(list(r["crop_box"]) != full for r in ref), "no mask from a zoomed crop kept"
    assert_same_records(got, ref, min_masks=5)


def test_generator_defaults_come_from_the_preset() -> None:
    """A preset may carry generator thresholds calibrated for its weights (the demo
    model does); official presets keep their families' official values."""
    from samkit.amg import generator_defaults

    demo = samkit.get_preset("samkit-demo").amg
    assert demo is not None
    _, ours = demo_pair()
    gen = MaskGenerator(ours)
    assert generator_defaults(ours) == demo
    assert (gen.pred_iou_thresh, gen.stability_score_thresh) == (
        demo.pred_iou_thresh,
        demo.stability_score_thresh,
    )
    assert gen.stability_score_offset == demo.stability_score_offset
    explicit = MaskGenerator(ours, pred_iou_thresh=0.2, stability_score_offset=2.0)
    assert (explicit.pred_iou_thresh, explicit.stability_score_offset) == (0.2, 2.0)
    assert explicit.stability_score_thresh == demo.stability_score_thresh
    official = (("sam-vit-b", "sam", 0.88), ("mobile-sam", "sam", 0.88))
    for name, family, iou in (*official, ("sam2.1-hiera-tiny", "sam2", 0.8)):
        assert samkit.get_preset(name).amg is None
        d = generator_defaults(SimpleNamespace(name=name, family=family))  # type: ignore[arg-type]
        assert (d.pred_iou_thresh, d.stability_score_thresh, d.stability_score_offset) == (
            iou,
            0.95,
            1.0,
        )


def test_demo_defaults_keep_real_masks() -> None:
    """With its calibrated defaults the demo model's generator keeps masks, most of
    them real objects of the scene (held-out seed), where the official defaults keep
    none (this is what ``samkit auto`` does with its default model)."""
    _, ours = demo_pair()
    sample = SyntheticDataset(2, seed=77)[1]
    records = MaskGenerator(ours, points_per_side=16).generate(sample.image)
    assert len(records) >= 3
    pred = torch.from_numpy(np.stack([r["segmentation"] for r in records])).flatten(1).float()
    gt = torch.from_numpy(sample.masks).flatten(1).float()
    inter = pred @ gt.T
    iou = inter / (pred.sum(1, keepdim=True) + gt.sum(1) - inter)
    assert (iou.max(dim=1).values >= 0.5).float().mean() >= 0.6
    official = MaskGenerator(
        ours,
        points_per_side=16,
        pred_iou_thresh=0.88,
        stability_score_thresh=0.95,
        stability_score_offset=1.0,
    )
    assert official.generate(sample.image) == []


@pytest.mark.parametrize(("shape", "layers"), [((1, 1), 1), ((3, 5), 2)])
def test_image_smaller_than_the_crop_grid(shape: tuple[int, int], layers: int) -> None:
    """Crop layers of an image smaller than their grid have crops without pixels: they
    are left out (encoding them raised InvalidImage "empty image" for a valid image)."""
    from samkit.masks import generate_crop_boxes

    model = samkit.load_model("samkit-demo")
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    boxes, _ = generate_crop_boxes(shape, layers, 512 / 1500)
    nonempty = [b for b in boxes if b[2] > b[0] and b[3] > b[1]]
    assert 1 < len(nonempty) < len(boxes)
    gen = MaskGenerator(
        model,
        points_per_side=2,
        crop_n_layers=layers,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
    )
    updates = list(gen.stream(image))
    assert {u.num_crops for u in updates} == {len(nonempty)}
    assert sorted({u.crop_index for u in updates}) == list(range(len(nonempty)))
    records = updates[-1].records
    assert records
    for record in records:
        assert record["segmentation"].shape == shape
        x, y, w, h = record["crop_box"]  # XYWH in records
        assert w > 0 and h > 0 and [x, y, x + w, y + h] in nonempty


def test_point_grids_must_be_n_by_2() -> None:
    model = samkit.load_model("samkit-demo")
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        MaskGenerator(model, points_per_side=None, point_grids=[np.array([0.5, 0.5, 0.5])])
    gen = MaskGenerator(model, points_per_side=None, point_grids=[np.array([[0.5, 0.5]])])
    assert [g.shape for g in gen.point_grids] == [(1, 2)]
