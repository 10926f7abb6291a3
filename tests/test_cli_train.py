"""``samkit synth`` and ``samkit train`` through the Typer app, in-process.

Training uses a tiny random architecture registered (in this process only) as the preset
``cli-train-tiny`` with a 256-pixel model input, so a step takes well under a second.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from tiny_models import assert_cli_error
from typer.testing import CliRunner

import samkit
from samkit.cli.main import app
from samkit.configs import (
    MaskDecoderConfig,
    ModelPreset,
    PromptEncoderConfig,
    SamConfig,
    ViTConfig,
)
from samkit.data import SA1BDataset
from samkit.data.synthetic_video import SyntheticVideoConfig, SyntheticVideoDataset

TINY = "cli-train-tiny"

runner = CliRunner()

# pycocotools' decode trips a numpy 2 deprecation warning inside pycocotools itself.
pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.usefixtures("cli_isolated"),  # private cache, cwd = tmp (conftest.py)
]


@pytest.fixture(scope="module", autouse=True)
def tiny_preset() -> str:
    """Register a tiny 256-input architecture (no published weights)."""
    cfg = SamConfig(
        encoder=ViTConfig(
            embed_dim=32,
            depth=1,
            num_heads=1,
            global_attn_indexes=(0,),
            out_chans=32,
            img_size=256,
        ),
        prompt_encoder=PromptEncoderConfig(
            embed_dim=32, mask_in_chans=4, image_embedding_size=16, input_image_size=256
        ),
        mask_decoder=MaskDecoderConfig(
            transformer_dim=32, transformer_heads=2, transformer_mlp_dim=64, iou_head_hidden_dim=32
        ),
        image_size=256,
    )
    if TINY not in samkit.list_models():
        samkit.configs.register(
            ModelPreset(name=TINY, config=cfg, weights=None, description="CLI train tests")
        )
    return TINY


def run(*args: str | os.PathLike[str]):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    result = run("synth", out, "--n", "2", "--size", "64,80", "--seed", "3")
    assert result.exit_code == 0, result.output
    return out


# -------------------------------------------------------------------- synth
def test_synth_writes_sa1b_dataset(tmp_path: Path) -> None:
    out = tmp_path / "data"
    result = run("synth", out, "--n", "3", "--size", "48,64", "--format", "jpg", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert "3" in result.stdout and str(out) in result.stdout
    assert len(list(out.glob("*.jpg"))) == 3
    assert len(list(out.glob("*.json"))) == 3
    ds = SA1BDataset(out)
    assert len(ds) == 3
    sample = ds[0]
    assert sample.image.shape == (48, 64, 3)
    assert sample.masks.shape[1:] == (48, 64) and sample.masks.shape[0] >= 1


def test_synth_video_writes_clips_with_masks_and_clicks(tmp_path: Path) -> None:
    out = tmp_path / "clips"
    result = run("synth", out, "--n", "2", "--video", "5", "--size", "48,64", "--seed", "3")
    assert result.exit_code == 0, result.output
    expected = SyntheticVideoDataset(2, seed=3, config=SyntheticVideoConfig((48, 64), 5))
    for i in range(2):
        record = json.loads((out / f"clip_{i:06d}.json").read_text())
        frames = sorted((out / record["frames"]).glob("*.png"))
        assert [f.name for f in frames] == [f"{t:05d}.png" for t in range(5)]
        clip = expected[i]
        assert len(record["objects"]) == clip.num_objects
        for k, obj in enumerate(record["objects"]):
            assert obj["id"] == k + 1 and obj["occluder"] == (k == clip.occluder)
            masks = mask_utils.decode(obj["masks"]).transpose(2, 0, 1).astype(bool)
            assert (masks == clip.masks[k]).all()
            if obj["first_frame_click"] is not None:
                x, y = obj["first_frame_click"]
                assert clip.masks[k, 0, y, x]
        assert (np.asarray(Image.open(frames[2])) == clip.frames[2]).all()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--n", "0"), "--n"),
        (("--n", "2", "--size", "8,8"), "--size"),
        (("--n", "2", "--size", "abc"), "--size"),
        (("--n", "1", "--video", "1"), "--video"),
    ],
)
def test_synth_errors(tmp_path: Path, args: tuple[str, ...], fragment: str) -> None:
    assert_cli_error(run("synth", tmp_path / "d", *args), fragment)


@pytest.mark.parametrize("out", ["", " "])
def test_synth_refuses_an_empty_out_dir(tmp_path: Path, out: str) -> None:
    """Typer turns "" into Path("."): the dataset went into the current folder."""
    assert_cli_error(run("synth", out, "--n", "1", "--size", "16,16"), "OUT_DIR is empty")
    assert list(tmp_path.iterdir()) == []  # the cwd (conftest.py)


@pytest.mark.parametrize("video", [(), ("--video", "3")])
def test_synth_size_too_large_for_memory(tmp_path: Path, video: tuple[str, ...]) -> None:
    """Numpy refuses a 10^16-pixel image at once (no memory is touched): one line, not
    its MemoryError traceback."""
    result = run("synth", tmp_path / "d", "--n", "1", "--size", "99999999,99999999", *video)
    assert_cli_error(result, "--size 99999999,99999999", "not enough memory")


def test_synth_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    """Writing into a folder with another dataset replaced its files and mixed seeds;
    now refused unless --overwrite (which replaces same-name files)."""
    out = tmp_path / "d"
    assert run("synth", out, "--n", "2", "--size", "32,32", "--seed", "1").exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert_cli_error(run("synth", out, "--n", "1", "--size", "32,32", "--seed", "2"), "not empty")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    again = run("synth", out, "--n", "1", "--size", "32,32", "--seed", "2", "--overwrite")
    assert again.exit_code == 0, again.output
    assert (out / "synth_000000.json").read_bytes() != before["synth_000000.json"]


# -------------------------------------------------------------------- train
def test_train_writes_loadable_checkpoint_and_metrics(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run(
        "train", dataset, "--model", TINY, "--no-pretrained", "--out", out,
        "--max-steps", "3", "--rounds", "3", "--masks-per-image", "2", "--lr", "1e-3",
        "--log-every", "1", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    final = out / "model_final.pt"
    assert str(final) in result.stdout
    assert str(out / "metrics.jsonl") in result.stdout
    model = samkit.load_model(TINY, checkpoint=final)
    state = torch.load(out / "trainer_state.pt", map_location="cpu", weights_only=True)
    assert state["step"] == 3
    for key, value in model.state_dict().items():
        assert torch.equal(value, state["model"][key]), key
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(r["loss"] == r["loss"] for r in records)  # finite, not NaN


def test_train_freeze_keeps_those_weights(dataset: Path, tmp_path: Path) -> None:
    """`--freeze` (repeatable) keeps the named parameters at their initial values."""
    out = tmp_path / "frozen"
    init = tmp_path / "init.pt"
    torch.save(samkit.build_model(TINY).state_dict(), init)
    result = run(
        "train", dataset, "--model", TINY, "--init-checkpoint", init, "--out", out,
        "--max-steps", "2", "--rounds", "3", "--lr", "1e-2", "--no-progress",
        "--freeze", "prompt_encoder.", "--freeze", "mask_decoder.transformer.",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    before = samkit.load_model(TINY, checkpoint=init).state_dict()
    after = samkit.load_model(TINY, checkpoint=out / "model_final.pt").state_dict()
    for key in before:
        frozen = key.startswith(("image_encoder.", "prompt_encoder.", "mask_decoder.transformer."))
        if frozen:
            assert torch.equal(before[key], after[key]), key
    assert any(
        not torch.equal(before[k], after[k]) for k in before if k.startswith("mask_decoder.output")
    )


def test_train_config_file_with_cli_override(dataset: Path, tmp_path: Path) -> None:
    cfg = {
        "model": TINY,
        "pretrained": False,
        "max_steps": 5,
        "lr": 0.5,
        "warmup_steps": 0,
        "schedule": "step",
        "num_rounds": 3,
        "masks_per_image": 1,
        "log_every": 1,
        "out_dir": str(tmp_path / "from_config"),
        "progress": False,
    }
    cfg_path = tmp_path / "train.json"
    cfg_path.write_text(json.dumps(cfg))
    result = run("train", dataset, "--config", cfg_path, "--max-steps", "2", "--lr", "0.001")
    assert result.exit_code == 0, result.output
    out = tmp_path / "from_config"
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert all(r["lr"] == pytest.approx(0.001) for r in records)
    state = torch.load(out / "trainer_state.pt", map_location="cpu", weights_only=True)
    assert state["config"]["lr"] == pytest.approx(0.001)
    assert state["config"]["max_steps"] == 2
    assert state["config"]["warmup_steps"] == 0  # from the file


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (("--lr", "-1"), "lr"),
        (("--model", "no-such-model"), "no-such-model"),
        (("--rounds", "2"), "num_rounds"),
        (("--init-checkpoint", "missing.pt"), "missing.pt"),
        (("--resume", "missing_state.pt"), "missing_state.pt"),
        (("--device", "nonsense"), "--device"),
        (("--freeze", "no_such_module."), "no_such_module."),
    ],
)
def test_train_option_errors(dataset: Path, extra: tuple[str, ...], fragment: str) -> None:
    result = run("train", dataset, "--model", TINY, "--no-pretrained", *extra)
    assert_cli_error(result, fragment)


def test_train_missing_and_empty_data(tmp_path: Path) -> None:
    assert_cli_error(
        run("train", tmp_path / "nope", "--model", TINY, "--no-pretrained"), "not found"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_cli_error(run("train", empty, "--model", TINY, "--no-pretrained"), "empty")


def test_train_bad_config_file(dataset: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": TINY, "learning_rate": 1}))
    assert_cli_error(run("train", dataset, "--config", bad), "learning_rate")
    assert_cli_error(run("train", dataset, "--config", tmp_path / "none.json"), "none.json")


def test_train_bad_init_checkpoint(dataset: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    result = run("train", dataset, "--model", TINY, "--init-checkpoint", junk, "--max-steps", "1")
    assert_cli_error(result, "junk.pt")


def test_train_sam2_model_writes_the_official_layout(dataset: Path, tmp_path: Path) -> None:
    """A SAM 2 model trains from the CLI (it used to fail with AttributeError: 'Sam2'
    object has no attribute 'preprocess') and its checkpoint is ``{"model": state_dict}``
    like the official SAM 2 files, loadable by samkit.load_model."""
    import helpers_sam2

    name = "cli-train-tiny-sam2"
    if name not in samkit.list_models():
        cfg = helpers_sam2.tiny_video_config("2.1")
        samkit.configs.register(
            ModelPreset(name=name, config=cfg, weights=None, description="CLI train tests")
        )
    out = tmp_path / "run"
    result = run(
        "train", dataset, "--model", name, "--no-pretrained", "--out", out,
        "--max-steps", "2", "--rounds", "3", "--masks-per-image", "2", "--log-every", "1",
        "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = torch.load(out / "model_final.pt", map_location="cpu", weights_only=True)
    assert list(saved) == ["model"]
    model = samkit.load_model(name, checkpoint=out / "model_final.pt")
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved["model"][key]), key
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert all(r["score_loss"] > 0 for r in records)  # SAM 2's object-score term is on


def test_train_run_folder_checks(dataset: Path, tmp_path: Path) -> None:
    """--out that is a file is one line (it was a NotADirectoryError traceback); a run
    whose checkpoints would replace its own --init-checkpoint is refused."""
    common = ("--model", TINY, "--max-steps", "1", "--no-progress")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert_cli_error(run("train", dataset, *common, "--out", a_file), "is a file")
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    init = samkit.build_model(samkit.get_preset(TINY).config).state_dict()
    for name in ("model_final.pt", "trainer_state.pt", "checkpoints/step_0000001.pt"):
        path = run_dir / name
        torch.save(init, path)
        before = path.read_bytes()
        result = run("train", dataset, *common, "--out", run_dir, "--init-checkpoint", path)
        assert_cli_error(result, "--init-checkpoint", "would be overwritten")
        assert path.read_bytes() == before
    assert not (run_dir / "metrics.jsonl").exists()


def test_train_resume_continues(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    common = ("--model", TINY, "--no-pretrained", "--out", out, "--rounds", "3", "--no-progress")
    assert run("train", dataset, *common, "--max-steps", "1").exit_code == 0
    state = out / "trainer_state.pt"
    result = run("train", dataset, *common, "--max-steps", "2", "--resume", state)
    assert result.exit_code == 0, result.output
    saved = torch.load(state, map_location="cpu", weights_only=True)
    assert saved["step"] == 2
    bad = tmp_path / "bad_state.pt"
    torch.save({"format": "other"}, bad)
    fresh = ("--out", tmp_path / "fresh")  # a new folder: the state itself is checked
    assert_cli_error(run("train", dataset, *common, *fresh, "--resume", bad), "bad_state.pt")


def test_resume_refuses_another_runs_state_in_a_run_folder(dataset: Path, tmp_path: Path) -> None:
    """--resume B's state with --out A (A holding its own run) replaced A's weights and
    mixed B's steps into A's metrics log; now refused. Continuing B in an empty folder, or
    A from its own state, works."""
    common = ("--model", TINY, "--no-pretrained", "--rounds", "3", "--no-progress")
    a, b = tmp_path / "A", tmp_path / "B"
    assert run("train", dataset, *common, "--out", a, "--max-steps", "1").exit_code == 0
    assert run("train", dataset, *common, "--out", b, "--max-steps", "1").exit_code == 0
    before = (a / "model_final.pt").read_bytes()
    log = (a / "metrics.jsonl").read_text()

    def resume(out: Path, state: Path):
        return run("train", dataset, *common, "--out", out, "--max-steps", "2", "--resume", state)

    assert_cli_error(resume(a, b / "trainer_state.pt"), "is not its state")
    assert (a / "model_final.pt").read_bytes() == before
    assert (a / "metrics.jsonl").read_text() == log
    resumed = resume(tmp_path / "C", b / "trainer_state.pt")
    assert resumed.exit_code == 0, resumed.output
    own = resume(a, a / "trainer_state.pt")
    assert own.exit_code == 0, own.output


def test_train_on_coco_annotations(dataset: Path, tmp_path: Path) -> None:
    """DATA as an images folder plus --coco-annotations (built from the synthetic JSONs)."""
    images, annotations = [], []
    for i, json_path in enumerate(sorted(dataset.glob("*.json")), start=1):
        doc = json.loads(json_path.read_text())
        info = doc["image"]
        images.append(
            {
                "id": i,
                "file_name": info["file_name"],
                "height": info["height"],
                "width": info["width"],
            }
        )
        for a in doc["annotations"]:
            annotations.append(
                {"id": len(annotations) + 1, "image_id": i, "segmentation": a["segmentation"],
                 "iscrowd": 0, "category_id": 1}
            )  # fmt: skip
    coco = tmp_path / "instances.json"
    coco.write_text(json.dumps({"images": images, "annotations": annotations}))
    out = tmp_path / "coco_run"
    result = run(
        "train", dataset, "--coco-annotations", coco, "--model", TINY, "--no-pretrained",
        "--out", out, "--max-steps", "1", "--rounds", "3", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "model_final.pt").is_file()
    assert_cli_error(
        run("train", dataset, "--coco-annotations", tmp_path / "nope.json", "--model", TINY),
        "nope.json",
    )


# ------------------------------------------------------------ run folder, resume
def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_train_refuses_an_out_holding_a_run(dataset: Path, tmp_path: Path) -> None:
    """A fresh run into a folder holding a run is refused (it used to replace
    model_final.pt / trainer_state.pt and append to the old metrics.jsonl); --overwrite
    starts it afresh; --log-every 0 prints no metrics path."""
    out = tmp_path / "run"
    common = ("--model", TINY, "--no-pretrained", "--out", out, "--rounds", "3", "--no-progress")
    assert run("train", dataset, *common, "--max-steps", "2", "--log-every", "1").exit_code == 0
    files = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = run("train", dataset, *common, "--max-steps", "1")
    assert_cli_error(result, "already holds a run", "--resume", "--overwrite")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == files

    result = run("train", dataset, *common, "--max-steps", "1", "--overwrite", "--log-every", "1")
    assert result.exit_code == 0, result.output
    assert "replacing the run" in result.stderr
    assert [r["step"] for r in _records(out)] == [1]
    state = torch.load(out / "trainer_state.pt", map_location="cpu", weights_only=True)
    assert state["step"] == 1

    both = run("train", dataset, *common, "--overwrite", "--resume", out / "trainer_state.pt")
    assert_cli_error(both, "--resume", "--overwrite")

    resumed = run(
        "train", dataset, *common, "--max-steps", "2", "--log-every", "0",
        "--resume", out / "trainer_state.pt",
    )  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    assert "metrics" not in resumed.stdout  # the old log exists, this run wrote nothing
    assert [r["step"] for r in _records(out)] == [1]
    quiet = ("--out", tmp_path / "quiet", "--max-steps", "1", "--log-every", "0")
    fresh = run("train", dataset, "--model", TINY, "--no-pretrained", "--rounds", "3", *quiet)
    assert fresh.exit_code == 0, fresh.output
    assert "metrics" not in fresh.stdout and not (tmp_path / "quiet" / "metrics.jsonl").exists()


def test_train_resume_uses_this_runs_lr(dataset: Path, tmp_path: Path) -> None:
    """--lr given on resume is the lr the optimizer uses and the log shows (the saved
    one used to be kept while cfg.lr * factor was logged)."""
    from samkit.train.config import TrainConfig, lr_factor

    out = tmp_path / "run"
    common = ("--model", TINY, "--no-pretrained", "--out", out, "--rounds", "3", "--no-progress",
              "--log-every", "1")  # fmt: skip
    assert run("train", dataset, *common, "--max-steps", "1", "--lr", "1e-3").exit_code == 0
    state = out / "trainer_state.pt"
    result = run("train", dataset, *common, "--max-steps", "2", "--lr", "0.5", "--resume", state)
    assert result.exit_code == 0, result.output
    cfg = TrainConfig(lr=0.5, max_steps=2)  # default warmup: 100 steps
    assert _records(out)[-1]["lr"] == pytest.approx(0.5 * lr_factor(cfg, 1))
    saved = torch.load(state, map_location="cpu", weights_only=True)
    for group in saved["optimizer"]["param_groups"]:
        assert group["lr"] == pytest.approx(0.5 * group["lr_scale"] * lr_factor(cfg, 2))
    assert saved["scheduler"]["base_lrs"] == pytest.approx([0.5, 0.5])  # decay, no decay


def test_train_skips_images_without_masks(dataset: Path, tmp_path: Path) -> None:
    """Images whose JSON has no annotation are skipped with one note; a dataset without
    any is one line (it used to train steps of nothing and exit 0 with zero metrics)."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    jsons = sorted(data.glob("*.json"))
    doc = json.loads(jsons[0].read_text())
    jsons[0].write_text(json.dumps({**doc, "annotations": []}))
    common = ("--model", TINY, "--no-pretrained", "--rounds", "3", "--no-progress",
              "--max-steps", "2", "--log-every", "1")  # fmt: skip
    result = run("train", data, *common, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if "no mask" in line]
    assert notes == ["note: 1 of 2 images have no mask and are skipped"]
    assert "on 1 images" in result.stdout
    assert all(r["loss"] > 0 for r in _records(tmp_path / "run"))

    doc = json.loads(jsons[1].read_text())
    jsons[1].write_text(json.dumps({**doc, "annotations": []}))
    result = run("train", data, *common, "--out", tmp_path / "run2")
    assert_cli_error(result, "none of the 2 images has a mask")
    assert not (tmp_path / "run2" / "metrics.jsonl").exists()


def test_train_unwritable_out_is_one_line(dataset: Path) -> None:
    """--out below a file, or where the OS refuses a folder, is one line (it was a
    NotADirectoryError / FileNotFoundError traceback from the embedding cache)."""
    image = sorted(dataset.glob("*.png"))[0]
    common = ("--model", TINY, "--no-pretrained", "--max-steps", "1", "--no-progress")
    assert_cli_error(run("train", dataset, *common, "--out", image / "sub"), "is a file")
    if Path("/proc/self").is_dir():
        assert_cli_error(
            run("train", dataset, *common, "--out", "/proc/samkit-x"), "/proc/samkit-x"
        )


def test_train_resume_mismatch_is_named(dataset: Path, tmp_path: Path) -> None:
    """A state of another model or of a run with another --freeze is one line naming the
    mismatch (it was 'Error(s) in loading state_dict for Sam:' naming nothing, after
    overwriting weights); a pickled file never gets torch's advice to unpickle it."""
    other = "cli-train-tiny-deeper"
    if other not in samkit.list_models():
        base = samkit.get_preset(TINY).config
        deeper = SamConfig(
            encoder=ViTConfig(
                embed_dim=32, depth=2, num_heads=1, global_attn_indexes=(1,), out_chans=32,
                img_size=256,
            ),
            prompt_encoder=base.prompt_encoder,
            mask_decoder=base.mask_decoder,
            image_size=256,
        )  # fmt: skip
        samkit.configs.register(
            ModelPreset(name=other, config=deeper, weights=None, description="CLI train tests")
        )
    out = tmp_path / "run"
    common = ("--no-pretrained", "--out", out, "--rounds", "3", "--no-progress")
    frozen = ("--freeze", "prompt_encoder.")
    assert (
        run("train", dataset, "--model", TINY, *common, "--max-steps", "1", *frozen).exit_code == 0
    )
    state = out / "trainer_state.pt"
    result = run("train", dataset, "--model", other, *common, "--resume", state)
    assert_cli_error(result, f"state of model '{TINY}', this run is '{other}'")
    result = run("train", dataset, "--model", TINY, *common, "--resume", state)
    assert_cli_error(result, "prompt_encoder.", "freeze")
    pickled = tmp_path / "pickled.pt"
    torch.save({"x": np.zeros(2)}, pickled)
    fresh = (*common[:1], "--out", tmp_path / "fresh", *common[3:])  # state checked itself
    line = assert_cli_error(
        run("train", dataset, "--model", TINY, *fresh, "--resume", pickled), "pickled.pt"
    )
    assert "weights_only" not in line and "not a samkit trainer state" in line


def test_diverged_training_is_an_error_not_a_success(dataset: Path, tmp_path: Path) -> None:
    """A loss that turns NaN (here an absurd learning rate) stops the run with one line
    naming the step (it reported "trained ... for 3 steps" and saved NaN weights)."""
    out = tmp_path / "run"
    result = run(
        "train", dataset, "--model", TINY, "--no-pretrained", "--out", out, "--max-steps", "4",
        "--rounds", "3", "--lr", "1e30", "--train-encoder",
        "--no-progress",
    )  # fmt: skip
    assert_cli_error(result, "training diverged", "at step")
    assert not (out / "model_final.pt").exists()
    assert issubclass(samkit.TrainingDiverged, samkit.SamkitError)
