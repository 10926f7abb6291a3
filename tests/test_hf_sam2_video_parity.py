"""SAM 2 video parity: samkit's ``VideoPredictor`` / ``VideoSession`` against Hugging Face
``transformers``' ``Sam2VideoModel`` (``propagate_in_video_iterator``) on shared random weights.

A reduced ``Sam2VideoModel`` (``helpers_sam2.reduced_config`` at a 128 input: 8x8 memory grid,
the HF config built by ``test_hf_sam2_parity._hf_video_config``) gets seeded random weights
(``test_hf_sam2_parity._random_hf_state_dict``, the object-score bias shifted by ``SCORE_BIAS``
so that presence changes along the clip); samkit's model loads that HF state dict through
``samkit.build.load_weights`` (``samkit.hf_keys.hf_to_official_sam2``, strict). The clip is
the synthetic one of ``test_sam2_tracking_parity`` (two moving rectangles on noise, JPEG files).

Preprocessing: HF's ``Sam2VideoVideoProcessor`` needs torchvision (not installed here) and
resizes frames with a *bilinear* (antialiased) resize, while the official JPEG loader, which
samkit reproduces, uses PIL's *bicubic* resize; the normalisation (``/ 255``, ImageNet mean and
std) is the same. Both sides therefore get samkit's preprocessed frames: the HF
``Sam2VideoInferenceSession`` is built from them. Prompts go through HF's own
``Sam2VideoProcessor.add_inputs_to_inference_session`` (coordinate scaling, box -> two corner
points first), the processor being built without its image / video processors. HF's
``post_process_masks`` is a bilinear ``F.interpolate`` of the low-res logits to the video size;
it is reproduced here (its class needs torchvision too).

Scenario (``NUM_FRAMES`` = 8 frames; objects with the same memory frames are batched on both sides):

1. frame 0: object 1 one click (multimask output), object 2 a positive and a negative click
   (single output with the dynamic fallback); forward propagation over the clip;
2. a negative correction click for object 1 on frame ``FIX_FRAME`` (4), then forward
   propagation again (HF from ``FIX_FRAME + 1``, samkit's default start is the corrected
   frame, whose prompted output it keeps);
3. object 3, a box on frame ``ADD_FRAME`` (3), then backward propagation from it to frame 0.

Compared on every frame: low-res logits, video-resolution logits and masks, object scores;
at the end every stored memory (features and object pointer) of every object and frame.

HF differs from the official predictor (whose semantics samkit follows, with
``fill_hole_area=0``) in three ways, so the scenario avoids them or works around them:

- no hole filling at all: samkit runs with ``fill_hole_area=0``;
- a prompt on an already tracked frame (a correction) goes through ``Sam2VideoModel.forward``,
  which (a) does not feed the object's previous logits on that frame to the mask decoder with
  the clicks (the official ``add_new_points_or_box`` does, clamped to +-32; HF's
  ``_run_single_frame_inference`` takes them as ``prev_sam_mask_logits`` but ``forward`` never
  passes them), and (b) re-tracks every other object on that frame and re-encodes their memory
  with ``is_mask_from_pts=any(...)`` over the batch, i.e. from a *binarised* mask instead of a
  sigmoid once any object on the frame has clicks. ``test_hf_forward_correction_differs``
  pins both down exactly. The scenario's correction therefore drives HF's own building blocks
  as the official predictor does (``_run_single_frame_inference`` with the previous logits, the
  memory of the corrected object alone encoded from its clicks' mask);
- HF's ``propagate_in_video_iterator`` (like the official one) re-tracks a corrected frame
  without its clicks when it passes over it, which samkit deliberately never does: HF's
  re-propagation starts after the corrected frame, and the backward run starts before it.
  (Object 3's prompt re-tracks objects 1 and 2 on ``ADD_FRAME`` with binarised memories in HF,
  (b) above, but the backward run re-tracks them there first, so that is erased.)

``transformers`` is imported at module level: without it the tests fail, they never skip.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import helpers_sam2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers_sam2 import reduced_config
from test_hf_sam2_parity import _hf_video_config, _random_hf_state_dict
from transformers import Sam2VideoModel
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling
from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession
from transformers.models.sam2_video.processing_sam2_video import Sam2VideoProcessor
from transformers.models.sam2_video.video_processing_sam2_video import Sam2VideoVideoProcessor

import samkit
import samkit.video as vt
from samkit.build import load_weights
from samkit.hf_keys import hf_to_official_sam2
from samkit.video import VideoPredictor

IMAGE_SIZE = 128
NUM_FRAMES = 8
VIDEO_H, VIDEO_W = 120, 160
CLICK_1 = [[40.0, 50.0]]  # object 1, frame 0 (red rectangle)
CLICKS_2 = [[120.0, 85.0], [60.0, 100.0]]  # object 2, frame 0 (green rectangle, background)
LABELS_2 = [1, 0]
FIX_FRAME = 4
FIX_CLICK = [[30.0, 90.0]]  # object 1, a negative correction click
FIX_LABELS = [0]
ADD_FRAME = 3
BOX_3 = [95.0, 50.0, 145.0, 95.0]  # object 3, frame 3 (around the green rectangle)
SCORE_BIAS = 0.8  # every object present on every frame (scores >= +0.03)

REL_TOL = 1e-3  # logits: max |ours - HF| / max(1, max |HF|)
SCORE_TOL = 1e-3
MAX_FLIPS_LOW = 2  # mask pixels (logit sign) allowed to differ at low resolution
MAX_FLIPS_VIDEO = 10  # ... and at video resolution (19200 pixels)
NO_OBJ = vt.NO_OBJ_SCORE
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


# --------------------------------------------------------------------------- setup
def _write_clip(folder, num_frames: int = NUM_FRAMES) -> None:
    """The clip of the official tracking parity test (its first ``num_frames`` frames)."""
    assert (VIDEO_H, VIDEO_W) == (helpers_sam2.CLIP_H, helpers_sam2.CLIP_W)
    helpers_sam2.write_clip(folder, num_frames)


def _models(version: str, score_bias: float = SCORE_BIAS):
    """(HF Sam2VideoModel, samkit Sam2, HF state dict) with the same random weights."""
    cfg = reduced_config(version, IMAGE_SIZE)
    torch.manual_seed(0)
    hf = Sam2VideoModel(_hf_video_config(cfg)).eval()
    sd = _random_hf_state_dict(hf, seed=0)
    sd["mask_decoder.pred_obj_score_head.proj_out.bias"] += score_bias
    hf.load_state_dict(sd, strict=True)
    ours = load_weights(samkit.build_model(cfg), sd, "hf video state dict")
    return hf, ours.eval(), sd


def _processor() -> Sam2VideoProcessor:
    """HF's video processor for prompts only (its image / video processors need torchvision;
    prompt handling uses neither)."""
    proc = Sam2VideoProcessor.__new__(Sam2VideoProcessor)
    proc.point_pad_value = -10
    proc.target_size = IMAGE_SIZE
    return proc


def _hf_session(cfg, folder) -> Sam2VideoInferenceSession:
    """An HF session on samkit's preprocessed frames (see the module docstring); ``cfg`` is
    the samkit config (pixel mean and std)."""
    loaded = [
        vt.load_frame(p, IMAGE_SIZE, cfg.pixel_mean, cfg.pixel_std)
        for p in vt.list_video_frames(folder)
    ]
    assert loaded[0][1] == (VIDEO_H, VIDEO_W)
    return Sam2VideoInferenceSession(
        video=torch.stack([img for img, _ in loaded]),
        video_height=VIDEO_H,
        video_width=VIDEO_W,
        dtype=torch.float32,  # the default, the string "float32", breaks Tensor.to
        max_vision_features_cache_size=NUM_FRAMES,
    )


@dataclass
class Frame:
    """One frame of one side: ``low`` ``(N, 1, h, w)`` logits, ``video`` ``(N, 1, H, W)``
    logits, ``masks`` ``(N, H, W)`` bool, ``scores`` ``(N,)``, objects in ``ids`` order."""

    ids: list[int]
    low: torch.Tensor
    video: torch.Tensor
    masks: torch.Tensor
    scores: torch.Tensor


@dataclass
class Run:
    """Per-phase, per-frame results (``phases[name][frame]``) and the final memories
    ``memory[(obj_id, frame)] = (maskmem_features (C, h, w) float, obj_ptr (C,))``."""

    phases: dict[str, dict[int, Frame]] = field(default_factory=dict)
    memory: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    extras: dict = field(default_factory=dict)


def _hf_frame(ids, low: torch.Tensor, scores: torch.Tensor) -> Frame:
    # HF's post_process_masks(binarize=False): bilinear resize of the low-res logits
    video = F.interpolate(low.float(), (VIDEO_H, VIDEO_W), mode="bilinear", align_corners=False)
    return Frame(list(ids), low.float(), video, video[:, 0] > 0, scores.reshape(-1).float())


def _hf_out(out) -> Frame:
    return _hf_frame(out.object_ids, out.pred_masks, out.object_score_logits)


def _hf_stored(session, obj_idx: int, frame: int) -> dict:
    d = session.output_dict_per_obj[obj_idx]
    return d["cond_frame_outputs"].get(frame) or d["non_cond_frame_outputs"][frame]


def _run_hf(model, cfg, folder, full: bool = True) -> Run:
    run = Run()
    proc = _processor()
    session = _hf_session(cfg, folder)
    with torch.inference_mode():
        proc.add_inputs_to_inference_session(
            session, 0, 1, input_points=[[CLICK_1]], input_labels=[[[1]]]
        )
        model(session, frame_idx=0)
        proc.add_inputs_to_inference_session(
            session, 0, 2, input_points=[[CLICKS_2]], input_labels=[[LABELS_2]]
        )
        model(session, frame_idx=0)
        run.phases["first"] = {
            o.frame_idx: _hf_out(o) for o in model.propagate_in_video_iterator(session)
        }
        if not full:
            _hf_memories(run, session)
            return run
        run.extras["after_first"] = copy.deepcopy(session)

        # 2. correction, as the official predictor does it (module docstring)
        obj = session.obj_id_to_idx(1)
        points = proc(
            input_points=[[FIX_CLICK]],
            input_labels=[[FIX_LABELS]],
            original_sizes=[[VIDEO_H, VIDEO_W]],
            return_tensors="pt",
        )
        point_inputs = {
            "point_coords": points["input_points"],
            "point_labels": points["input_labels"],
        }
        session.add_point_inputs(obj, FIX_FRAME, point_inputs)
        prev = session.get_output(obj, FIX_FRAME, "pred_masks", is_conditioning_frame=False)
        assert session.frames_tracked_per_obj[obj][FIX_FRAME] == {"reverse": False}
        out = model._run_single_frame_inference(
            inference_session=session,
            frame_idx=FIX_FRAME,
            obj_idx=obj,
            batch_size=1,
            is_init_cond_frame=False,
            point_inputs=point_inputs,
            mask_inputs=None,
            reverse=False,
            prev_sam_mask_logits=prev.clamp(-32.0, 32.0),
        )
        session.store_output(obj, FIX_FRAME, output_value=out, is_conditioning_frame=False)
        model._batch_encode_memories(
            inference_session=session,
            frame_idx=FIX_FRAME,
            objects_needing_memory_encoding=[obj],
            high_res_masks_for_memory=[out["high_res_masks"]],
            object_score_logits_for_memory=[out["object_score_logits"]],
            is_mask_from_pts_per_obj=[True],
        )
        other = _hf_stored(session, session.obj_id_to_idx(2), FIX_FRAME)
        run.phases["fix"] = {
            FIX_FRAME: _hf_frame(
                [1, 2],
                torch.cat([out["pred_masks"], other["pred_masks"]]),
                torch.cat([out["object_score_logits"], other["object_score_logits"]]),
            )
        }
        run.phases["second"] = {
            o.frame_idx: _hf_out(o)
            for o in model.propagate_in_video_iterator(session, start_frame_idx=FIX_FRAME + 1)
        }

        # 3. a box for a new object, then backward
        proc.add_inputs_to_inference_session(session, ADD_FRAME, 3, input_boxes=[[BOX_3]])
        run.phases["add"] = {ADD_FRAME: _hf_out(model(session, frame_idx=ADD_FRAME))}
        run.phases["back"] = {
            o.frame_idx: _hf_out(o)
            for o in model.propagate_in_video_iterator(
                session, start_frame_idx=ADD_FRAME, reverse=True
            )
        }
    _hf_memories(run, session)
    return run


def _hf_memories(run: Run, session) -> None:
    for obj_idx, d in session.output_dict_per_obj.items():
        obj_id = session.obj_idx_to_id(obj_idx)
        for outputs in d.values():
            for f, o in outputs.items():
                mem = o["maskmem_features"]  # (h*w, 1, C) bfloat16
                assert mem.dtype == torch.bfloat16
                h = w = IMAGE_SIZE // 16
                feats = mem[:, 0].float().T.reshape(-1, h, w)
                run.memory[(obj_id, f)] = (feats, o["object_pointer"].reshape(-1).float())


def _ours_frame(session, result) -> Frame:
    ids = list(session.object_ids)
    tracks = session.objects
    lows, videos = [], []
    for i in ids:
        out = tracks[i].output(result.frame_index, None)
        lows.append(out.low_res_logits.float())
        videos.append(session.logits(result.frame_index, i))
    return Frame(
        ids,
        torch.cat(lows),
        torch.cat(videos),
        torch.from_numpy(np.stack([result.masks[i] for i in ids])),
        torch.tensor([result.scores[i] for i in ids]),
    )


def _run_ours(model, folder, full: bool = True) -> Run:
    run = Run()
    predictor = VideoPredictor(model, fill_hole_area=0)  # HF fills no holes
    session = predictor.start(folder)
    session.add_prompt(0, 1, points=CLICK_1, labels=[1])
    session.add_prompt(0, 2, points=CLICKS_2, labels=LABELS_2)
    run.phases["first"] = {r.frame_index: _ours_frame(session, r) for r in session.propagate()}
    if full:
        # what HF's forward computes for the correction: no previous logits (see the test)
        track = session.objects[1]
        feats = vt.encode_frame(
            model,
            vt.load_frame(
                vt.list_video_frames(folder)[FIX_FRAME],
                IMAGE_SIZE,
                model.config.pixel_mean,
                model.config.pixel_std,
            )[0],
        )
        out = vt.track_step(
            model,
            FIX_FRAME,
            feats,
            is_init_cond_frame=False,
            point_inputs=vt.points_to_model(FIX_CLICK, FIX_LABELS, (VIDEO_H, VIDEO_W), IMAGE_SIZE),
            cond_memories={t: o.memory for t, o in track.cond.items()},
            non_cond_memories={t: o.memory for t, o in track.non_cond.items()},
            num_frames=NUM_FRAMES,
            run_mem_encoder=False,
        )
        run.extras["fix_without_prev"] = out
        run.extras["fix_feats"] = feats
        run.extras["obj2_fix_low"] = session.objects[2].output(FIX_FRAME).low_res_logits

        result = session.add_prompt(FIX_FRAME, 1, points=FIX_CLICK, labels=FIX_LABELS)
        run.phases["fix"] = {FIX_FRAME: _ours_frame(session, result)}
        run.phases["second"] = {r.frame_index: _ours_frame(session, r) for r in session.propagate()}
        result = session.add_prompt(ADD_FRAME, 3, box=BOX_3)
        run.phases["add"] = {ADD_FRAME: _ours_frame(session, result)}
        run.phases["back"] = {
            r.frame_index: _ours_frame(session, r) for r in session.propagate("backward")
        }
    for obj_id, track in session.objects.items():
        for outputs in (track.cond, track.non_cond):
            for f, o in outputs.items():
                assert o.memory is not None
                mem = o.memory
                assert mem.maskmem_features.dtype == torch.bfloat16
                run.memory[(obj_id, f)] = (
                    mem.maskmem_features[0].float(),
                    mem.obj_ptr.reshape(-1).float(),
                )
    run.extras["session"] = session
    return run


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    hf, ours, sd = _models("2.1")
    folder = tmp_path_factory.mktemp("clip")
    _write_clip(folder)
    theirs = _run_hf(hf, ours.config, folder)
    mine = _run_ours(ours, folder)
    yield {"hf": hf, "ours": ours, "sd": sd, "theirs": theirs, "mine": mine, "folder": folder}
    mine.extras["session"].close()


# ------------------------------------------------------------------------- helpers
def _assert_logits(ours: torch.Tensor, ref: torch.Tensor, max_flips: int, what: str) -> float:
    """Per object: exact ``NO_OBJ_SCORE`` placeholder for an absent object, else a relative
    bound and at most ``max_flips`` mask pixels of the other sign. Returns the max rel err."""
    assert ours.shape == ref.shape, what
    worst = 0.0
    for i in range(ref.shape[0]):
        a, b = ours[i].float(), ref[i].float()
        if bool((b == NO_OBJ).all()):
            assert bool((a == NO_OBJ).all()), f"{what} obj {i}: should be absent"
            continue
        err = float((a - b).abs().max()) / max(1.0, float(b.abs().max()))
        assert err <= REL_TOL, f"{what} obj {i}: rel err {err:.2e}"
        flips = int(((a > 0) != (b > 0)).sum())
        assert flips <= max_flips, f"{what} obj {i}: {flips} mask pixels differ"
        worst = max(worst, err)
    return worst


def _assert_frame(mine: Frame, theirs: Frame, what: str) -> tuple[float, float]:
    assert mine.ids == theirs.ids, what
    low = _assert_logits(mine.low, theirs.low, MAX_FLIPS_LOW, f"{what} low-res")
    _assert_logits(mine.video, theirs.video, MAX_FLIPS_VIDEO, f"{what} video")
    flips = int((mine.masks != theirs.masks).sum(dim=(1, 2)).max())
    assert flips <= MAX_FLIPS_VIDEO, f"{what}: {flips} video mask pixels differ"
    score = float((mine.scores - theirs.scores).abs().max())
    assert score <= SCORE_TOL, f"{what}: scores {mine.scores} vs {theirs.scores}"
    return low, score


def _assert_phase(scenario, phase: str, frames) -> None:
    theirs = scenario["theirs"].phases[phase]
    mine = scenario["mine"].phases[phase]
    assert list(theirs) == list(frames), (phase, list(theirs))
    worst_low = worst_score = 0.0
    for f in frames:
        low, score = _assert_frame(mine[f], theirs[f], f"{phase} frame {f}")
        worst_low, worst_score = max(worst_low, low), max(worst_score, score)
    print(f"{phase}: max rel logit err {worst_low:.2e}, max score diff {worst_score:.2e}")


# --------------------------------------------------------------------------- tests
def test_hf_video_state_dict_loads_strictly(scenario):
    """Every tensor of the full HF Sam2VideoModel state dict lands in samkit's model: exactly
    its keys and shapes, with the HF values (point embeddings split, Fourier copies merged)."""
    sd, ours = scenario["sd"], scenario["ours"]
    assert set(sd) == set(scenario["hf"].state_dict())
    converted = hf_to_official_sam2(sd)
    expected = ours.state_dict()
    assert set(converted) == set(expected)
    for key, value in converted.items():
        assert value.shape == expected[key].shape, key
        assert torch.equal(expected[key], value), key
    assert len(converted) == len(sd) + 3 - 1


def test_preprocessing_difference_is_as_documented():
    """HF's video processor: bilinear resize, same normalisation as the official loader
    (samkit's bicubic resize is the official one; the tests feed both samkit's frames)."""
    assert Sam2VideoVideoProcessor.resample == PILImageResampling.BILINEAR
    cfg = reduced_config("2.1", IMAGE_SIZE)
    assert tuple(IMAGENET_DEFAULT_MEAN) == tuple(cfg.pixel_mean)
    assert tuple(IMAGENET_DEFAULT_STD) == tuple(cfg.pixel_std)


def test_frame_features_match(scenario):
    hf, ours = scenario["hf"], scenario["ours"]
    cfg = ours.config
    image = vt.load_frame(
        vt.list_video_frames(scenario["folder"])[NUM_FRAMES - 1],
        IMAGE_SIZE,
        cfg.pixel_mean,
        cfg.pixel_std,
    )[0]
    with torch.inference_mode():
        out = hf.get_image_features(image[None], return_dict=True)
    feats = vt.encode_frame(ours, image)
    s0, s1, top = out.fpn_hidden_states
    pairs = [
        (feats.vision_feats, top),
        (feats.vision_pos, out.fpn_position_encoding[-1]),
        (feats.high_res_features[0].flatten(2).permute(2, 0, 1), s0),
        (feats.high_res_features[1].flatten(2).permute(2, 0, 1), s1),
    ]
    for a, b in pairs:
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4 * float(b.abs().max()))


def test_first_propagation_matches(scenario):
    _assert_phase(scenario, "first", range(NUM_FRAMES))


def test_random_weights_are_not_degenerate(scenario):
    """Every object present on every frame of every phase (``test_first_propagation_variants``
    covers absent objects), masks neither empty nor full, the objects' masks differ."""
    for phase, frames in scenario["theirs"].phases.items():
        for f, frame in frames.items():
            assert bool((frame.scores > 0.02).all()), (phase, f, frame.scores)
            fg = (frame.low > 0).float().mean(dim=(1, 2, 3))
            assert bool(((fg > 0.02) & (fg < 0.98)).all()), (phase, f, fg)
            for i in range(1, len(frame.ids)):
                assert not torch.equal(frame.low[0], frame.low[i]), (phase, f)


def test_correction_matches(scenario):
    _assert_phase(scenario, "fix", [FIX_FRAME])
    first = scenario["theirs"].phases["first"][FIX_FRAME]
    fix = scenario["theirs"].phases["fix"][FIX_FRAME]
    assert not torch.equal(fix.low[0], first.low[0])  # the click changed object 1
    torch.testing.assert_close(fix.low[1], first.low[1], rtol=0, atol=0)


def test_repropagation_after_correction_matches(scenario):
    """HF from the frame after the correction; samkit from the corrected frame (kept)."""
    _assert_phase(scenario, "second", range(FIX_FRAME + 1, NUM_FRAMES))
    mine = scenario["mine"].phases["second"]
    assert list(mine) == list(range(FIX_FRAME, NUM_FRAMES))
    fix = scenario["mine"].phases["fix"][FIX_FRAME]
    # object 1 keeps its corrected output; object 2 is re-tracked on the frame (alone,
    # where the first propagation tracked both objects in one batch: last-bit changes)
    torch.testing.assert_close(mine[FIX_FRAME].low[0], fix.low[0], rtol=0, atol=0)
    torch.testing.assert_close(mine[FIX_FRAME].low[1], fix.low[1], rtol=1e-4, atol=1e-4)
    first = scenario["theirs"].phases["first"][FIX_FRAME + 1]
    assert not torch.equal(scenario["theirs"].phases["second"][FIX_FRAME + 1].low[0], first.low[0])


def test_box_object_and_backward_propagation_match(scenario):
    _assert_phase(scenario, "add", [ADD_FRAME])
    _assert_phase(scenario, "back", range(ADD_FRAME, -1, -1))


def test_final_memories_match(scenario):
    """Every stored memory (features, bfloat16 on both sides, and object pointer) of every
    object and frame once the scenario is over."""
    theirs, mine = scenario["theirs"].memory, scenario["mine"].memory
    assert sorted(mine) == sorted(theirs)
    worst_mem = worst_ptr = 0.0
    for key, (mem, ptr) in theirs.items():
        my_mem, my_ptr = mine[key]
        scale = float(mem.abs().max())
        err = float((my_mem - mem).abs().max())
        assert err <= 2e-2 * scale, (key, err, scale)  # a couple of bfloat16 steps
        worst_mem = max(worst_mem, err / scale)
        scale = float(ptr.abs().max())
        err = float((my_ptr - ptr).abs().max())
        assert err <= REL_TOL * scale, (key, err, scale)
        worst_ptr = max(worst_ptr, err / scale)
    print(f"memories: max rel err {worst_mem:.2e}, pointers {worst_ptr:.2e}")
    objects = {k[0] for k in theirs}
    assert objects == {1, 2, 3}
    assert {f for o, f in theirs if o == 3} == set(range(ADD_FRAME + 1))


def test_hf_forward_correction_differs(scenario):
    """What HF's public path does with a correction click (``add_inputs_to_inference_session``
    then ``forward`` on the tracked frame), pinned against samkit's tracker: object 1 is
    decoded from the clicks on its memory *without* its previous logits, and object 2 is
    re-tracked (same logits) and its memory re-encoded from the binarised mask (as if it came
    from clicks) instead of the sigmoid of its logits."""
    hf, ours = scenario["hf"], scenario["ours"]
    session = copy.deepcopy(scenario["theirs"].extras["after_first"])
    extras = scenario["mine"].extras
    with torch.inference_mode():
        _processor().add_inputs_to_inference_session(
            session, FIX_FRAME, 1, input_points=[[FIX_CLICK]], input_labels=[[FIX_LABELS]]
        )
        out = hf(session, frame_idx=FIX_FRAME)
    ref = extras["fix_without_prev"]
    assert out.object_ids == [1, 2]
    _assert_logits(out.pred_masks[:1], ref.low_res_masks, MAX_FLIPS_LOW, "HF forward fix")
    torch.testing.assert_close(
        out.object_score_logits[:1], ref.object_score_logits.reshape(1, 1), rtol=0, atol=SCORE_TOL
    )
    official_fix = scenario["theirs"].phases["fix"][FIX_FRAME].low[:1]
    assert float((out.pred_masks[:1] - official_fix).abs().max()) > 100 * REL_TOL

    # object 2: the same logits, the memory from the binarised mask
    low2 = extras["obj2_fix_low"]
    _assert_logits(out.pred_masks[1:], low2, MAX_FLIPS_LOW, "HF forward object 2")
    stored = session.output_dict_per_obj[1]["non_cond_frame_outputs"][FIX_FRAME]
    h = w = IMAGE_SIZE // 16
    hf_mem = stored["maskmem_features"][:, 0].float().T.reshape(1, -1, h, w)
    score2 = stored["object_score_logits"].reshape(1, 1)
    high = vt.upsample_to_input(ours, low2)
    errs = {}
    for from_pts in (True, False):
        mem, _ = vt.encode_memory(
            ours, extras["fix_feats"], high, score2, is_mask_from_pts=from_pts
        )
        errs[from_pts] = float((mem.to(torch.bfloat16).float() - hf_mem).abs().max())
    bound = 2e-2 * float(hf_mem.abs().max())  # a couple of bfloat16 steps
    print(f"object 2 memory vs HF: binarised {errs[True]:.3g}, sigmoid {errs[False]:.3g}")
    assert errs[True] <= bound
    assert errs[False] > 2 * bound


# (version, object-score bias, frames, expected presence on the prompted frame 0 and on the
# tracked frames): 2.0 has no temporal encoding of pointers and no occlusion embedding.
VARIANTS = {
    "2.0-present": ("2.0", 0.6, 4, True, True),
    "2.0-absent-on-prompt": ("2.0", 0.0, 4, False, True),
    "2.1-absent-when-tracked": ("2.1", 0.7, 5, True, False),
}


@pytest.mark.parametrize("case", list(VARIANTS))
def test_first_propagation_variants(tmp_path, case):
    """Objects 1 and 2 prompted on frame 0 and propagated forward, then every memory, for
    other versions / presence patterns: an absent object gives ``NO_OBJ_SCORE`` logits,
    ``no_object_pointer`` and (2.1) the occlusion embedding in its memory, on both sides."""
    version, bias, num_frames, present_on_prompt, present_when_tracked = VARIANTS[case]
    hf, ours, _ = _models(version, bias)
    _write_clip(tmp_path, num_frames=num_frames)
    theirs = _run_hf(hf, ours.config, tmp_path, full=False)
    mine = _run_ours(ours, tmp_path, full=False)
    mine.extras["session"].close()
    run = theirs.phases["first"]
    assert bool(((run[0].scores > 0.01) if present_on_prompt else (run[0].scores < -0.01)).all())
    for f in range(1, num_frames):
        s = run[f].scores
        assert bool(((s > 0.01) if present_when_tracked else (s < -0.01)).all()), (f, s)
    _assert_phase({"theirs": theirs, "mine": mine}, "first", range(num_frames))
    assert sorted(mine.memory) == sorted(theirs.memory)
    for key, (mem, ptr) in theirs.memory.items():
        my_mem, my_ptr = mine.memory[key]
        assert float((my_mem - mem).abs().max()) <= 2e-2 * float(mem.abs().max()), key
        assert float((my_ptr - ptr).abs().max()) <= REL_TOL * float(ptr.abs().max()), key
