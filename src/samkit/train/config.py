"""``TrainConfig``: every knob of a fine-tuning run, loadable from JSON or YAML.

The learning-rate schedule is a pure function of the config (:func:`lr_factor`), so it
can be checked by hand: linear warmup ``(step + 1) / warmup_steps`` for the first
``warmup_steps`` optimizer steps, then either a cosine decay from 1 to ``min_lr_ratio``
at ``max_steps`` or a step decay multiplying by ``step_gamma`` at each milestone.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
import numbers
import operator
import os
import re
import typing
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from samkit.errors import InvalidConfig

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
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Check every field and normalise it in place; raise :class:`InvalidConfig`
        naming the first invalid field and its value.

        Types come from the field annotations: a ``bool`` field takes only ``True`` /
        ``False``; an ``int`` field an integer (not a bool, not a float); a ``float``
        field any finite real number (not a bool or a string), stored as ``float``; a
        ``str`` field a string (``out_dir`` / ``init_checkpoint`` also a path object,
        stored as ``str``); ``X | None`` also ``None``; a ``tuple`` field a list or
        tuple of such items (``freeze`` also a single string), stored as a tuple. The
        ranges of the fields are checked after their types.
        """
        hints = _field_types()
        for f in fields(self):
            value = getattr(self, f.name)
            setattr(self, f.name, _coerce(f.name, value, hints[f.name]))
        self._check_ranges()

    def _check_ranges(self) -> None:
        def bad(name: str, why: str) -> InvalidConfig:
            return _invalid(name, getattr(self, name), why)

        if not self.model:
            raise bad("model", "must be a non-empty registry name")
        if not self.lr > 0:
            raise bad("lr", "must be a positive finite number")
        if not self.weight_decay >= 0:
            raise bad("weight_decay", "must be >= 0")
        if not all(0 <= b < 1 for b in self.betas):
            raise bad("betas", "must be two numbers in [0, 1)")
        for name in ("warmup_steps", "log_every", "save_every", "seed"):
            if getattr(self, name) < 0:
                raise bad(name, "must be an integer >= 0")
        for name in ("max_steps", "batch_size", "masks_per_image", "grad_accum_steps"):
            if getattr(self, name) < 1:
                raise bad(name, "must be an integer >= 1")
        if self.schedule_steps is not None and self.schedule_steps < 1:
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
        if self.num_rounds < 3:
            raise bad("num_rounds", "must be an integer >= 3 (first prompt + 2 mask rounds)")
        if not self.out_dir:
            raise bad("out_dir", "must be a folder path")
        if not all(self.freeze):
            raise bad("freeze", "must be non-empty parameter-name prefixes")
        if not self.device:
            raise bad("device", "must be a torch device string such as 'cpu' or 'cuda'")

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
        """Build from a mapping; unknown keys and invalid values raise
        :class:`InvalidConfig`."""
        if not isinstance(data, Mapping):
            raise InvalidConfig(
                f"a training config must be a mapping of field names to values, "
                f"got {type(data).__name__}"
            )
        known = [f.name for f in fields(cls)]
        unknown = sorted((k for k in data if k not in known), key=str)
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(str(key), known, n=1)
                hints.append(f"{key} (did you mean {close[0]}?)" if close else str(key))
            raise InvalidConfig(
                f"unknown TrainConfig field(s): {', '.join(hints)} "
                f"(known: {', '.join(sorted(known))})",
                field=str(unknown[0]),
            )
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TrainConfig:
        """Read a ``.json`` or ``.yaml``/``.yml`` file (YAML needs PyYAML).

        A missing, unreadable or malformed file, and an unknown or invalid field, raise
        :class:`InvalidConfig` (a ``ValueError``) naming the file. YAML is read with the
        safe loader, with YAML 1.2 floats: ``1e-3``, ``1E+5`` and ``.5`` are numbers
        (PyYAML's YAML 1.1 rules read the first two as strings).
        """
        p = Path(path)
        where = os.fspath(p)

        def fail(message: str) -> InvalidConfig:
            return InvalidConfig(message, path=where)

        if not p.is_file():
            reason = "is a folder, not a file" if p.is_dir() else "not found"
            raise fail(f"training config {reason}: {p}")
        suffix = p.suffix.lower()
        if suffix not in (".json", ".yaml", ".yml"):
            raise fail(f"unsupported config file type {p.suffix!r} of {p}: use .json or .yaml")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise fail(f"cannot read training config {p}: not UTF-8 text ({exc.reason})") from None
        except OSError as exc:
            raise fail(f"cannot read training config {p}: {exc.strerror or exc}") from None
        if suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError:
                raise fail(
                    f"cannot read {p}: YAML configs need PyYAML (pip install pyyaml); "
                    "or use a .json config"
                ) from None
            try:
                data = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 (a SafeLoader)
            except yaml.YAMLError as exc:
                raise fail(f"cannot parse YAML config {p}: {exc}") from None
        else:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise fail(f"cannot parse JSON config {p}: {exc}") from None
        try:
            return cls.from_dict(data if data is not None else {})
        except InvalidConfig as exc:
            raise InvalidConfig(f"{exc} (in {p})", field=exc.field, path=where) from None


# ------------------------------------------------------------------- validation helpers
_PATH_FIELDS = ("out_dir", "init_checkpoint")


@functools.cache
def _field_types() -> dict[str, Any]:
    """The resolved annotations of :class:`TrainConfig` (they are strings here)."""
    return typing.get_type_hints(TrainConfig)


def _invalid(name: str, value: Any, why: str) -> InvalidConfig:
    text = repr(value)
    if len(text) > 80:
        text = text[:60] + "..." + text[-10:]
    return InvalidConfig(f"invalid TrainConfig.{name}={text}: {why}", field=name)


def _type_name(value: Any) -> str:
    return "null (None)" if value is None else type(value).__name__


def _describe(tp: Any) -> str:
    """``int`` -> ``"an integer"``, ``float | None`` -> ``"null (None) or a finite
    number"``, ``tuple[str, ...]`` -> ``"a list of strings"``."""
    args = typing.get_args(tp)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return "null (None) or " + " or ".join(_describe(a) for a in rest)
    if typing.get_origin(tp) is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        return f"a list of {len(args)} {_plural(args[0])}"
    return {
        bool: "true or false (a boolean)",
        int: "an integer",
        float: "a finite number",
        str: "a string",
    }[tp]


def _plural(tp: Any) -> str:
    return {int: "integers", float: "finite numbers", str: "strings"}[tp]


class _BadType(Exception):
    """Internal: a value does not have the annotated type."""


def _scalar(value: Any, tp: Any) -> Any:
    """``value`` as an instance of the scalar type ``tp``, or :class:`_BadType`."""
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if not isinstance(value, (bool, float, str)):
            try:
                return operator.index(value)  # int, numpy integers
            except TypeError:
                pass
    elif tp is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            try:
                number = float(value)
            except (OverflowError, ValueError):
                raise _BadType from None
            if math.isfinite(number):
                return number
    elif tp is str:
        if isinstance(value, str):
            return value
    raise _BadType


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """Check ``value`` of field ``name`` against its annotation ``tp``; return it
    normalised (tuples for sequences, ``float`` for numbers, ``str`` for paths)."""
    args = typing.get_args(tp)
    optional = type(None) in args  # X | None
    inner = next(a for a in args if a is not type(None)) if optional else tp
    expected = _describe(tp)
    if name in _PATH_FIELDS:
        expected = "a path (a string)" + (" or null (None)" if optional else "")

    def wrong(detail: str) -> InvalidConfig:
        return _invalid(name, value, f"must be {expected}; {detail}")

    def got() -> str:
        if inner is float and isinstance(value, numbers.Real) and not isinstance(value, bool):
            return "got a non-finite (or too large) number"
        return f"got {_type_name(value)}"

    if optional and value is None:
        return None
    if name in _PATH_FIELDS and isinstance(value, os.PathLike):
        value = os.fspath(value)
    if name == "freeze" and isinstance(value, str):
        value = (value,)
    if typing.get_origin(inner) is not tuple:
        try:
            return _scalar(value, inner)
        except _BadType:
            raise wrong(got()) from None
    if isinstance(value, (str, bytes, Mapping, set, frozenset)) or not isinstance(value, Iterable):
        raise wrong(got())
    items = tuple(value)
    item_types = typing.get_args(inner)
    if len(item_types) == 2 and item_types[1] is Ellipsis:
        item_types = (item_types[0],) * len(items)
    elif len(items) != len(item_types):
        raise wrong(f"got {len(items)} item(s)")
    out = []
    for i, (item, item_tp) in enumerate(zip(items, item_types, strict=True)):
        try:
            out.append(_scalar(item, item_tp))
        except _BadType:
            raise wrong(f"item {i} is {item!r} ({_type_name(item)})") from None
    return tuple(out)


@functools.cache
def _yaml_loader() -> type:
    """PyYAML's ``SafeLoader`` that also reads YAML 1.2 floats without a dot or with an
    unsigned exponent (``1e-3``, ``1E+5``, ``2.5e3``) as numbers, not strings."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
        list("-+.0123456789"),
    )
    return Loader


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
