"""Opt-in ``torch.compile`` of a model's heavy parts (mainly for GPUs).

:func:`compile_model` compiles, in place, the modules that dominate the run time: the
image encoder (SAM 2: its Hiera trunk), and for SAM 2 video the memory attention and the
memory encoder. Parameters, buffers and checkpoint keys are unchanged (``nn.Module.compile``
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

The mask decoder is left eager: the predictor reuses per-image decoder work
(``SamModel.prepare_decoding``) that a compiled graph would not see.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

from samkit.modeling import SamModel

__all__ = ["COMPILABLE_PARTS", "compile_model", "is_compiled"]


@dataclass(frozen=True)
class _Part:
    """How one part is compiled: the module's attribute path and whether its input
    shapes are static (``dynamic=False``), vary from call to call (``True``) or are left
    to torch's automatic choice (``None``: static first, dynamic after a recompile)."""

    path: tuple[str, ...]
    dynamic: bool | None


_PARTS: dict[str, dict[str, _Part]] = {
    "sam": {"image_encoder": _Part(("image_encoder",), dynamic=False)},
    "sam2": {
        "image_encoder": _Part(("image_encoder", "trunk"), dynamic=False),
        "memory_attention": _Part(("memory_attention",), dynamic=True),
        "memory_encoder": _Part(("memory_encoder",), dynamic=None),
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
            ``"memory_encoder"``); default all of them.
        mode: ``torch.compile``'s mode, e.g. ``"max-autotune"`` on a GPU (longer first
            call, faster kernels); ``None`` is torch's default.
        backend: ``torch.compile``'s backend.
        fullgraph: require each part to compile as one graph (an error, not a silent
            fall-back to Python, if something in it cannot be traced).

    Raises:
        ValueError: a part this model family does not have.
    """
    family = getattr(model, "family", None)
    if family not in _PARTS:
        raise TypeError(f"compile_model needs a samkit model, got {type(model).__name__}")
    known = _PARTS[family]
    names = list(known) if parts is None else [parts] if isinstance(parts, str) else list(parts)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"{', '.join(map(repr, unknown))}: not a compilable part of a {family!r} model "
            f"(choose from {', '.join(known)})"
        )
    for name in dict.fromkeys(names):
        part = known[name]
        module: nn.Module = model
        for attr in part.path:
            module = getattr(module, attr)
        module.compile(backend=backend, mode=mode, fullgraph=fullgraph, dynamic=part.dynamic)
    return model


def is_compiled(module: nn.Module) -> bool:
    """Whether ``module`` itself was compiled in place (``nn.Module.compile``)."""
    return getattr(module, "_compiled_call_impl", None) is not None
