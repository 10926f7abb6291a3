"""Parity of samkit with Hugging Face ``transformers.SamModel`` for the full ``sam-vit-b``.

One randomly initialised HF ``SamModel`` (vit-b architecture) is saved as an HF-format
``model.safetensors`` (the file layout of ``facebook/sam-vit-base`` on the Hub) and loaded with
``samkit.load_model("sam-vit-b", checkpoint=...)``; that proves HF checkpoint loading. Then the
image embedding and, for several prompt kinds, the low-res logits, IoU scores and
full-resolution masks of both implementations are compared.

HF is called as described in ``docs/dev_hf_sam_calling.md``: the same preprocessed tensor goes
to both image encoders (``SamProcessor`` resizing/normalisation is bypassed), prompts are given
to HF in the resized input frame (samkit's predictor takes original-image pixels), and HF adds
the padding point itself when there is no box.

Every image encoder runs once per side (module-scoped fixture); a full vit-b forward takes
10-40 s on CPU. ``transformers`` and ``safetensors`` are imported at module level: if they
cannot be imported the tests fail (collection error), they never skip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from transformers import SamConfig as HFSamConfig
from transformers import SamImageProcessorPil, SamModel, SamVisionConfig

import samkit
from samkit.configs import SamConfig, ViTConfig
from samkit.hf_keys import (
    HF_PROMPT_PE_KEY,
    HF_SHARED_PE_KEY,
    OFFICIAL_PE_KEY,
    hf_to_official_sam,
    is_hf_sam_state_dict,
    official_to_hf_sam,
)
from samkit.inference.transforms import postprocess_masks

# Relative tolerance: max |diff| <= TOL * max(1, max |reference|).
TOL = 1e-4
# Thresholded masks may differ only where a logit is within float noise of 0.
MAX_MASK_DIFF_FRACTION = 1e-4  # 0.01 % of the pixels

IMAGE_HW = (480, 640)  # (H, W) of the test image; input size is (768, 1024)


# --------------------------------------------------------------------------- helpers
def _hf_config(**vision: object) -> HFSamConfig:
    # The official SAM two-way transformer uses nn.LayerNorm's default eps 1e-5 for its four
    # per-block norms; transformers' SamMaskDecoderConfig.layer_norm_eps defaults to 1e-6 (also
    # in the hub configs), which alone moves the logits by ~4e-5. samkit follows the official
    # model, so the HF model is built with 1e-5 for a tight comparison.
    return HFSamConfig(
        vision_config=SamVisionConfig(**vision),
        mask_decoder_config={"layer_norm_eps": 1e-5},
    )


def _randomise_(model: nn.Module, seed: int) -> None:
    """Overwrite every parameter with seeded random values that keep activations O(1).

    Linear/conv weights are fan-in scaled, LayerNorm weights 1 +- 0.1, biases, the absolute
    position embedding and the relative-position tables small but non-zero, embeddings and
    the random Fourier matrix N(0, 1) like their defaults.
    """
    gen = torch.Generator().manual_seed(seed)
    seen: set[int] = set()

    def randn(shape: torch.Size, std: float = 1.0, mean: float = 0.0) -> torch.Tensor:
        return mean + std * torch.randn(shape, generator=gen)

    with torch.no_grad():
        for module_name, module in model.named_modules():
            for name, p in module.named_parameters(recurse=False):
                if id(p) in seen:  # the tied positional matrix is reached twice
                    continue
                seen.add(id(p))
                if isinstance(module, nn.LayerNorm):  # includes HF SamLayerNorm
                    value = randn(p.shape, 0.1, 1.0) if name == "weight" else randn(p.shape, 0.1)
                elif isinstance(module, nn.Embedding):
                    value = randn(p.shape)
                elif isinstance(module, nn.ConvTranspose2d) and name == "weight":
                    value = randn(p.shape, 1.0 / math.sqrt(p.shape[0]))  # (in, out, k, k)
                elif isinstance(module, (nn.Linear, nn.Conv2d)) and name == "weight":
                    value = randn(p.shape, 1.0 / math.sqrt(p[0].numel()))
                elif isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                    value = randn(p.shape, 0.05)  # bias
                elif name in ("rel_pos_h", "rel_pos_w"):
                    value = randn(p.shape, 0.3)
                elif name == "pos_embed":
                    value = randn(p.shape, 0.2)
                elif name == "positional_embedding":
                    value = randn(p.shape)
                else:
                    raise AssertionError(f"unhandled parameter {module_name}.{name}")
                p.copy_(value)


def _hf_file_dict(hf: SamModel, with_prompt_copy: bool) -> dict[str, torch.Tensor]:
    """``hf.state_dict()`` as it is stored in a hub ``model.safetensors``.

    ``SamModel`` ties the two positional-matrix names to one Parameter, so ``state_dict()``
    lists the same storage twice, which ``safetensors`` refuses: every tensor is cloned
    (contiguous, unshared). ``save_pretrained`` in transformers 5.x writes only
    ``shared_image_embedding.positional_embedding``; the 2023 conversion script wrote both.
    """
    sd = {k: v.detach().clone().contiguous() for k, v in hf.state_dict().items()}
    assert torch.equal(sd[HF_SHARED_PE_KEY], sd[HF_PROMPT_PE_KEY])
    if not with_prompt_copy:
        del sd[HF_PROMPT_PE_KEY]
    return sd


def _scale(reference: torch.Tensor) -> float:
    return max(1.0, reference.abs().max().item())


def _assert_close(name: str, ours: torch.Tensor, ref: torch.Tensor) -> float:
    ours, ref = torch.as_tensor(ours).float(), torch.as_tensor(ref).float()
    assert ours.shape == ref.shape, f"{name}: shape {tuple(ours.shape)} vs {tuple(ref.shape)}"
    diff = (ours - ref).abs().max().item()
    scale = _scale(ref)
    print(f"{name}: max|diff| {diff:.3g} (max|ref| {ref.abs().max().item():.3g})")
    assert diff <= TOL * scale, f"{name}: max |diff| {diff:.3g} > {TOL * scale:.3g}"
    return diff


# --------------------------------------------------------------------------- fixtures
@dataclass
class Setup:
    hf: SamModel
    predictor: samkit.ImagePredictor
    paths: dict[str, Path]
    image: np.ndarray
    x: torch.Tensor  # samkit-preprocessed (1, 3, 1024, 1024)
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    emb_hf: torch.Tensor
    emb_ours: torch.Tensor


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    hf = SamModel(_hf_config()).eval()
    _randomise_(hf, seed=0)

    folder = tmp_path_factory.mktemp("hf_sam_vit_b")
    paths = {}
    for variant, with_copy in (("shared_only", False), ("both_copies", True)):
        (folder / variant).mkdir()
        paths[variant] = folder / variant / "model.safetensors"
        save_file(_hf_file_dict(hf, with_copy), str(paths[variant]))

    model = samkit.load_model("sam-vit-b", checkpoint=paths["shared_only"])
    predictor = samkit.ImagePredictor(model)
    image = np.random.default_rng(0).integers(0, 256, (*IMAGE_HW, 3), dtype=np.uint8)
    x, original_size, input_size = predictor.preprocess(image)
    predictor.set_image(image)  # the one samkit encoder forward
    with torch.no_grad():
        emb_hf = hf.get_image_embeddings(x)  # the one HF encoder forward
    yield Setup(
        hf=hf,
        predictor=predictor,
        paths=paths,
        image=image,
        x=x,
        original_size=original_size,
        input_size=input_size,
        emb_hf=emb_hf,
        emb_ours=predictor.embedding.features,
    )
    for path in paths.values():
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- full vit-b
def test_hf_model_is_vit_b_like_the_preset(setup: Setup) -> None:
    v = setup.hf.config.vision_config
    assert (v.hidden_size, v.num_hidden_layers, v.num_attention_heads) == (768, 12, 12)
    assert list(v.global_attn_indexes) == [2, 5, 8, 11]
    assert (v.window_size, v.patch_size, v.image_size, v.output_channels) == (14, 16, 1024, 256)
    enc = samkit.get_preset("sam-vit-b").config.encoder
    assert (enc.embed_dim, enc.depth, enc.num_heads, enc.window_size) == (768, 12, 12, 14)
    assert tuple(enc.global_attn_indexes) == (2, 5, 8, 11)
    # The eps override reached the two-way blocks.
    for layer in setup.hf.mask_decoder.transformer.layers:
        assert layer.layer_norm1.eps == 1e-5
    # The randomisation is not trivial (rel-pos tables non-zero, LayerNorm scales not 1).
    attn = setup.hf.vision_encoder.layers[0].attn
    assert attn.rel_pos_h.abs().min() > 0 and attn.rel_pos_w.abs().min() > 0
    assert not torch.equal(setup.hf.vision_encoder.layers[0].layer_norm1.weight, torch.ones(768))


def test_both_hub_file_variants_load_to_the_same_weights(setup: Setup) -> None:
    with safe_open(str(setup.paths["shared_only"]), "pt") as f:
        keys_a = set(f.keys())
    with safe_open(str(setup.paths["both_copies"]), "pt") as f:
        keys_b = set(f.keys())
    assert HF_SHARED_PE_KEY in keys_a and HF_PROMPT_PE_KEY not in keys_a
    assert keys_b == keys_a | {HF_PROMPT_PE_KEY}
    assert len(keys_b) == 315  # vit-b: 314 official tensors + the tied copy

    ours_a = setup.predictor.model.state_dict()
    ours_b = samkit.load_model("sam-vit-b", checkpoint=setup.paths["both_copies"]).state_dict()
    expected = hf_to_official_sam(setup.hf.state_dict())
    assert set(ours_a) == set(ours_b) == set(expected)
    for key, value in expected.items():
        assert torch.equal(ours_a[key], value), key
        assert torch.equal(ours_b[key], value), key
    assert torch.equal(
        ours_a[OFFICIAL_PE_KEY], setup.hf.shared_image_embedding.positional_embedding
    )


def test_image_embeddings_match(setup: Setup) -> None:
    assert setup.original_size == IMAGE_HW
    assert setup.input_size == (768, 1024)
    assert tuple(setup.x.shape) == (1, 3, 1024, 1024)
    assert tuple(setup.emb_hf.shape) == tuple(setup.emb_ours.shape) == (1, 256, 64, 64)
    assert setup.emb_hf.std().item() > 0.1  # non-degenerate
    _assert_close("image embedding", setup.emb_ours, setup.emb_hf)


@dataclass(frozen=True)
class Case:
    """A prompt set in original-image pixels, batch-first (N prompt sets)."""

    points: np.ndarray | None = None  # (N, P, 2)
    labels: np.ndarray | None = None  # (N, P)
    boxes: np.ndarray | None = None  # (N, 4)
    use_mask_input: bool = False  # low-res logits of a previous one-point prediction
    multimask: bool = True
    batched: bool = False


_PT = np.array([[[320.0, 240.0]]])
CASES = {
    "one_point_multimask": Case(points=_PT, labels=np.array([[1]])),
    "two_points_single": Case(
        points=np.array([[[200.0, 150.0], [450.0, 330.0]]]),
        labels=np.array([[1, 0]]),
        multimask=False,
    ),
    "box_single": Case(boxes=np.array([[100.0, 80.0, 420.0, 360.0]]), multimask=False),
    "box_and_point": Case(
        points=np.array([[[300.0, 250.0]]]),
        labels=np.array([[1]]),
        boxes=np.array([[150.0, 100.0, 500.0, 400.0]]),
    ),
    "point_and_mask_input": Case(
        points=_PT, labels=np.array([[1]]), use_mask_input=True, multimask=False
    ),
    "batched_boxes": Case(
        boxes=np.array(
            [[100.0, 80.0, 420.0, 360.0], [0.0, 0.0, 640.0, 480.0], [333.0, 21.0, 600.5, 250.0]]
        ),
        batched=True,
    ),
}


def _previous_logits(setup: Setup) -> np.ndarray:
    """``(1, 1, 256, 256)`` low-res logits of the best mask for one click (samkit's)."""
    prev = setup.predictor.predict(points=_PT[0], labels=[1], multimask=True)
    return prev.low_res_logits[int(np.argmax(prev.scores))][None, None]


def _run_samkit(setup: Setup, case: Case, mask_input: np.ndarray | None):
    p = setup.predictor
    if case.batched:
        r = p.predict_batch(
            points=case.points,
            labels=case.labels,
            boxes=case.boxes,
            mask_input=mask_input,
            multimask=case.multimask,
        )
        return r.low_res_logits, r.scores, r.masks
    r = p.predict(
        points=None if case.points is None else case.points[0],
        labels=None if case.labels is None else case.labels[0],
        box=None if case.boxes is None else case.boxes[0],
        mask_input=None if mask_input is None else mask_input[0],
        multimask=case.multimask,
    )
    return r.low_res_logits[None], r.scores[None], r.masks[None]


def _run_hf(setup: Setup, case: Case, mask_input: np.ndarray | None):
    (h, w), (h_in, w_in) = setup.original_size, setup.input_size
    # HF wants the resized input frame (longest side 1024, before padding), no +0.5, no
    # padding point; same per-axis scale as samkit's original -> input mapping.
    sx, sy = w_in / w, h_in / h
    kwargs: dict[str, torch.Tensor] = {}
    if case.points is not None:
        pts = case.points * np.array([sx, sy])
        kwargs["input_points"] = torch.as_tensor(pts, dtype=torch.float32)[None]  # (1, N, P, 2)
        kwargs["input_labels"] = torch.as_tensor(case.labels, dtype=torch.int64)[None]
    if case.boxes is not None:
        boxes = case.boxes * np.array([sx, sy, sx, sy])
        kwargs["input_boxes"] = torch.as_tensor(boxes, dtype=torch.float32)[None]  # (1, N, 4)
    if mask_input is not None:
        assert mask_input.shape == (1, 1, 256, 256)  # HF: one mask per image, broadcast
        kwargs["input_masks"] = torch.as_tensor(mask_input)
    with torch.no_grad():
        out = setup.hf(image_embeddings=setup.emb_hf, multimask_output=case.multimask, **kwargs)
    return out.pred_masks[0], out.iou_scores[0]  # (N, K, 256, 256), (N, K)


@pytest.mark.parametrize("case_name", list(CASES))
def test_prompts_match(setup: Setup, case_name: str) -> None:
    case = CASES[case_name]
    mask_input = _previous_logits(setup) if case.use_mask_input else None
    low_ours, scores_ours, masks_ours = _run_samkit(setup, case, mask_input)
    low_hf, iou_hf = _run_hf(setup, case, mask_input)

    n = 3 if case.batched else 1
    k = 3 if case.multimask else 1
    assert tuple(low_hf.shape) == (n, k, 256, 256)
    assert masks_ours.shape == (n, k, *IMAGE_HW) and masks_ours.dtype == np.bool_
    assert low_hf.std().item() > 0.01  # non-degenerate logits
    _assert_close(f"{case_name} low-res logits", torch.from_numpy(low_ours), low_hf)
    _assert_close(f"{case_name} iou scores", torch.from_numpy(scores_ours), iou_hf)

    # Full-resolution masks: HF's post-processing (the torchvision-free PIL image processor
    # has the same post_process_masks) on HF's logits vs samkit's masks.
    processor = SamImageProcessorPil()
    masks_hf = processor.post_process_masks(
        [low_hf.clone()], [setup.original_size], [setup.input_size], binarize=True
    )[0]
    assert tuple(masks_hf.shape) == masks_ours.shape
    differ = (masks_hf.numpy() != masks_ours).mean()
    print(f"{case_name} masks: {differ:.2e} of the pixels differ")
    assert differ <= MAX_MASK_DIFF_FRACTION
    assert 0.0 < masks_ours.mean() < 1.0  # neither empty nor full: the comparison bites

    # samkit's (sliced) upsampling itself, on identical logits, vs HF's.
    up_hf = processor.post_process_masks(
        [low_hf.clone()], [setup.original_size], [setup.input_size], binarize=False
    )[0]
    up_ours = postprocess_masks(low_hf, setup.input_size, setup.original_size, 1024)
    assert (up_ours - up_hf).abs().max().item() <= 1e-5 * _scale(up_hf)


# --------------------------------------------------------------------------- key mapping (fast)
_REDUCED_VIT = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
_REDUCED_SAMKIT = SamConfig(encoder=ViTConfig(64, 2, 2, (1,)))


@pytest.fixture(scope="module")
def reduced_hf_state_dict() -> dict[str, torch.Tensor]:
    """HF-format state dict of a small SAM (ViT width 64, 2 blocks), every tensor distinct."""
    hf = SamModel(_hf_config(**_REDUCED_VIT, global_attn_indexes=[1]))
    _randomise_(hf, seed=1)
    return _hf_file_dict(hf, with_prompt_copy=True)


def test_key_map_round_trips(reduced_hf_state_dict: dict[str, torch.Tensor]) -> None:
    sd_hf = reduced_hf_state_dict
    assert is_hf_sam_state_dict(sd_hf)
    official = hf_to_official_sam(sd_hf)
    assert not is_hf_sam_state_dict(official)
    assert len(official) == len(sd_hf) - 1

    # The official dict is exactly what samkit's architecture expects, and loads strictly.
    model = samkit.build_model(_REDUCED_SAMKIT)
    expected = model.state_dict()
    assert set(official) == set(expected)
    for key, value in official.items():
        assert value.shape == expected[key].shape, key
    model.load_state_dict(official, strict=True)

    # official -> HF -> official is the identity ...
    again = hf_to_official_sam(official_to_hf_sam(official))
    assert set(again) == set(official)
    for key, value in official.items():
        assert torch.equal(again[key], value), key
    # ... and so is HF -> official -> HF (both positional copies written back).
    back = official_to_hf_sam(official)
    assert set(back) == set(sd_hf)
    for key, value in sd_hf.items():
        assert torch.equal(back[key], value), key
    assert back[HF_PROMPT_PE_KEY].data_ptr() != back[HF_SHARED_PE_KEY].data_ptr()

    # Either positional copy alone is enough.
    for drop in (HF_PROMPT_PE_KEY, HF_SHARED_PE_KEY):
        only_one = {k: v for k, v in sd_hf.items() if k != drop}
        converted = hf_to_official_sam(only_one)
        assert set(converted) == set(official)
        assert torch.equal(converted[OFFICIAL_PE_KEY], official[OFFICIAL_PE_KEY])


def test_bad_hf_checkpoints_raise(
    reduced_hf_state_dict: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    sd_hf = reduced_hf_state_dict

    extra = dict(sd_hf)
    extra["vision_encoder.layers.0.attn.extra_scale"] = torch.ones(1)
    with pytest.raises(samkit.CheckpointError, match="extra_scale"):
        hf_to_official_sam(extra)
    path = tmp_path / "extra.safetensors"
    save_file(extra, str(path))
    with pytest.raises(samkit.CheckpointError, match="extra_scale"):
        samkit.load_model(_REDUCED_SAMKIT, checkpoint=path)

    conflict = dict(sd_hf)
    conflict[HF_PROMPT_PE_KEY] = sd_hf[HF_SHARED_PE_KEY] + 1.0
    with pytest.raises(samkit.CheckpointError, match="differ"):
        hf_to_official_sam(conflict)
    path = tmp_path / "conflict.safetensors"
    save_file(conflict, str(path))
    with pytest.raises(samkit.CheckpointError, match="differ"):
        samkit.load_model(_REDUCED_SAMKIT, checkpoint=path)

    # The unmodified dict loads through the same path.
    path = tmp_path / "ok.safetensors"
    save_file(sd_hf, str(path))
    loaded = samkit.load_model(_REDUCED_SAMKIT, checkpoint=path).state_dict()
    assert torch.equal(loaded[OFFICIAL_PE_KEY], sd_hf[HF_SHARED_PE_KEY])
