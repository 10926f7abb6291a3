"""``TrainConfig``: every knob of a fine-tuning run, loadable from JSON or YAML.

The learning-rate schedule is a pure function of the config (:func:`lr_factor`), so it
can be checked by hand: linear warmup ``(step + 1) / warmup_steps`` for the first
``warmup_steps`` optimizer steps, then either a cosine decay from 1 to ``min_lr_ratio``
at ``max_steps`` or a step decay multiplying by ``step_gamma`` at each milestone.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["TrainConfig", "lr_factor"]

_SCHEDULES = ("cosine", "step")


@dataclass
class TrainConfig:
    """Configuration of :class:`samkit.train.trainer.Trainer`.

    Attributes:
        model: registry name (e.g. ``"vit_b"``) of the architecture to fine-tune.
        init_checkpoint: state-dict file to start from; ``None`` uses the published
            weights of ``model`` when ``pretrained`` is true, else random weights.
        pretrained: with no ``init_checkpoint``, start from the published weights.
        lr: peak learning rate (after warmup).
        weight_decay: AdamW decay for weight matrices (never for norms, biases,
            embeddings, positional embeddings or tokens).
        betas: AdamW betas.
        warmup_steps: linear warmup length in optimizer steps (0 = none).
        max_steps: number of optimizer steps of :meth:`Trainer.fit`.
        schedule_steps: length of the cosine schedule (``None``: ``max_steps``). A run
            can stop before its schedule ends (``max_steps < schedule_steps``) and be
            resumed with another schedule: the lr is a pure function of the step.
        schedule: ``"cosine"`` or ``"step"``.
        min_lr_ratio: final lr / peak lr of the cosine schedule.
        step_milestones: optimizer steps at which the ``"step"`` schedule multiplies the
            lr by ``step_gamma``.
        step_gamma: factor of the ``"step"`` schedule.
        layer_decay: layer-wise lr decay of a trainable ViT (SAM 1) or Hiera (SAM 2)
            image encoder: block ``i`` of ``depth`` gets ``layer_decay ** (depth - i)``,
            the patch/pos embedding ``layer_decay ** (depth + 1)``, the neck 1. ``1.0``
            disables it.
        freeze_image_encoder: train only the prompt encoder and mask decoder (default;
            enables the embedding cache). For SAM 2 the decoder's ``conv_s0`` /
            ``conv_s1`` (they project the encoder's high-resolution levels) and
            ``no_mem_embed`` stay fixed too: the cached embeddings include them.
        freeze: more parameters to keep fixed, by name prefix (the official checkpoint
            keys): e.g. ``("prompt_encoder.",)`` trains the mask decoder alone,
            ``("prompt_encoder.", "mask_decoder.transformer.")`` only its heads. Every
            prefix must match at least one parameter.
        cache_embeddings: with a frozen encoder, cache image embeddings under
            ``out_dir/embeddings`` (images are then used without pixel augmentation).
        batch_size: images per micro-batch.
        masks_per_image: masks sampled (without replacement) per image and step.
        grad_accum_steps: micro-batches per optimizer step.
        clip_grad_norm: max global gradient norm, ``None`` or ``0`` = no clipping.
        bf16: run forward passes under CPU/CUDA bf16 autocast.
        seed: seeds model init order, data order, mask choice and prompt simulation.
        num_rounds: simulated interaction rounds per mask (SAM paper: 11; >= 3).
        out_dir: where metrics, checkpoints and the embedding cache go.
        log_every: append averaged metrics to ``out_dir/metrics.jsonl`` every N steps.
        save_every: save a checkpoint and the trainer state every N steps (0 = only at
            the end of :meth:`Trainer.fit`).
        device: torch device string.
        progress: show a rich progress bar in :meth:`Trainer.fit`.
    """

    model: str = "vit_b"
    init_checkpoint: str | None = None
    pretrained: bool = True
    lr: float = 1e-4
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    max_steps: int = 1000
    schedule_steps: int | None = None
    schedule: str = "cosine"
    min_lr_ratio: float = 0.0
    step_milestones: tuple[int, ...] = field(default_factory=tuple)
    step_gamma: float = 0.1
    layer_decay: float = 1.0
    freeze_image_encoder: bool = True
    freeze: tuple[str, ...] = ()
    cache_embeddings: bool = True
    batch_size: int = 1
    masks_per_image: int = 4
    grad_accum_steps: int = 1
    clip_grad_norm: float | None = 1.0
    bf16: bool = False
    seed: int = 0
    num_rounds: int = 11
    out_dir: str = "runs/train"
    log_every: int = 10
    save_every: int = 0
    device: str = "cpu"
    progress: bool = True

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        self.step_milestones = tuple(int(m) for m in self.step_milestones)
        if isinstance(self.freeze, str):
            self.freeze = (self.freeze,)
        self.freeze = tuple(self.freeze)
        if isinstance(self.out_dir, os.PathLike):
            self.out_dir = os.fspath(self.out_dir)
        if isinstance(self.init_checkpoint, os.PathLike):
            self.init_checkpoint = os.fspath(self.init_checkpoint)
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid field."""

        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"invalid TrainConfig.{name}={getattr(self, name)!r}: {why}")

        if not isinstance(self.model, str) or not self.model:
            raise bad("model", "must be a non-empty registry name")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise bad("lr", "must be a positive finite number")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise bad("weight_decay", "must be >= 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise bad("betas", "must be two numbers in [0, 1)")
        for name in ("warmup_steps", "log_every", "save_every", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise bad(name, "must be an integer >= 0")
        for name in ("max_steps", "batch_size", "masks_per_image", "grad_accum_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise bad(name, "must be an integer >= 1")
        if self.schedule_steps is not None and (
            not isinstance(self.schedule_steps, int) or self.schedule_steps < 1
        ):
            raise bad("schedule_steps", "must be None or an integer >= 1")
        if self.schedule not in _SCHEDULES:
            raise bad("schedule", f"must be one of {', '.join(_SCHEDULES)}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise bad("min_lr_ratio", "must be in [0, 1]")
        if any(m < 0 for m in self.step_milestones) or list(self.step_milestones) != sorted(
            self.step_milestones
        ):
            raise bad("step_milestones", "must be increasing step numbers >= 0")
        if not 0 < self.step_gamma <= 1:
            raise bad("step_gamma", "must be in (0, 1]")
        if not 0 < self.layer_decay <= 1:
            raise bad("layer_decay", "must be in (0, 1] (1.0 disables layer-wise decay)")
        if self.clip_grad_norm is not None and not self.clip_grad_norm >= 0:
            raise bad("clip_grad_norm", "must be None or >= 0")
        if not isinstance(self.num_rounds, int) or self.num_rounds < 3:
            raise bad("num_rounds", "must be an integer >= 3 (first prompt + 2 mask rounds)")
        if not self.out_dir:
            raise bad("out_dir", "must be a folder path")
        if not all(isinstance(prefix, str) and prefix for prefix in self.freeze):
            raise bad("freeze", "must be non-empty parameter-name prefixes")

    # --------------------------------------------------------------- file I/O
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        d = asdict(self)
        d["betas"] = list(self.betas)
        d["step_milestones"] = list(self.step_milestones)
        d["freeze"] = list(self.freeze)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys raise ``ValueError``."""
        if not isinstance(data, dict):
            raise ValueError(f"a training config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown TrainConfig field(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TrainConfig:
        """Read a ``.json`` or ``.yaml``/``.yml`` file (YAML needs PyYAML)."""
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"training config not found: {p}")
        text = p.read_text(encoding="utf-8")
        suffix = p.suffix.lower()
        if suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise ValueError(
                    f"cannot read {p}: YAML configs need PyYAML (pip install pyyaml); "
                    "or use a .json config"
                ) from None
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ValueError(f"cannot parse YAML config {p}: {exc}") from None
        elif suffix == ".json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"cannot parse JSON config {p}: {exc}") from None
        else:
            raise ValueError(f"unsupported config file type {p.suffix!r}: use .json or .yaml")
        return cls.from_dict(data if data is not None else {})


def lr_factor(config: TrainConfig, step: int) -> float:
    """Multiplier of the peak lr for the optimizer step with index ``step`` (0-based).

    Warmup: ``(step + 1) / warmup_steps`` while ``step < warmup_steps``. Then
    ``"cosine"``: ``r + (1 - r) * 0.5 * (1 + cos(pi * t))`` with
    ``t = (step - warmup) / (schedule_steps - warmup)`` (``schedule_steps`` defaults to
    ``max_steps``) clipped to ``[0, 1]`` and
    ``r = min_lr_ratio``; ``"step"``: ``step_gamma ** (number of milestones <= step)``.
    """
    warmup = config.warmup_steps
    if step < warmup:
        return (step + 1) / warmup
    if config.schedule == "step":
        return config.step_gamma ** sum(1 for m in config.step_milestones if step >= m)
    length = config.max_steps if config.schedule_steps is None else config.schedule_steps
    span = max(1, length - warmup)
    t = min(1.0, max(0.0, (step - warmup) / span))
    r = config.min_lr_ratio
    return r + (1 - r) * 0.5 * (1 + math.cos(math.pi * t))
