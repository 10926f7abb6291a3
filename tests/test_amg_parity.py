"""``samkit.MaskGenerator`` against the official ``SamAutomaticMaskGenerator``.

Both generators run on models holding the same weights: a tiny random-weight SAM
(256-pixel input, 16x16 embedding) built with the official classes and with samkit, and
(in ``test_amg_demo.py``) the bundled demo model. The official generator imports
torchvision (``batched_nms``, ``box_area``: replaced by the NMS in
``reference_shims``, tested in ``test_reference_shims.py``) and, for
``min_mask_region_area > 0``, cv2 (``opencv-python-headless``, installed by the test
extra).

With random weights the predicted IoUs and stability scores are not those of a trained
model, and the masks barely depend on the clicked point (nearly all span the whole image,
so box NMS at 0.7 keeps one). The random-weight tests therefore lower
``pred_iou_thresh`` to 0, ``stability_score_thresh`` to 0.5 with offset 0.1 and turn box
NMS off (threshold 1.0: only IoU > 1 would suppress), so that dozens of masks survive and
every other stage is compared; NMS at the default thresholds is compared on the trained
demo model in ``test_amg_demo.py``.

Acceptance (issue 4): the same number of masks (within 1%) and a one-to-one match of
masks at IoU >= 0.99, with the matched records' fields equal.
"""

from __future__ import annotations

import functools
import inspect

import numpy as np
import pytest
import reference_shims
import torch
from helpers_sam import load_both, make_image, official_sam_from_config, random_state_dict

import samkit
import samkit.compat
from samkit.amg import MaskGenerator
from samkit.configs import MaskDecoderConfig, PromptEncoderConfig, SamConfig, ViTConfig
from samkit.masks import rle_decode

TINY = SamConfig(
    encoder=ViTConfig(
        embed_dim=32, depth=2, num_heads=2, global_attn_indexes=(1,), window_size=4, img_size=256
    ),
    prompt_encoder=PromptEncoderConfig(image_embedding_size=16, input_image_size=256),
    mask_decoder=MaskDecoderConfig(transformer_mlp_dim=64, iou_head_hidden_dim=32),
    image_size=256,
)


@functools.cache
def tiny_pair(seed: int = 0):
    official = official_sam_from_config(TINY)
    ours = samkit.build_model(TINY)
    sd = random_state_dict(official.state_dict(), seed)
    load_both(official, ours, sd)
    return official, ours


def official_generator(model: torch.nn.Module, **kwargs):
    sa = reference_shims.import_segment_anything()
    return sa.SamAutomaticMaskGenerator(model, **kwargs)


def _mask(record: dict) -> np.ndarray:
    seg = record["segmentation"]
    return seg if isinstance(seg, np.ndarray) else rle_decode(seg)


def assert_same_records(ours: list[dict], ref: list[dict], *, min_masks: int = 1) -> None:
    """Same count (within 1%), one-to-one mask match at IoU >= 0.99, same fields."""
    assert len(ref) >= min_masks, f"reference kept only {len(ref)} masks: test is vacuous"
    tol = max(1, round(0.01 * len(ref))) if len(ref) >= 100 else 0
    assert abs(len(ours) - len(ref)) <= tol, (len(ours), len(ref))
    ref_masks = np.stack([_mask(r) for r in ref]).reshape(len(ref), -1)
    our_masks = np.stack([_mask(r) for r in ours]).reshape(len(ours), -1)
    inter = our_masks.astype(np.float64) @ ref_masks.T.astype(np.float64)
    union = our_masks.sum(1)[:, None] + ref_masks.sum(1)[None, :] - inter
    iou = inter / np.maximum(union, 1)
    used: set[int] = set()
    matched = 0
    for i in range(len(ours)):
        candidates = iou[i].copy()
        candidates[list(used)] = -1.0
        close = np.flatnonzero(candidates >= 0.99)
        if len(close) == 0:
            continue
        # near-duplicate masks (e.g. with NMS off) all match: take the one from the same
        # prompt point with the closest predicted IoU
        a = ours[i]
        j = int(
            min(
                close,
                key=lambda c: (
                    float(np.abs(np.subtract(a["point_coords"], ref[c]["point_coords"])).max()),
                    abs(a["predicted_iou"] - ref[c]["predicted_iou"]),
                ),
            )
        )
        used.add(j)
        matched += 1
        b = ref[j]
        assert a["area"] == pytest.approx(b["area"], rel=0.01, abs=2)
        assert np.allclose(a["bbox"], b["bbox"], atol=1)
        assert a["predicted_iou"] == pytest.approx(b["predicted_iou"], abs=1e-4)
        assert a["stability_score"] == pytest.approx(b["stability_score"], abs=2e-3)
        assert np.allclose(a["point_coords"], b["point_coords"], atol=1e-6)
        assert a["crop_box"] == list(b["crop_box"])
    assert matched >= len(ref) - tol, f"matched {matched} of {len(ref)}"


# Random weights: thresholds lowered so that a few dozen masks survive the filters.
RANDOM_THRESHOLDS = {
    "pred_iou_thresh": 0.0,
    "stability_score_thresh": 0.5,
    "stability_score_offset": 0.1,
    "box_nms_thresh": 1.0,
    "crop_nms_thresh": 1.0,
}


@pytest.mark.parametrize("size", [(96, 128), (200, 150), (64, 300)])
def test_amg_matches_official_no_crops(size: tuple[int, int]) -> None:
    official, ours = tiny_pair()
    image = make_image(*size, seed=size[0])
    kwargs = dict(points_per_side=12, points_per_batch=50, **RANDOM_THRESHOLDS)
    ref = official_generator(official, **kwargs).generate(image)
    got = MaskGenerator(ours, **kwargs).generate(image)
    assert_same_records(got, ref, min_masks=5)


def test_amg_matches_official_with_crops() -> None:
    official, ours = tiny_pair()
    image = make_image(180, 240, seed=3)
    kwargs = dict(
        points_per_side=8,
        crop_n_layers=1,
        crop_n_points_downscale_factor=2,
        crop_overlap_ratio=0.3,
        **RANDOM_THRESHOLDS,
    )
    ref = official_generator(official, **kwargs).generate(image)
    got = MaskGenerator(ours, **kwargs).generate(image)
    # Random-weight masks span their whole crop, so the crop-edge filter drops every mask
    # of the four zoomed crops here (both sides must agree on that); masks kept from
    # crops are compared on the trained demo model in test_amg_demo.py.
    assert_same_records(got, ref, min_masks=5)


@pytest.mark.parametrize("output_mode", ["binary_mask", "coco_rle", "uncompressed_rle"])
def test_amg_matches_official_small_region_removal(output_mode: str) -> None:
    official, ours = tiny_pair()
    image = make_image(120, 160, seed=7)
    kwargs = dict(
        points_per_side=10, min_mask_region_area=40, output_mode=output_mode, **RANDOM_THRESHOLDS
    )
    ref = official_generator(official, **kwargs).generate(image)
    got = MaskGenerator(ours, **kwargs).generate(image)
    assert_same_records(got, ref, min_masks=5)
    if output_mode == "coco_rle":
        # Compressed strings identical to the official ones for identical masks. Float
        # rounding differs between CPUs (this failed at 196 of 200 identical strings on an
        # AVX2-only host, with the code that gave 199+ on an AVX-512 one): a random-weight
        # logit sitting at the threshold can flip a pixel, so allow a few masks to
        # differ by pixels, never an identical mask by its string.
        by_mask = {_mask(r).tobytes(): r["segmentation"]["counts"] for r in ref}
        identical = 0
        for g in got:
            counts = by_mask.get(_mask(g).tobytes())
            if counts is not None:
                identical += 1
                assert g["segmentation"]["counts"] == counts
        assert identical >= len(ref) - max(2, 3 * len(ref) // 100), (identical, len(ref))
    if output_mode == "uncompressed_rle":
        assert all(isinstance(g["segmentation"]["counts"], list) for g in got)


def test_stream_yields_per_batch_and_ends_with_generate_result() -> None:
    _, ours = tiny_pair()
    image = make_image(100, 140, seed=11)
    gen = MaskGenerator(ours, points_per_side=8, points_per_batch=16, **RANDOM_THRESHOLDS)
    updates = list(gen.stream(image))
    assert [u.batch_index for u in updates] == [0, 1, 2, 3]
    assert all(u.num_batches == 4 for u in updates)
    assert all(u.records is None for u in updates[:-1])
    final = updates[-1].records
    assert final is not None
    again = gen.generate(image)
    assert len(final) == len(again)
    for a, b in zip(final, again, strict=True):
        assert np.array_equal(a["segmentation"], b["segmentation"])
    n_candidates = sum(len(u.candidates) for u in updates)
    assert n_candidates == updates[-1].stats.num_candidates >= len(final)
    assert updates[-1].stats.num_points == 64


def test_rejects_bad_arguments() -> None:
    _, ours = tiny_pair()
    with pytest.raises(ValueError, match="exactly one"):
        MaskGenerator(ours, points_per_side=None)
    with pytest.raises(ValueError, match="output_mode"):
        MaskGenerator(ours, output_mode="png")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one grid per crop layer"):
        MaskGenerator(ours, points_per_side=None, point_grids=[np.zeros((4, 2))], crop_n_layers=1)
    with pytest.raises(TypeError):
        MaskGenerator(object())  # type: ignore[arg-type]
    # values that used to run: NaN switched the IoU filter off, the others did nothing
    for kwargs, message in (
        ({"pred_iou_thresh": float("nan")}, "pred_iou_thresh must be a finite number"),
        ({"min_mask_region_area": -5}, "min_mask_region_area must be >= 0"),
        ({"points_per_side": 4.5}, "points_per_side must be an int"),
        ({"points_per_side": None, "point_grids": [np.full((2, 2), np.nan)]}, r"in \[0, 1\]"),
        ({"points_per_side": None, "point_grids": [np.full((2, 2), 1.5)]}, r"in \[0, 1\]"),
    ):
        with pytest.raises(ValueError, match=message):
            MaskGenerator(ours, **kwargs)


def test_decode_selected_equals_decode_for_kept_outputs() -> None:
    _, ours = tiny_pair()
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(1, 256, 16, 16, generator=gen)
    pts = torch.rand(9, 1, 2, generator=gen) * 256
    labels = torch.ones(9, 1, dtype=torch.int64)
    with torch.inference_mode():
        logits, iou = ours.decode(emb, points=(pts, labels), multimask_output=True)
        thresh = float(iou.median())
        iou2, keep, kept = ours.decode_selected(
            emb, lambda p: p > thresh, points=(pts, labels), multimask_output=True
        )
        _, _, none = ours.decode_selected(
            emb, lambda p: torch.zeros_like(p, dtype=torch.bool), points=(pts, labels)
        )
    assert torch.equal(keep, iou > thresh) and 0 < int(keep.sum()) < keep.numel()
    torch.testing.assert_close(iou2, iou, rtol=0, atol=1e-6)
    torch.testing.assert_close(kept, logits[keep], rtol=0, atol=1e-5)
    assert none.shape == (0, 64, 64)


def test_compat_generator_is_the_official_interface() -> None:
    """samkit.compat.SamAutomaticMaskGenerator: the official signature and defaults,
    the official records, and the model's mode left alone; build_sam* exist."""
    sa = reference_shims.import_segment_anything()
    official_sig = inspect.signature(sa.SamAutomaticMaskGenerator.__init__)
    ours_sig = inspect.signature(samkit.compat.SamAutomaticMaskGenerator.__init__)
    assert list(ours_sig.parameters) == list(official_sig.parameters)
    for name, param in official_sig.parameters.items():
        assert ours_sig.parameters[name].default == param.default, name
    for name in ("build_sam", "build_sam_vit_h", "build_sam_vit_l", "build_sam_vit_b"):
        assert list(inspect.signature(getattr(samkit.compat, name)).parameters) == ["checkpoint"]
    official, ours = tiny_pair()
    image = make_image(96, 128, seed=3)
    kwargs = dict(points_per_side=8, points_per_batch=20, **RANDOM_THRESHOLDS)
    ours.train()
    generator = samkit.compat.SamAutomaticMaskGenerator(ours, **kwargs)
    assert ours.training
    ours.eval()
    ref = official_generator(official, **kwargs).generate(image)
    got = generator.generate(image)
    assert all(isinstance(r, dict) for r in got)
    assert_same_records(got, ref, min_masks=5)
    generator.pred_iou_thresh = 0.5
    assert generator.generator.pred_iou_thresh == 0.5
