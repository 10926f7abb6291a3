"""Video training (samkit.train.video): the differentiable tracking step equals the
predictor's, gradients reach the memory modules through the memory bank, the loss falls,
and a resumed run replays the same steps."""

from __future__ import annotations

import dataclasses
import json

import helpers_sam2 as h
import numpy as np
import pytest
import torch

import samkit
from samkit.data.synthetic_video import SyntheticVideoConfig
from samkit.errors import CheckpointError, OutputError
from samkit.train import video as train_video
from samkit.train.video import BestActualCandidate, VideoTrainConfig, VideoTrainer
from samkit.video import Points, encode_frame, model_frame, track_step
from samkit.video.tracker import encode_frame_with_grad, track_step_with_grad


def _model(seed: int = 0, **flags) -> samkit.Sam2:
    """The tiny video model without dropout; ``flags`` replace config fields."""
    cfg = h.tiny_video_config()
    cfg = dataclasses.replace(cfg, memory=dataclasses.replace(cfg.memory, dropout=0.0), **flags)
    torch.manual_seed(seed)
    return samkit.build_model(cfg)


def _config(**kw) -> VideoTrainConfig:
    base = dict(
        max_steps=40,
        lr=1e-3,
        warmup_steps=5,
        num_frames=4,
        log_every=0,
        save_every=0,
        clip=SyntheticVideoConfig(objects=(1, 1)),
    )
    base.update(kw)
    return VideoTrainConfig(**base)


def test_differentiable_step_equals_the_predictor_step():
    model = _model().eval()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    pts = Points(torch.tensor([[[20.0, 30.0]], [[40.0, 12.0]]]), torch.tensor([[1], [1]]))
    with torch.no_grad():
        f0 = encode_frame_with_grad(model, model_frame(model, frames[0]))
        a0 = track_step_with_grad(
            model, 0, f0, is_init_cond_frame=True, point_inputs=pts, num_frames=2
        )
        f1 = encode_frame_with_grad(model, model_frame(model, frames[1]))
        mem = {0: a0.to_memory(0, True)}
        a1 = track_step_with_grad(
            model, 1, f1, is_init_cond_frame=False, cond_memories=mem, num_frames=2
        )
    g0 = encode_frame(model, model_frame(model, frames[0]))
    b0 = track_step(model, 0, g0, is_init_cond_frame=True, point_inputs=pts, num_frames=2)
    g1 = encode_frame(model, model_frame(model, frames[1]))
    b1 = track_step(
        model,
        1,
        g1,
        is_init_cond_frame=False,
        cond_memories={0: b0.to_memory(0, True)},
        num_frames=2,
    )
    for a, b in ((a0, b0), (a1, b1)):
        torch.testing.assert_close(a.multimask_logits, b.multimask_logits, rtol=0, atol=1e-5)
        torch.testing.assert_close(a.object_score_logits, b.object_score_logits, rtol=0, atol=1e-5)
        torch.testing.assert_close(a.maskmem_features, b.maskmem_features, rtol=0, atol=1e-5)
    # the ungated decoder logits agree with the gated ones wherever the object is present
    present = a1.object_score_logits[:, 0] > 0
    torch.testing.assert_close(a1.decoder_masks[present], a1.multimask_logits[present])


def test_gradient_reaches_memory_modules_through_the_bank():
    model = _model()
    trainer = VideoTrainer(model, _config(prob_mask_prompt=1.0), "unused")
    out = trainer.clip_forward(trainer.clip(0), np.random.default_rng(0))
    assert out is not None
    out["loss"].backward()
    # frame 0 is the prompt itself (a mask): every gradient comes from tracked frames,
    # which see frame 0 only through its memory and pointer
    for prefix in ("memory_attention.", "memory_encoder.", "obj_ptr_proj.", "maskmem_tpos_enc"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(prefix)]
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), prefix


def test_single_output_tracking_trains_the_single_output(monkeypatch):
    """With ``multimask_output_for_tracking=False`` tracked frames give one candidate
    (decoder output 0), so the mask loss of a mask-prompted clip reaches hypernetwork 0
    and none of the three multimask hypernetworks."""
    # train mode, as in train_step: no dynamic fallback to the multimask outputs
    model = _model(multimask_output_for_tracking=False).train()
    seen = []
    real = train_video.clip_loss

    def spy(outputs, *args):
        seen.extend(outputs)
        return real(outputs, *args)

    monkeypatch.setattr(train_video, "clip_loss", spy)
    trainer = VideoTrainer(model, _config(prob_mask_prompt=1.0), "unused")
    out = trainer.clip_forward(trainer.clip(0), np.random.default_rng(0))
    assert out is not None and len(seen) == 4
    assert all(o.decoder_masks.shape[1] == 1 for o in seen[1:])
    out["loss"].backward()
    hyper = model.sam_mask_decoder.output_hypernetworks_mlps
    assert float(hyper[0].layers[0].weight.grad.abs().sum()) > 0
    for k in (1, 2, 3):
        grad = hyper[k].layers[0].weight.grad
        assert grad is None or float(grad.abs().sum()) == 0, k


def test_teacher_forcing_keeps_the_best_actual_candidate():
    """``BestActualCandidate`` replaces the predicted-IoU choice by the actual-IoU one: the kept
    low-res mask, and so the memory and the object pointer, follow the ground truth,
    while the reported predicted IoUs do not change."""
    model = _model().eval()
    frame = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    pts = Points(torch.tensor([[[20.0, 30.0]], [[40.0, 12.0]]]), torch.tensor([[1], [1]]))
    with torch.no_grad():
        feats = encode_frame_with_grad(model, model_frame(model, frame))

        def step(teacher=None):
            return track_step_with_grad(
                model,
                0,
                feats,
                is_init_cond_frame=True,
                point_inputs=pts,
                num_frames=2,
                choose_candidate=None if teacher is None else BestActualCandidate(teacher),
            )

        free = step()
        s = model.image_size
        cands = torch.nn.functional.interpolate(
            free.multimask_logits, size=(s, s), mode="bilinear", align_corners=False
        )
        assert free.multimask_logits.shape[1] == 3
        predicted = free.ious.argmax(dim=1)
        # Teach object 0 the candidate after its predicted one, object 1 the one before.
        want = torch.stack([(predicted[0] + 1) % 3, (predicted[1] + 2) % 3])
        teacher = (cands[torch.arange(2), want] > 0).float()[:, None]
        # The candidates differ, so the taught one is the unique best match.
        for i in range(2):
            sizes = (cands[i] > 0).flatten(1).sum(1)
            assert len(set(sizes.tolist())) == 3, sizes
        forced = step(teacher)
    torch.testing.assert_close(forced.ious, free.ious, rtol=0, atol=0)
    for i in range(2):
        torch.testing.assert_close(
            forced.low_res_masks[i, 0], free.multimask_logits[i, int(want[i])], rtol=0, atol=0
        )
    assert not torch.equal(forced.obj_ptr, free.obj_ptr)
    assert not torch.equal(forced.maskmem_features, free.maskmem_features)


def test_teacher_forcing_steps_switch_off(monkeypatch):
    """The trainer passes the ground truth (as a ``BestActualCandidate`` chooser) for the
    first ``teacher_forcing_steps`` optimizer steps only."""
    calls = []
    real = train_video.track_step_with_grad

    def spy(*args, **kwargs):
        calls.append(kwargs.get("choose_candidate"))
        return real(*args, **kwargs)

    monkeypatch.setattr(train_video, "track_step_with_grad", spy)
    trainer = VideoTrainer(_model(), _config(teacher_forcing_steps=1), "unused")
    trainer.train_step()
    first = list(calls)
    calls.clear()
    trainer.train_step()
    assert len(first) == 4 and all(t is not None for t in first)
    assert all(isinstance(t, BestActualCandidate) for t in first)
    size = trainer.model.image_size
    assert first[0].targets.shape[1:] == (1, size, size)
    assert len(calls) == 4 and all(t is None for t in calls)


def test_loss_falls_on_a_short_cpu_run(tmp_path):
    model = _model()
    trainer = VideoTrainer(model, _config(), tmp_path)
    losses = [trainer.train_step()["loss"] for _ in range(40)]
    first, last = np.mean(losses[:8]), np.mean(losses[-8:])
    # measured: 2.77 -> 1.73 (0.62x)
    assert last < 0.75 * first, (first, last)


def test_resume_replays_the_same_steps(tmp_path):
    a = VideoTrainer(_model(), _config(), tmp_path / "a")
    for _ in range(3):
        a.train_step()
    a.save_state(tmp_path / "state.pt")
    expected = [a.train_step()["loss"] for _ in range(2)]
    b = VideoTrainer(_model(seed=1), _config(), tmp_path / "b")
    b.resume(tmp_path / "state.pt")
    assert b.step == 3
    got = [b.train_step()["loss"] for _ in range(2)]
    assert got == pytest.approx(expected, rel=1e-5)
    with pytest.raises(CheckpointError, match="not a samkit video trainer state"):
        torch.save({"format": "x"}, tmp_path / "bad.pt")
        b.resume(tmp_path / "bad.pt")


def test_fit_writes_metrics_and_an_official_format_checkpoint(tmp_path):
    model = _model()
    trainer = VideoTrainer(model, _config(max_steps=4, log_every=2, save_every=2), tmp_path)
    records = trainer.fit(progress=False)
    assert [r["step"] for r in records] == [2, 4]
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 2
    state = torch.load(tmp_path / "model_final.pt", weights_only=True)
    assert list(state) == ["model"]  # the official SAM 2 layout (what build_sam2 reads)
    fresh = _model(seed=3)
    fresh.load_state_dict(state["model"], strict=True)
    assert (tmp_path / "checkpoints" / "step_0000002.pt").exists()

    # a new run into the same folder is refused; overwrite starts a fresh log
    again = VideoTrainer(_model(), _config(max_steps=2, log_every=2, save_every=0), tmp_path)
    with pytest.raises(OutputError, match="already holds a run"):
        again.fit(progress=False)
    assert (tmp_path / "metrics.jsonl").read_text().count("\n") == 2
    again.fit(progress=False, overwrite=True)
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").open()] == [2]
    assert not (tmp_path / "checkpoints" / "step_0000002.pt").exists()
    # a resumed trainer continues the folder's log
    resumed = VideoTrainer(_model(), _config(max_steps=4, log_every=2, save_every=0), tmp_path)
    resumed.resume(tmp_path / "trainer_state.pt")
    resumed.fit(progress=False)
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").open()] == [2, 4]


def _one_frame_output(iou_logits: torch.Tensor, s: int = 16):
    """A tracked frame for one object: three fixed candidates (the first covers the left
    half, the others are empty) and IoU predictions ``sigmoid(iou_logits)``."""
    from samkit.video import TrackOutput

    logits = torch.full((1, 3, s // 4, s // 4), -20.0)
    logits[0, 0, :, : s // 8] = 20.0
    return TrackOutput(
        low_res_masks=logits[:, :1],
        high_res_masks=torch.zeros(1, 1, s, s),
        multimask_logits=logits,
        ious=torch.sigmoid(iou_logits),
        obj_ptr=torch.zeros(1, 8),
        object_score_logits=torch.full((1, 1), 5.0),
        decoder_masks=logits,
    )


@pytest.mark.parametrize("kind", ["l1", "bce"])
def test_iou_loss_gradient_on_the_head_logits(kind):
    """d loss / d logit: BCE gives (predicted - actual) / K at any logit; L1 gives
    sign(predicted - actual) * p (1 - p) / K, which vanishes for a saturated head."""
    from samkit.train.video import clip_loss

    s = 16
    target = torch.zeros(2, 1, 1, s, s)
    target[:, 0, 0, :, : s // 4] = 1.0  # the left quarter: candidate 0 has IoU 0.5
    actual = torch.tensor([0.5, 0.0, 0.0])
    z = torch.tensor([[-8.0, 0.3, -1.0]], requires_grad=True)
    frames = [_one_frame_output(z.detach()), _one_frame_output(z)]
    cfg = _config(iou_loss=kind, focal_weight=0.0, dice_weight=0.0, score_weight=0.0)
    out = clip_loss(frames, target, torch.ones(2, 1, dtype=torch.bool), [False, True], cfg)
    out["loss"].backward()
    p = torch.sigmoid(z.detach())[0]
    if kind == "bce":
        expected = (p - actual) / 3
    else:
        expected = torch.sign(p - actual) * p * (1 - p) / 3
    torch.testing.assert_close(z.grad[0], expected, rtol=1e-4, atol=1e-7)
    if kind == "bce":
        assert abs(float(z.grad[0, 0])) > 0.1  # the saturated candidate still learns


def test_iou_loss_name_is_checked():
    with pytest.raises(ValueError, match="iou_loss"):
        VideoTrainConfig(iou_loss="mse")
