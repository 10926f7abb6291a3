"""2-D axial rotary position encoding (RoPE), as used by SAM 2's memory attention.

Each head's ``D`` channels are taken as ``D / 2`` consecutive pairs ``(x[2i], x[2i+1])``,
each pair a point in the plane rotated by an angle that depends on the token's grid
position. The first ``D / 4`` pairs rotate with the token's column ``t_x``, the last
``D / 4`` with its row ``t_y``; pair ``j`` of either half uses the frequency
``theta ** (-4j / D)``. Tokens are numbered row-major over a ``(end_y, end_x)`` grid:
token ``t`` sits at column ``t % end_x`` and row ``t // end_x``.

Rotations are computed in float32 (like the official implementation) and cast back to the
input dtype. Two equivalent kernels are provided: a complex multiply (one fused kernel,
several times faster, used on CPU and CUDA) and plain real cos/sin arithmetic (used on
other devices, whose complex support varies). They agree to float rounding.

For cross-attention to memories the keys can be ``r`` stacked copies of the query grid
(``r`` memory frames of the same size): ``repeat_k=True`` gives each copy the query
grid's angles. Trailing keys that are not grid tokens (object pointers) can be left
unrotated, see :func:`apply_rope_qk`.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

from samkit.errors import InvalidArgument, InvalidConfig
from samkit.layers import common

_COMPLEX_DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class AxialRope:
    """Rotation tables of one grid (cached and shared: never modify them in place).

    Attributes:
        cos: float32 ``(N, D / 2)``: cosine of the angle of token ``t`` (row), pair ``j``.
        sin: float32 ``(N, D / 2)``: the sines.
        cis: complex64 ``cos + i sin`` on devices with complex kernels, else ``None``.
    """

    cos: torch.Tensor
    sin: torch.Tensor
    cis: torch.Tensor | None

    @property
    def num_tokens(self) -> int:
        return self.cos.shape[0]

    def rotate(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Rotate ``(..., r * N, D)`` (``r`` stacked grids) -> same shape and dtype
        (written into ``out`` when given). Traced by ``torch.compile``: the real form,
        which the compiler fuses (it generates no code for complex products)."""
        if self.cis is not None and not torch.compiler.is_compiling():
            return rotate_complex(x, self.cis, out)
        rotated = rotate_real(x, self.cos, self.sin)
        return rotated if out is None else out.copy_(rotated)


def axial_rope(
    dim: int,
    end_x: int,
    end_y: int,
    theta: float = 10000.0,
    device: torch.device | str | None = None,
) -> AxialRope:
    """The (cached) rotation tables of an ``end_y x end_x`` grid.

    Args:
        dim: channels per head ``D`` (a multiple of 4).
        end_x: grid width (columns).
        end_y: grid height (rows).
        theta: frequency base.
        device: where the tables live (default CPU).

    Returns:
        :class:`AxialRope` with ``N = end_x * end_y`` rows, cached per
        ``(dim, end_x, end_y, theta, device)``.
    """
    if dim % 4 != 0:
        raise InvalidConfig(f"axial RoPE needs a head dim divisible by 4, got {dim}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    args = (int(dim), int(end_x), int(end_y), float(theta), device)
    if torch.compiler.is_compiling():  # part of the traced graph, not a Python-side cache
        return _axial_rope.__wrapped__(*args)
    return _axial_rope(*args)


def axial_rope_cos_sin(
    dim: int,
    end_x: int,
    end_y: int,
    theta: float = 10000.0,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cos, sin)`` of :func:`axial_rope`, each float32 ``(end_x * end_y, D / 2)``."""
    rope = axial_rope(dim, end_x, end_y, theta, device)
    return rope.cos, rope.sin


@functools.lru_cache(maxsize=32)
def _axial_rope(dim: int, end_x: int, end_y: int, theta: float, device: torch.device) -> AxialRope:
    with torch.inference_mode(False), torch.no_grad():  # a cache usable in any mode
        quarter = dim // 4
        exponents = torch.arange(0, dim, 4, device=device)[:quarter].float() / dim
        freqs = 1.0 / (theta**exponents)  # (D/4,)
        t = torch.arange(end_x * end_y, dtype=torch.float32, device=device)
        t_x = t % end_x
        t_y = torch.div(t, end_x, rounding_mode="floor")
        angles = torch.cat([torch.outer(t_x, freqs), torch.outer(t_y, freqs)], dim=-1)
        cos, sin = angles.cos(), angles.sin()
        cis = torch.complex(cos, sin) if device.type in _COMPLEX_DEVICES else None
    return AxialRope(cos, sin, cis)


def _grids(x: torch.Tensor, m: int) -> tuple[list[int], int]:
    *lead, n, _ = x.shape
    if n % m != 0:
        raise InvalidArgument(f"{n} tokens are not a whole number of {m}-token grids")
    return lead, n // m


def rotate_real(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the channel pairs of ``x`` with real arithmetic.

    Args:
        x: ``(..., r * M, D)``: ``r`` stacked copies of an ``M``-token grid.
        cos: ``(M, D / 2)`` cosines.
        sin: ``(M, D / 2)`` sines.

    Returns:
        The rotated ``x``, same shape and dtype (computed in float32).
    """
    m, d = cos.shape[0], x.shape[-1]
    lead, r = _grids(x, m)
    pairs = x.float().reshape(*lead, r, m, d // 2, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    out = torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1)
    return out.reshape(x.shape).to(x.dtype)


def rotate_complex(
    x: torch.Tensor, cis: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Rotate the channel pairs of ``x`` by multiplying with unit complex numbers.

    Args:
        x: ``(..., r * M, D)``: ``r`` stacked copies of an ``M``-token grid.
        cis: complex64 ``(M, D / 2)``, ``cos + i sin``.
        out: optional tensor of ``x``'s shape and dtype to write into; it may be a view
            (e.g. the leading rows of a larger key tensor) whose grids can be viewed as
            ``(prod(...), r, M, D)``.

    Returns:
        The rotated ``x``, same shape and dtype (computed in float32).

    Without gradients on the CPU, the float32 temporaries are bounded: a few grids at a time
    (``layers.common.TRANSIENT_BYTES``), each written into the output before the next.
    Rotating three objects' memories at once (3 x 7 grids of 4096 x 256) in one piece
    took 66 ms in bf16 on a 2-core Zen 4, one object at a time 23 ms: the one-piece
    temporaries (88 MiB in float32) are fresh pages from the OS on every call.
    """
    m, d = cis.shape[0], x.shape[-1]
    lead, r = _grids(x, m)
    per_grid = m * d * 4 * 2  # the float32 copy and the complex product
    whole = x.numel() // (m * d) * per_grid <= common.TRANSIENT_BYTES
    if whole or not common.bounded_inference() or x.device.type != "cpu":
        xc = torch.view_as_complex(x.float().reshape(*lead, r, m, d // 2, 2).contiguous())
        rotated = torch.view_as_real(xc * cis).reshape(x.shape).to(x.dtype)
        return rotated if out is None else out.copy_(rotated)
    n = math.prod(lead)
    src = x.reshape(n, r, m, d)
    if out is None:
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    target = out.view(n, r, m, d)  # e.g. the leading rows of a larger key tensor
    step = max(1, common.TRANSIENT_BYTES // per_grid)
    for i in range(n):
        for j in range(0, r, step):
            part = src[i, j : j + step].float().reshape(-1, m, d // 2, 2).contiguous()
            rotated = torch.view_as_real(torch.view_as_complex(part) * cis)
            target[i, j : j + step] = rotated.reshape(-1, m, d)
    return out


def apply_rope_qk(
    q: torch.Tensor,
    k: torch.Tensor,
    rope: AxialRope,
    repeat_k: bool = False,
    num_k_exclude: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate queries and keys with an axial RoPE table (batch-first heads).

    Args:
        q: ``(B, H, N_q, D)`` queries; ``N_q`` must equal ``rope.num_tokens``.
        k: ``(B, H, N_k, D)`` keys.
        rope: the query grid's tables (:func:`axial_rope`).
        repeat_k: the first ``N_k - num_k_exclude`` keys are several stacked copies of
            the query grid (memory frames) and each copy gets the query grid's angles.
            Without it those keys must number exactly ``N_q`` (or zero).
        num_k_exclude: trailing keys (e.g. object-pointer tokens) left unrotated.

    Returns:
        ``(q, k)`` rotated, same shapes and dtypes as the inputs (new tensors).
    """
    n_q = q.shape[-2]
    if rope.num_tokens != n_q:
        raise InvalidArgument(f"RoPE table has {rope.num_tokens} positions for {n_q} queries")
    n_rope = k.shape[-2] - num_k_exclude
    if n_rope < 0:
        raise InvalidArgument("num_k_exclude exceeds the number of keys")
    if n_rope not in (0, n_q) and not repeat_k:
        raise InvalidArgument(f"{n_rope} keys need repeat_k to match {n_q} queries")
    q = rope.rotate(q)
    if n_rope == 0:
        return q, k
    if num_k_exclude == 0:
        return q, rope.rotate(k)
    if not common.bounded_inference() or k.device.type != "cpu":
        return q, torch.cat((rope.rotate(k[..., :n_rope, :]), k[..., n_rope:, :]), dim=-2)
    # CPU inference: rotate straight into the result (no concatenated copy of the keys)
    out = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    rope.rotate(k[..., :n_rope, :], out=out[..., :n_rope, :])
    out[..., n_rope:, :] = k[..., n_rope:, :]
    return q, out
