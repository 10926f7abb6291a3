"""The video protocol (samkit.eval.video) with scripted predictors whose scores are known."""

from __future__ import annotations

import numpy as np
import pytest

from samkit.data.synthetic_video import SyntheticVideoConfig, SyntheticVideoDataset
from samkit.eval.metrics import j_and_f
from samkit.eval.video import clips_from, evaluate_video
from samkit.video import FrameResult


class _ScriptedSession:
    """Answers propagate() with a fixed rule: the ground truth ("oracle"), the
    first frame's prompt mask ("static") or nothing ("empty")."""

    def __init__(self, masks: np.ndarray, rule: str, log: list):
        self.gt, self.rule, self.log = masks, rule, log
        self.prompts: dict[int, dict] = {}

    def add_prompt(self, frame, obj_id, points=None, labels=None, box=None, mask=None):
        inside = None
        if points is not None:  # is the click inside the object's first-frame mask?
            ((x, y),) = points
            inside = bool(self.gt[obj_id - 1][0][y, x])
        self.log.append((frame, obj_id, points, labels, box, mask is not None, inside))
        self.prompts[obj_id] = {"mask": mask}

    def propagate(self):
        t_len = self.gt.shape[1]
        for t in range(t_len):
            masks, vis = {}, {}
            for oid in self.prompts:
                gt = self.gt[oid - 1]
                if self.rule == "oracle":
                    m = gt[t]
                elif self.rule == "static":
                    m = gt[0]
                else:
                    m = np.zeros_like(gt[t])
                masks[oid], vis[oid] = m, bool(m.any())
            yield FrameResult(t, masks, dict.fromkeys(masks, 0.0), vis)

    def close(self):
        self.log.append("closed")


class _ScriptedPredictor:
    def __init__(self, clips, rule):
        self.masks = [m for _, m in clips]
        self.rule, self.log, self.calls = rule, [], 0

    def start(self, frames):
        s = _ScriptedSession(self.masks[self.calls], self.rule, self.log)
        self.calls += 1
        return s


def _data(n=3):
    return SyntheticVideoDataset(
        n, seed=7, config=SyntheticVideoConfig(size=(64, 80), num_frames=9)
    )


def test_oracle_scores_one_and_detects_every_hidden_frame():
    clips = list(clips_from(_data()))
    res = evaluate_video(_ScriptedPredictor(clips, "oracle"), clips, "mask")
    assert res.j == pytest.approx(1.0) and res.f == pytest.approx(1.0)
    assert res.jf == pytest.approx(1.0)
    assert res.hidden_frame_accuracy in (None, 1.0)
    assert res.occluded_j in (None, pytest.approx(1.0))


def test_static_predictor_equals_the_hand_computed_j_and_f():
    clips = list(clips_from(_data()))
    res = evaluate_video(_ScriptedPredictor(clips, "static"), clips, "box")
    expected = []
    for _, masks in clips:
        for i in range(masks.shape[0]):
            if masks[i, 0].sum() >= 30:
                pred = np.repeat(masks[i, :1], masks.shape[1], axis=0)
                expected.append(j_and_f(pred, masks[i], exclude_first_last=True))
    assert len(res.per_object) == len(expected)
    assert res.j == pytest.approx(np.mean([e.j_mean for e in expected]))
    assert res.f == pytest.approx(np.mean([e.f_mean for e in expected]))
    assert res.summary()["objects"] == len(expected)


def test_prompts_are_given_on_frame_0_and_sessions_closed():
    clips = list(clips_from(_data(2)))
    for kind in ("mask", "box", "click"):
        pred = _ScriptedPredictor(clips, "empty")
        res = evaluate_video(pred, clips, kind)
        prompts = [e for e in pred.log if e != "closed"]
        assert all(e[0] == 0 for e in prompts)
        assert pred.log.count("closed") == 2
        if kind == "mask":
            assert all(e[5] for e in prompts)
        elif kind == "box":
            assert all(e[4] is not None and e[2] is None for e in prompts)
        else:
            assert all(e[3] == [1] and e[6] for e in prompts)
        # an empty prediction scores J = 0 on visible frames, 1 on hidden ones
        assert res.j < 0.5
    with pytest.raises(ValueError):
        evaluate_video(_ScriptedPredictor(clips, "oracle"), clips, "scribble")  # type: ignore[arg-type]


def test_unscorable_clips_are_refused_before_tracking():
    """A 2-frame clip cannot be scored with the first and last frames excluded (the
    DAVIS protocol): a sequence of clips is checked before anything is tracked (it used
    to fail in j_and_f after tracking every earlier clip); an iterator, before that clip."""
    from samkit.errors import InvalidArgument

    clips = list(clips_from(_data(2)))
    frames, masks = clips[1]
    short = [clips[0], (frames[:2], masks[:, :2])]
    pred = _ScriptedPredictor(short, "oracle")
    with pytest.raises(InvalidArgument, match="clip 1 has 2 frame"):
        evaluate_video(pred, short, "mask")
    assert pred.calls == 0
    pred = _ScriptedPredictor(short, "oracle")
    with pytest.raises(InvalidArgument, match="clip 1 has 2 frame"):
        evaluate_video(pred, iter(short), "mask")
    assert pred.calls == 1
    # scored on every frame instead, the short clip is fine
    res = evaluate_video(_ScriptedPredictor(short, "oracle"), short, exclude_first_last=False)
    assert res.jf == pytest.approx(1.0)
    mismatched = [(frames, masks[:, :3])]
    with pytest.raises(InvalidArgument, match="clip 0: frames"):
        evaluate_video(_ScriptedPredictor(mismatched, "oracle"), mismatched)
