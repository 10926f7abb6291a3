"""Which parameters a run trains and how: freezing by checkpoint-key prefix and AdamW
parameter groups (weight decay, layer-wise learning-rate decay)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from samkit.errors import InvalidConfig
from samkit.layers.common import LayerNorm2d
from samkit.modeling import SamModel
from samkit.train.config import TrainConfig

__all__ = ["build_param_groups", "freeze_by_prefix", "set_hyperparameters"]

_NORMS = (nn.LayerNorm, LayerNorm2d, nn.GroupNorm, nn.BatchNorm2d, nn.Embedding)


def _encoder_blocks(model: nn.Module) -> tuple[str, int] | None:
    """``(prefix, depth)`` of the image encoder's sequence of blocks: the ViT's
    ``image_encoder.blocks`` (SAM 1) or Hiera's ``image_encoder.trunk.blocks`` (SAM 2);
    ``None`` for other encoders (TinyViT)."""
    encoder = model.image_encoder
    trunk = getattr(encoder, "trunk", None)
    for prefix, owner in (("image_encoder.", encoder), ("image_encoder.trunk.", trunk)):
        blocks = getattr(owner, "blocks", None)
        if isinstance(blocks, nn.ModuleList):
            return prefix, len(blocks)
    return None


def _encoder_layer_scale(name: str, model: nn.Module, layer_decay: float) -> float:
    """Layer-wise lr scale of an ``image_encoder.*`` parameter of a ViT or Hiera encoder:
    the patch embedding is layer 0, block ``i`` layer ``i + 1``, the rest (the neck)
    layer ``depth + 1``, which gets the full lr. Position embeddings are layer 0 in a ViT
    (as in MAE / ViTDet) and keep the full lr in Hiera, as the official SAM 2 training
    configs set (``layer_decay_param_modifier`` with ``*pos_embed*`` overridden to 1)."""
    found = _encoder_blocks(model)
    if layer_decay >= 1.0 or found is None:
        return 1.0
    prefix, depth = found
    rest = name[len(prefix) :] if name.startswith(prefix) else ""
    if prefix.endswith("trunk.") and rest.startswith("pos_embed"):
        return 1.0
    if rest.startswith(("patch_embed.", "pos_embed")):
        layer = 0
    elif rest.startswith("blocks."):
        layer = int(rest.split(".")[1]) + 1
    else:  # neck
        layer = depth + 1
    return layer_decay ** (depth + 1 - layer)


def freeze_by_prefix(model: nn.Module, prefixes: Sequence[str]) -> list[str]:
    """Set ``requires_grad=False`` on every parameter of ``model`` whose name starts with
    one of ``prefixes``; returns the frozen names. A prefix that matches nothing raises
    :class:`~samkit.errors.InvalidConfig` (a ``ValueError``; a typo would otherwise silently
    train what was meant to be fixed)."""
    frozen: list[str] = []
    for prefix in prefixes:
        hits = [(n, p) for n, p in model.named_parameters() if n.startswith(prefix)]
        if not hits:
            names = (
                n.split(".")[0] + ("." if "." in n else "") for n, _ in model.named_parameters()
            )
            raise InvalidConfig(
                f"TrainConfig.freeze prefix {prefix!r} matches no parameter (use checkpoint "
                f"key prefixes; this model's top-level ones: {', '.join(sorted(set(names)))})",
                field="freeze",
            )
        for name, param in hits:
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


def build_param_groups(model: SamModel, config: TrainConfig) -> list[dict[str, Any]]:
    """AdamW parameter groups over the trainable parameters of ``model``.

    Norm weights, biases, embedding tables, tokens, positional embeddings and all other
    ≤1-D parameters get no weight decay. With a trainable ViT or Hiera encoder and
    ``layer_decay < 1`` each encoder depth gets its own lr (see :class:`TrainConfig`).
    Every group carries ``lr = config.lr * lr_scale``.
    """
    no_decay: set[str] = set()
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if (
                p.ndim <= 1
                or isinstance(module, _NORMS)
                or p_name == "bias"
                or "pos_embed" in p_name
                or "rel_pos" in p_name
            ):
                no_decay.add(full)
    if (
        config.layer_decay < 1.0
        and not config.freeze_image_encoder
        and _encoder_blocks(model) is None
    ):
        warnings.warn(
            "layer_decay is implemented for ViT and Hiera encoders only; using a uniform lr",
            stacklevel=2,
        )
    groups: dict[tuple[float, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = 1.0
        if name.startswith("image_encoder."):
            scale = _encoder_layer_scale(name, model, config.layer_decay)
        decay = name not in no_decay
        key = (scale, decay)
        if key not in groups:
            groups[key] = {
                "params": [],
                "names": [],
                "lr": config.lr * scale,
                "lr_scale": scale,
                "weight_decay": config.weight_decay if decay else 0.0,
            }
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return [groups[k] for k in sorted(groups, key=lambda k: (-k[0], not k[1]))]


def set_hyperparameters(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    hyper: Sequence[dict[str, Any]],
    config: TrainConfig,
    step: int,
) -> None:
    """Give the groups of ``optimizer`` (just restored from a saved state) the
    hyper-parameters ``hyper`` (one dict per group, e.g. ``lr_scale``, ``weight_decay``
    and ``betas`` of :func:`build_param_groups` with ``config``), the base lr
    ``config.lr * lr_scale`` (also ``scheduler``'s) and the lr of optimizer step
    ``step``, ``base * lr_factor(config, step)``."""
    from samkit.train.config import lr_factor

    factor = lr_factor(config, step)
    for group, values in zip(optimizer.param_groups, hyper, strict=True):
        group.update(values)
        group["initial_lr"] = config.lr * group["lr_scale"]
        group["lr"] = group["initial_lr"] * factor
    scheduler.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
    scheduler.last_epoch = step
    scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]  # type: ignore[attr-defined]
