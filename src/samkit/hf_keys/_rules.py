"""Rule-table machinery shared by the SAM 1 and SAM 2 key maps.

A rule pairs an official name pattern with a Hugging Face name pattern. Patterns are literal
text with ``{name}`` placeholders (``_PLACEHOLDERS``), each standing for the same text on both
sides; :class:`_Side` compiles one side into a matcher and a formatter and :func:`_rename`
applies a table of rules in either direction. Also here: the two Hugging Face keys of the
random Fourier matrix (the same names in SAM 1 and SAM 2 files), :func:`_merge_prompt_pe`,
which folds the second copy into the single official key, and the unknown-key error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from samkit.errors import CheckpointError

#: Hugging Face key of the random Fourier matrix used for the dense image positional encoding.
HF_SHARED_PE_KEY = "shared_image_embedding.positional_embedding"
#: Hugging Face key of the (tied) copy used by the prompt encoder for points and boxes.
HF_PROMPT_PE_KEY = "prompt_encoder.shared_embedding.positional_embedding"

# Placeholders usable in rule patterns. Each stands for the same text on both sides.
_PLACEHOLDERS: dict[str, str] = {
    "i": r"\d+",  # a layer / block / token index
    "p": r"weight|bias",
    "attn": r"self_attn|cross_attn_token_to_image|cross_attn_image_to_token",
    "proj": r"q_proj|k_proj|v_proj|out_proj",
    "rel": r"rel_pos_h|rel_pos_w",
    "mlp": r"lin1|lin2",
    "n": r"[1-4]",  # two-way block norm index
    # SAM 2 only
    "qkv": r"q_proj|k_proj|v_proj",  # SAM 2 attention input projections (out_proj differs)
    "mattn": r"self_attn|cross_attn_image",  # memory-attention layer attentions
    "n2": r"[12]",  # Hiera block norms, Linear / pointwise-conv pairs
    "n3": r"[1-3]",  # memory-attention layer norms
}

_PLACEHOLDER_RE = re.compile(r"\{(\w+)\}")
_MAX_REPORTED = 5


@dataclass(frozen=True)
class _Side:
    """One side (official or HF) of a rule: a matcher and a formatter."""

    pattern: str
    regex: re.Pattern[str]
    names: tuple[str, ...]

    @classmethod
    def from_pattern(cls, pattern: str) -> _Side:
        parts: list[str] = []
        names: list[str] = []
        pos = 0
        for m in _PLACEHOLDER_RE.finditer(pattern):
            parts.append(re.escape(pattern[pos : m.start()]))
            name = m.group(1)
            parts.append(f"(?P<{name}>{_PLACEHOLDERS[name]})")
            names.append(name)
            pos = m.end()
        parts.append(re.escape(pattern[pos:]))
        return cls(pattern, re.compile("".join(parts)), tuple(names))

    def match(self, key: str) -> dict[str, str] | None:
        m = self.regex.fullmatch(key)
        return m.groupdict() if m else None

    def format(self, values: Mapping[str, str]) -> str:
        return self.pattern.format(**{name: values[name] for name in self.names})


@dataclass(frozen=True)
class _Rule:
    official: _Side
    hf: _Side


def _rename(key: str, direction: str, rules: tuple[_Rule, ...]) -> str | None:
    """Return the other-side name of ``key`` (``direction`` is ``"to_official"`` or
    ``"to_hf"``) under ``rules`` (the SAM 1 or SAM 2 table), or ``None`` if no rule matches.
    More than one match is a bug in the table."""
    found: list[str] = []
    for rule in rules:
        src, dst = (
            (rule.hf, rule.official) if direction == "to_official" else (rule.official, rule.hf)
        )
        values = src.match(key)
        if values is not None:
            found.append(dst.format(values))
    if len(found) > 1:  # pragma: no cover - guarded by tests of the table
        raise AssertionError(f"key {key!r} matches several rules: {found}")
    return found[0] if found else None


def _unknown_error(kind: str, unknown: list[str], family: str = "SAM 1") -> CheckpointError:
    shown = ", ".join(repr(k) for k in unknown[:_MAX_REPORTED])
    more = f" (and {len(unknown) - _MAX_REPORTED} more)" if len(unknown) > _MAX_REPORTED else ""
    return CheckpointError(
        f"{len(unknown)} key(s) are not {kind} {family} parameter names: {shown}{more}"
    )


def _same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal shape and values (values are not compared for meta tensors, which have none)."""
    if a.shape != b.shape:
        return False
    if a is b or a.is_meta or b.is_meta:
        return True
    return torch.equal(a, b.to(device=a.device, dtype=a.dtype))


def _merge_prompt_pe(
    out: dict[str, torch.Tensor], prompt_pe: torch.Tensor | None, official_key: str
) -> None:
    """Fold HF's prompt-encoder copy of the random Fourier matrix into ``out[official_key]``
    (already holding the ``shared_image_embedding`` copy, if the file had it)."""
    if prompt_pe is None:
        return
    shared_pe = out.get(official_key)
    if shared_pe is None:
        out[official_key] = prompt_pe
    elif not _same_values(shared_pe, prompt_pe):
        raise CheckpointError(
            f"{HF_SHARED_PE_KEY!r} and {HF_PROMPT_PE_KEY!r} differ; the official model has "
            "one positional matrix for both, so this checkpoint cannot be converted"
        )
