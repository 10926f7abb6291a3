"""Opt-in ``torch.compile`` of a model's heavy parts (mainly for GPUs).

:func:`compile_model` compiles, in place, the modules that dominate the run time: the
image encoder (SAM 2: its Hiera trunk), and for SAM 2 video the memory attention, the
memory encoder and the mask decoder's per-frame call. Parameters, buffers and checkpoint keys are unchanged (``nn.Module.compile``
keeps the module; ``torch.compile(module)`` would wrap it and prefix every key with
``_orig_mod.``), so a compiled model still loads and saves official checkpoints. Nothing
is compiled until the first call, which then takes seconds to minutes; later calls with the
same shapes reuse the compiled code.

Compilation is never switched on by samkit itself and changes no global torch setting.
The results equal the eager model's up to float rounding (the kernels are fused
differently); ``tests/test_compile.py`` checks this on the CPU.

Which shapes stay fixed: a still image always enters the encoder at the model's square
input size, so the encoder is compiled for static shapes. The memory attention sees a
number of memory tokens that grows over the first frames of a video (up to
``num_maskmem`` memories plus the object pointers) and one batch entry per tracked object,
so it is compiled with dynamic shapes and is not recompiled frame after frame. The memory
encoder's batch is the number of objects (recompiled, then dynamic, when that changes).

For SAM 2 the mask decoder's entry point (``MaskDecoder.forward_full``, called once per
frame for all objects, and by ``ImagePredictor.predict`` on still images) is compiled too,
with dynamic shapes (objects, prompt points); traced, it does not use the per-image
decoder work (``SamModel.prepare_decoding``) the eager predictor reuses across prompts.
SAM 1's decoder (``forward_selected``) stays eager: a decode takes milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from samkit.errors import InvalidArgument, InvalidArgumentType
from samkit.modeling import SamModel

__all__ = ["COMPILABLE_PARTS", "compile_model", "is_compiled"]


@dataclass(frozen=True)
class _Part:
    """How one part is compiled: the module's attribute path, the method compiled
    (``None``: the module's call, i.e. ``forward``) and whether its input shapes are
    static (``dynamic=False``), vary from call to call (``True``) or are left to torch's
    automatic choice (``None``: static first, dynamic after a recompile)."""

    path: tuple[str, ...]
    dynamic: bool | None
    method: str | None = None


_PARTS: dict[str, dict[str, _Part]] = {
    "sam": {"image_encoder": _Part(("image_encoder",), dynamic=False)},
    "sam2": {
        "image_encoder": _Part(("image_encoder", "trunk"), dynamic=False),
        "memory_attention": _Part(("memory_attention",), dynamic=True),
        "memory_encoder": _Part(("memory_encoder",), dynamic=None),
        # the tracker's entry point; one entry per object, prompts of any length
        "mask_decoder": _Part(("sam_mask_decoder",), dynamic=True, method="forward_full"),
    },
}

#: The parts :func:`compile_model` can compile, per model family (``SamModel.family``).
COMPILABLE_PARTS: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in _PARTS.items()}


def compile_model(
    model: SamModel,
    parts: Iterable[str] | None = None,
    *,
    mode: str | None = None,
    backend: str = "inductor",
    fullgraph: bool = True,
) -> SamModel:
    """Compile ``model``'s heavy parts in place with ``torch.compile``; returns ``model``.

    Args:
        model: a samkit model (SAM 1 / MobileSAM / demo, or SAM 2). Call after moving it
            to its device and dtype (``load_model(..., device=, dtype=)``): compiled code
            is specialised to them.
        parts: which of :data:`COMPILABLE_PARTS` for the model's family to compile
            (``"image_encoder"``, and for SAM 2 ``"memory_attention"``,
            ``"memory_encoder"``, ``"mask_decoder"``); default all of them.
        mode: ``torch.compile``'s mode, e.g. ``"max-autotune"`` on a GPU (longer first
            call, faster kernels); ``None`` is torch's default.
        backend: ``torch.compile``'s backend.
        fullgraph: require each part to compile as one graph (an error, not a silent
            fall-back to Python, if something in it cannot be traced).

    Raises:
        InvalidArgument: (a ``ValueError``) a part this model family does not have.
        InvalidArgumentType: (a ``TypeError``) ``model`` is not a samkit model.
    """
    family = getattr(model, "family", None)
    if family not in _PARTS:
        raise InvalidArgumentType(f"compile_model needs a samkit model, got {type(model).__name__}")
    known = _PARTS[family]
    names = list(known) if parts is None else [parts] if isinstance(parts, str) else list(parts)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InvalidArgument(
            f"{', '.join(map(repr, unknown))}: not a compilable part of a {family!r} model "
            f"(choose from {', '.join(known)})"
        )
    for name in dict.fromkeys(names):
        part = known[name]
        module: nn.Module = model
        for attr in part.path:
            module = getattr(module, attr)
        options = {"backend": backend, "mode": mode, "fullgraph": fullgraph}
        if part.method is None:
            module.compile(dynamic=part.dynamic, **options)
        else:  # an instance attribute shadowing the method: no parameter changes name
            method = getattr(type(module), part.method).__get__(module)
            compiled = torch.compile(method, dynamic=part.dynamic, **options)
            object.__setattr__(module, part.method, compiled)
            module.__dict__.setdefault("_samkit_compiled", set()).add(part.method)
    return model


def is_compiled(module: nn.Module, method: str | None = None) -> bool:
    """Whether ``module`` (its call, or ``method``) was compiled in place by
    :func:`compile_model`."""
    if method is not None:
        return method in module.__dict__.get("_samkit_compiled", ())
    return getattr(module, "_compiled_call_impl", None) is not None
