"""``TrainConfig`` validation: every field is checked against its annotated type, every
invalid value (library or ``samkit train --config``) is an :class:`InvalidConfig` naming
the field and the value, and YAML configs read ``1e-3`` as a number."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from tiny_models import TINY_256, assert_cli_error
from typer.testing import CliRunner

import samkit
from samkit import InvalidConfig, SamkitError
from samkit.cli.main import app
from samkit.configs import ModelPreset
from samkit.train.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
TINY = "train-config-tiny"

runner = CliRunner()


def run(*args: str | os.PathLike[str]):
    return runner.invoke(app, [str(a) for a in args])


# Each value is wrong for its field's type; the message must name the field and the value.
BAD_VALUES = [
    ("weight_decay", "x"),
    ("min_lr_ratio", None),
    ("clip_grad_norm", "1"),
    ("lr", "1e-3"),
    ("lr", True),
    ("step_gamma", [0.5]),
    ("betas", "0.9"),
    ("betas", [0.9]),
    ("betas", [0.9, 0.99, 0.999]),
    ("betas", [0.9, "0.99"]),
    ("freeze", 5),
    ("freeze", ["prompt_encoder.", 3]),
    ("step_milestones", [1, "a"]),
    ("step_milestones", [1, 2.5]),
    ("step_milestones", 7),
    ("out_dir", 5),
    ("out_dir", None),
    ("out_dir", ["runs"]),
    ("init_checkpoint", 5),
    ("init_checkpoint", False),
    ("bf16", "no"),
    ("bf16", 1),
    ("freeze_image_encoder", "false"),
    ("pretrained", "false"),
    ("progress", 0),
    ("cache_embeddings", None),
    ("max_steps", 10.0),
    ("max_steps", "10"),
    ("seed", True),
    ("schedule_steps", "100"),
    ("num_rounds", None),
    ("model", 3),
    ("model", None),
    ("schedule", ["cosine"]),
    ("device", 0),
]


def _ids(case: tuple[str, object]) -> str:
    return f"{case[0]}={case[1]!r}"


@pytest.mark.parametrize(("name", "value"), BAD_VALUES, ids=[_ids(c) for c in BAD_VALUES])
def test_bad_type_is_invalid_config_naming_the_field(name: str, value: object) -> None:
    with pytest.raises(InvalidConfig) as info:
        TrainConfig(**{name: value})
    message = str(info.value)
    assert f"TrainConfig.{name}={value!r}" in message, message
    assert info.value.field == name
    assert "\n" not in message
    with pytest.raises(InvalidConfig, match=f"TrainConfig.{name}="):
        TrainConfig.from_dict({name: value})


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"lr": -1}, "lr"),
        ({"lr": float("inf")}, "lr"),
        ({"weight_decay": float("nan")}, "weight_decay"),
        ({"clip_grad_norm": float("inf")}, "clip_grad_norm"),
        ({"lr": 10**400}, "lr"),
        ({"betas": (0.9, 1.0)}, "betas"),
        ({"step_milestones": (30, 10)}, "step_milestones"),
        ({"num_rounds": 2}, "num_rounds"),
        ({"freeze": ("",)}, "freeze"),
        ({"out_dir": ""}, "out_dir"),
        ({"model": ""}, "model"),
        ({"device": ""}, "device"),
    ],
)
def test_bad_range_is_invalid_config(kw: dict, name: str) -> None:
    with pytest.raises(InvalidConfig, match=f"invalid TrainConfig.{name}=") as info:
        TrainConfig(**kw)
    assert info.value.field == name
    assert len(str(info.value)) < 300  # a huge value is shortened


def test_invalid_config_is_a_samkit_value_error() -> None:
    assert issubclass(InvalidConfig, SamkitError) and issubclass(InvalidConfig, ValueError)
    assert samkit.InvalidConfig is InvalidConfig and "InvalidConfig" in samkit.__all__
    err = pickle.loads(pickle.dumps(InvalidConfig("m", field="lr", path="a.json")))
    assert (str(err), err.field, err.path) == ("m", "lr", "a.json")


def test_valid_values_are_normalised() -> None:
    import numpy as np

    cfg = TrainConfig(
        lr=1,
        betas=[0.5, 0],
        step_milestones=[np.int64(3), 7],
        freeze="prompt_encoder.",
        out_dir=Path("runs") / "a",
        init_checkpoint=Path("w.pt"),
        seed=np.int64(4),
        clip_grad_norm=None,
        schedule_steps=None,
    )
    assert cfg.lr == 1.0 and type(cfg.lr) is float
    assert cfg.betas == (0.5, 0.0) and all(type(b) is float for b in cfg.betas)
    assert cfg.step_milestones == (3, 7) and all(type(m) is int for m in cfg.step_milestones)
    assert cfg.freeze == ("prompt_encoder.",)
    assert cfg.out_dir == os.path.join("runs", "a") and cfg.init_checkpoint == "w.pt"
    assert cfg.seed == 4 and type(cfg.seed) is int
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_validate_rechecks_a_mutated_config() -> None:
    cfg = TrainConfig()
    cfg.bf16 = "yes"  # type: ignore[assignment]
    with pytest.raises(InvalidConfig, match="TrainConfig.bf16='yes'"):
        cfg.validate()


@pytest.mark.parametrize(
    "path", sorted(REPO.glob("scripts/demo_train*.json")), ids=lambda p: p.name
)
def test_demo_configs_load(path: Path) -> None:
    cfg = TrainConfig.from_file(path)
    assert cfg.to_dict() == {**TrainConfig().to_dict(), **json.loads(path.read_text())}


def test_yaml_floats_without_a_dot(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    path = tmp_path / "train.yaml"
    path.write_text(
        "lr: 1e-3\nweight_decay: 1E+5\nmin_lr_ratio: .5\nstep_gamma: 2.5e-1\n"
        "layer_decay: 1.0e0\nclip_grad_norm: -0.5E-0\nmax_steps: 10\nbf16: yes\n"
        "model: 1e3x\ndevice: '1e-3'\n"
    )
    with pytest.raises(InvalidConfig, match="clip_grad_norm=-0.5"):
        TrainConfig.from_file(path)
    path.write_text(path.read_text().replace("-0.5E-0", "0.5E-0"))
    cfg = TrainConfig.from_file(path)
    assert (cfg.lr, cfg.weight_decay, cfg.min_lr_ratio) == (1e-3, 1e5, 0.5)
    assert (cfg.step_gamma, cfg.layer_decay, cfg.clip_grad_norm) == (0.25, 1.0, 0.5)
    assert cfg.max_steps == 10 and cfg.bf16 is True
    assert cfg.model == "1e3x" and cfg.device == "1e-3"  # strings stay strings
    for text in ("lr: '1e-3'\n", "lr: 1e-3x\n", "lr: abc\n", "lr: 1e\n"):
        path.write_text(text)
        with pytest.raises(InvalidConfig, match=r"TrainConfig\.lr=.*must be a finite number"):
            TrainConfig.from_file(path)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    cases = {
        "missing.json": None,
        "bad_value.json": json.dumps({"bf16": "no"}),
        "unknown.json": json.dumps({"lr": 1e-3, "learning_rate": 1e-3}),
        "broken.json": "{not json",
        "list.json": "[1, 2]",
        "binary.json": b"\xff\xfe\x00",
        "cfg.toml": "lr = 1",
    }
    for name, content in cases.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            path.write_text(content)
        with pytest.raises(InvalidConfig) as info:
            TrainConfig.from_file(path)
        assert str(path) in str(info.value) and info.value.path == str(path), name
    with pytest.raises(InvalidConfig, match="folder"):
        TrainConfig.from_file(tmp_path)
    with pytest.raises(InvalidConfig, match="bf16='no'") as info:
        TrainConfig.from_file(tmp_path / "bad_value.json")
    assert info.value.field == "bf16"
    with pytest.raises(InvalidConfig, match="unknown TrainConfig field.*learning_rate") as info:
        TrainConfig.from_file(tmp_path / "unknown.json")
    assert info.value.field == "learning_rate"


def test_unknown_fields_suggest_a_close_name() -> None:
    with pytest.raises(InvalidConfig, match=r"max_step \(did you mean max_steps\?\)"):
        TrainConfig.from_dict({"max_step": 3})
    with pytest.raises(InvalidConfig, match="unknown TrainConfig field.*1"):
        TrainConfig.from_dict({1: 2, "lr": 1e-3})  # a YAML key that is not a string


# ------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    result = run("synth", out, "--n", "2", "--size", "64,80", "--seed", "1")
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.usefixtures("cli_isolated")
@pytest.mark.parametrize(("name", "value"), BAD_VALUES, ids=[_ids(c) for c in BAD_VALUES])
def test_cli_bad_config_value_is_one_line(
    dataset: Path, tmp_path: Path, name: str, value: object
) -> None:
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({name: value}))
    result = run("train", dataset, "--model", "samkit-demo", "--no-progress", "--config", path)
    assert_cli_error(result, f"TrainConfig.{name}=", str(path))


@pytest.mark.usefixtures("cli_isolated")
def test_cli_missing_config_file(dataset: Path, tmp_path: Path) -> None:
    result = run("train", dataset, "--config", tmp_path / "nope.yaml")
    assert_cli_error(result, "not found", "nope.yaml")


@pytest.mark.usefixtures("cli_isolated")
def test_cli_yaml_config_with_exponent_floats_trains(dataset: Path, tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    if TINY not in samkit.list_models():
        samkit.configs.register(
            ModelPreset(name=TINY, config=TINY_256, weights=None, description="config tests")
        )
    path = tmp_path / "train.yaml"
    out = tmp_path / "run"
    path.write_text(
        f"model: {TINY}\npretrained: false\nlr: 5e-4\nweight_decay: 1e-2\nwarmup_steps: 0\n"
        f"max_steps: 1\nnum_rounds: 3\nmasks_per_image: 1\nprogress: false\nout_dir: {out}\n"
    )
    result = run("train", dataset, "--config", path)
    assert result.exit_code == 0, result.output
    state = torch.load(out / "trainer_state.pt", map_location="cpu", weights_only=True)
    assert state["config"]["lr"] == 5e-4 and state["config"]["weight_decay"] == 1e-2
