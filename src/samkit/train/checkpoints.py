"""Files a training run writes and reads: its run folder (checked before a run starts,
never silently taken over by a new run), weights in the official layout, the records of
``metrics.jsonl``, resumable trainer state (checked before anything is restored), and
the model a run starts from."""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from samkit.errors import CheckpointError, InvalidArgument, OutputError
from samkit.fileio import atomic_write_bytes, nearest_existing
from samkit.modeling import SamModel
from samkit.modeling.sam2 import Sam2
from samkit.train.config import TrainConfig
from samkit.weights import check_state_dict, first_few

__all__ = [
    "RUN_FILES",
    "atomic_torch_save",
    "check_run_folder",
    "clear_run_files",
    "load_initial_model",
    "load_trainer_state",
    "make_run_folder",
    "metrics_record",
    "previous_run_files",
    "previous_run_names",
    "save_weights",
    "start_run_folder",
]

#: What a run writes at the top of its folder (besides ``checkpoints/step_*.pt`` and the
#: ``embeddings/`` cache).
RUN_FILES = ("metrics.jsonl", "model_final.pt", "trainer_state.pt")


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())
    return path


def save_weights(model: nn.Module, path: str | Path) -> Path:
    """The model's weights (CPU, contiguous) in the layout of its official checkpoints:
    a plain state dict for SAM 1 / MobileSAM (``sam_vit_b_01ec64.pth``), ``{"model":
    state_dict}`` for SAM 2 (``sam2.1_hiera_tiny.pt``, what the official ``build_sam2``
    reads). ``samkit.load_model(..., checkpoint=path)`` reads both."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return atomic_torch_save({"model": state} if isinstance(model, Sam2) else state, path)


# ------------------------------------------------------------------ run folder
def check_run_folder(out_dir: str | Path) -> None:
    """Check, without creating anything, that ``out_dir`` is or can become a writable
    folder: it is a folder, or its nearest existing ancestor is a writable folder.

    Raises:
        OutputError: ``out_dir`` (or an ancestor) is a file, or not writable. A folder
            the OS refuses anyway (e.g. under ``/proc`` for root) is reported by
            :func:`make_run_folder` when it is created.
    """
    out = Path(out_dir)
    probe = nearest_existing(out)
    if not probe.is_dir():
        where = "" if probe == out else f": {probe} is a file"
        what = "is a file, not a folder" if probe == out else "cannot be created"
        raise OutputError(f"run folder {out} {what}{where}")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"run folder {out} cannot be written: {probe} is not writable")


def make_run_folder(path: str | Path) -> Path:
    """Create the folder ``path`` (and its parents) if missing; an OS refusal (a file in
    the way, a read-only or virtual file system) is an :class:`OutputError` naming it."""
    path = Path(path)
    check_run_folder(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputError(f"cannot create run folder {path}: {reason}") from None
    return path


def previous_run_files(out_dir: str | Path) -> list[Path]:
    """The files of an earlier run in ``out_dir``: :data:`RUN_FILES` and
    ``checkpoints/step_*.pt`` (the embedding cache does not count: it is checked
    against the encoder weights before any reuse)."""
    out = Path(out_dir)
    found = [out / name for name in RUN_FILES if (out / name).exists()]
    checkpoints = out / "checkpoints"
    if checkpoints.is_dir():
        found += sorted(checkpoints.glob("step_*.pt"))
    return found


def previous_run_names(out_dir: str | Path) -> list[str]:
    """The top-level names (``metrics.jsonl``, ``checkpoints``, ...) of
    :func:`previous_run_files`, sorted: empty when ``out_dir`` holds no run."""
    out = Path(out_dir)
    return sorted({p.relative_to(out).parts[0] for p in previous_run_files(out)})


def clear_run_files(out_dir: str | Path, keep: str | Path | None = None) -> list[Path]:
    """Delete :func:`previous_run_files` of ``out_dir`` (to start a new run there) and
    return them. Other files, ``checkpoints/`` itself and the embedding cache stay.

    Raises:
        OutputError: one of them is ``keep`` (the run's ``init_checkpoint``), or cannot
            be deleted.
    """
    files = previous_run_files(out_dir)
    if keep is not None:
        for path in files:
            if _same_file(Path(keep), path):
                raise OutputError(
                    f"{keep} is a file of the run being replaced in {out_dir}; "
                    "copy it elsewhere first"
                )
    for path in files:
        try:
            path.unlink()
        except OSError as exc:
            raise OutputError(f"cannot delete {path}: {exc.strerror or exc}") from None
    return files


def start_run_folder(
    out_dir: str | Path, *, new: bool, overwrite: bool, keep: str | Path | None = None
) -> None:
    """Make ``out_dir`` ready for a run: a ``new`` run refuses a folder holding another
    run (:func:`previous_run_files`) unless ``overwrite``, which deletes those files
    (:func:`clear_run_files`, sparing ``keep``); a continued run (not ``new``) just
    writes on. Creates the folder (:func:`make_run_folder`).

    Raises:
        OutputError: the folder holds another run (and not ``overwrite``), or cannot be
            created, or a file cannot be deleted.
        InvalidArgument: (a ``ValueError``) ``overwrite`` for a run that is not ``new``.
    """
    out = Path(out_dir)
    if overwrite and not new:
        raise InvalidArgument("fit(overwrite=True) starts a new run; this trainer continues one")
    if new:
        names = previous_run_names(out)
        if names and not overwrite:
            raise OutputError(
                f"run folder {out} already holds a run ({', '.join(names)}): resume it, "
                "choose another folder, or overwrite it"
            )
        if names:
            clear_run_files(out, keep=keep)
    make_run_folder(out)


def metrics_record(
    step: int, window: list[dict[str, float]], names: tuple[str, ...]
) -> dict[str, float] | None:
    """The ``metrics.jsonl`` record of the train steps ``window`` at ``step``: the last
    ``lr``, the means of ``names`` over the steps with a loss (``images > 0``), the mean
    ``time_s`` of all and, when some had no loss, their number as ``empty_steps``;
    ``None`` when none had a loss."""
    full = [w for w in window if w.get("images", 1) > 0]
    if not full:
        return None
    record: dict[str, float] = {"step": step, "lr": window[-1]["lr"]}
    for name in names:
        record[name] = float(np.mean([w[name] for w in full]))
    record["time_s"] = float(np.mean([w["time_s"] for w in window]))
    if len(full) < len(window):
        record["empty_steps"] = len(window) - len(full)
    return record


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or os.path.samefile(a, b)
    except OSError:
        return False


# -------------------------------------------------------------- trainer state
def _read_state(path: Path, fmt: str, what: str, required: Mapping[str, type]) -> dict[str, Any]:
    """``torch.load`` (``weights_only``) and the ``format`` tag; nothing of torch's own
    advice (to unpickle with ``weights_only=False``) reaches the message."""
    if not path.is_file():
        raise CheckpointError(f"{what} state file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        why = (
            "it holds Python objects other than tensors and plain data, which samkit "
            "does not unpickle"
            if any(k in str(exc).lower() for k in ("allowed global", "unsupported global"))
            else "not a PyTorch file, or a damaged one"
        )
        raise CheckpointError(f"{path} is not a samkit {what} state file: {why}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror or exc}") from None
    except Exception:  # zip / EOF / ... errors of a truncated or foreign file
        raise CheckpointError(
            f"{path} is not a samkit {what} state file: not a PyTorch file, or a "
            "truncated or damaged one"
        ) from None
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise CheckpointError(f"{path} is not a samkit {what} state file")
    expected = {"model": Mapping, "optimizer": Mapping, "torch_rng": torch.Tensor, **required}
    for key, kind in expected.items():
        if not isinstance(state.get(key), kind):
            raise CheckpointError(f"{path} is an incomplete samkit {what} state (no {key!r})")
    return state


def _canonical(name: str) -> str:
    from samkit.configs import get_preset
    from samkit.errors import UnknownModel

    try:
        return get_preset(name).name
    except UnknownModel:
        return name


def _check_optimizer(
    path: Path, saved: Mapping[str, Any], optimizer: torch.optim.Optimizer
) -> None:
    """The saved optimizer must have this optimizer's groups, with the same parameters
    (by name where the groups carry ``names``) and moment shapes."""
    groups = saved.get("param_groups")
    if (
        not isinstance(groups, list)
        or not all(isinstance(g, Mapping) and isinstance(g.get("params"), list) for g in groups)
        or not isinstance(saved.get("state"), Mapping)
    ):
        raise CheckpointError(f"{path}: its optimizer state is malformed")
    here = optimizer.param_groups
    if all("names" in g for g in here + groups):
        mine = [list(g["names"]) for g in here]
        theirs = [list(g["names"]) for g in groups]
        if mine != theirs:
            flat_mine = {n for names in mine for n in names}
            flat_theirs = {n for names in theirs for n in names}
            only_there = sorted(flat_theirs - flat_mine)
            only_here = sorted(flat_mine - flat_theirs)
            parts = []
            if only_there:
                parts.append(
                    f"it trains {len(only_there)} parameters this run keeps fixed: "
                    f"{first_few(only_there)}"
                )
            if only_here:
                parts.append(
                    f"this run trains {len(only_here)} parameters it kept fixed: {first_few(only_here)}"
                )
            if not parts:
                parts.append("the same parameters in other groups")
            raise CheckpointError(
                f"{path} is the state of a run with other trainable parameters ("
                + "; ".join(parts)
                + "): another freeze, freeze_image_encoder or layer_decay?"
            )
    sizes_here = [len(g["params"]) for g in here]
    sizes_there = [len(g["params"]) for g in groups]
    if sizes_here != sizes_there:
        raise CheckpointError(
            f"{path} is the state of an optimizer with parameter groups of sizes "
            f"{sizes_there}, this run's are {sizes_here} (another freeze or model?)"
        )
    params = [p for g in here for p in g["params"]]
    by_index = dict(zip([i for g in groups for i in g["params"]], params, strict=True))
    for i, moments in saved["state"].items():
        param = by_index.get(i)
        if param is None or not isinstance(moments, Mapping):
            raise CheckpointError(f"{path}: its optimizer state names unknown parameter {i!r}")
        for key, value in moments.items():
            if isinstance(value, torch.Tensor) and value.ndim and value.shape != param.shape:
                raise CheckpointError(
                    f"{path}: optimizer {key} of parameter {i} has shape "
                    f"{tuple(value.shape)}, the parameter {tuple(param.shape)}"
                )


def load_trainer_state(
    path: str | Path,
    fmt: str,
    what: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    model_name: str | None = None,
    required: Mapping[str, type] | None = None,
) -> dict[str, Any]:
    """Read a trainer state file written by ``torch.save`` (``weights_only``), restore
    the model, the optimizer and torch's RNG, and return the state for the caller's own
    fields (step, scheduler, ...).

    Everything is checked before the model or the optimizer is touched: the ``format``
    tag ``fmt``; the model the state was saved from (``state["config"]["model"]``, when
    ``model_name`` is given; aliases count as the same model); the model's keys and
    shapes; the optimizer's parameter groups (same parameters, by name where the groups
    carry ``names``, so a state of a run with another ``freeze`` is refused) and moment
    shapes; ``required`` names the caller's own entries and their types (e.g.
    ``{"step": int}``).

    Raises:
        CheckpointError: the file is missing, unreadable, not a ``what`` state file, or
            does not match (the message names the model or the first mismatching keys).
            The model and optimizer are then unchanged.
    """
    path = Path(path)
    state = _read_state(path, fmt, what, required or {})
    config = state.get("config")
    saved_name = config.get("model") if isinstance(config, Mapping) else None
    if model_name is not None and isinstance(saved_name, str):
        if _canonical(saved_name) != _canonical(model_name):
            raise CheckpointError(
                f"{path} is the state of model {saved_name!r}, this run is {model_name!r}"
            )
    weights = state["model"]
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        raise CheckpointError(f"{path}: its 'model' entry is not a state dict of tensors")
    check_state_dict(model, weights, f"the model in {what} state {path}")
    _check_optimizer(path, state["optimizer"], optimizer)
    rng = state["torch_rng"]
    if rng.dtype != torch.uint8 or rng.shape != torch.get_rng_state().shape:
        raise CheckpointError(f"{path}: its 'torch_rng' is not a torch RNG state")
    try:
        model.load_state_dict(weights, strict=True)
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot resume from {path}: {first[:200]}") from None
    torch.set_rng_state(rng)
    return state


def load_initial_model(config: TrainConfig) -> SamModel:
    """The model a run starts from: ``init_checkpoint``, else the published weights of
    ``config.model`` (``pretrained``), else random weights."""
    from samkit.build import build_model, load_model

    if config.init_checkpoint:
        return load_model(config.model, checkpoint=config.init_checkpoint, progress=False)
    if config.pretrained:
        return load_model(config.model, progress=False)
    return build_model(config.model)
