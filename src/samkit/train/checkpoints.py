"""Files a training run writes and reads: weights in the official layout, resumable
trainer state, and the model a run starts from."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samkit.fileio import atomic_write_bytes
from samkit.modeling import SamModel
from samkit.modeling.sam2 import Sam2
from samkit.train.config import TrainConfig

__all__ = ["atomic_torch_save", "load_initial_model", "load_trainer_state", "save_weights"]


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


def load_trainer_state(
    path: str | Path, fmt: str, what: str, model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, Any]:
    """Read a trainer state file written by ``torch.save`` (``weights_only``), check its
    ``format`` tag, restore the model, the optimizer and torch's RNG, and return the
    state for the caller's own fields (step, scheduler, ...)."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise ValueError(f"{path} is not a samkit {what} state file")
    model.load_state_dict(state["model"], strict=True)
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
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
