"""Small building blocks: channel-first LayerNorm, transformer MLP, multi-layer MLP."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

#: At inference, row-wise work (MLPs, norms) whose widest intermediate would exceed this
#: many bytes runs on chunks of rows. Besides keeping the intermediates in cache, this
#: avoids page faults: glibc hands allocations above its mmap threshold (at most 32 MiB)
#: back to the OS when they are freed, so a 50-100 MiB temporary is faulted in afresh,
#: page by page, on every forward pass. Measured on a 2-core AMD EPYC (AVX2): the
#: ViT-B global-attention blocks 1.09 -> 0.66 s each with their bias bounded the same way.
TRANSIENT_BYTES = 16 * 2**20


def rows_per_chunk(width: int, element_size: int) -> int:
    """Rows of a ``width``-wide intermediate that fit in :data:`TRANSIENT_BYTES`."""
    return max(1, TRANSIENT_BYTES // max(1, width * element_size))


def bounded_inference() -> bool:
    """Whether samkit's eager-inference forms apply: the memory-bounded ones (chunked
    rows, windows, query blocks) and the caches of work that depends only on the weights
    (position embeddings, the decoder's prepared first block). True outside autograd and
    outside ``torch.compile``: a traced graph (:func:`samkit.compile_model`) takes the
    plain forms, whose memory the compiler plans, rather than unrolled Python loops over
    shape-dependent chunks or Python-side caches."""
    return not torch.is_grad_enabled() and not torch.compiler.is_compiling()


def residual_rowwise(
    x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor], width: int
) -> torch.Tensor:
    """``x + fn(x)`` for a row-wise ``fn`` on ``(..., C)`` (e.g. norm then MLP).

    ``width`` is the widest per-row intermediate of ``fn`` (the MLP's hidden size). At
    inference, when the rows' intermediates would exceed :data:`TRANSIENT_BYTES`, ``fn``
    runs on chunks of rows written into one output: the same values (each row's result
    depends on that row only), bounded temporaries. With gradients it is the plain sum.
    """
    rows = rows_per_chunk(width, x.element_size())
    c = x.shape[-1]
    n = x.numel() // max(1, c)
    if not bounded_inference() or n <= rows:
        return x + fn(x)
    flat = x.reshape(n, c)
    out = torch.empty_like(flat)
    for start in range(0, n, rows):
        part = flat[start : start + rows]
        torch.add(part, fn(part), out=out[start : start + rows])
    return out.reshape(x.shape)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a ``(B, C, H, W)`` tensor.

    Parameter names ``weight`` and ``bias`` match the official checkpoints.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """Same normalisation on a channels-last ``(..., C)`` tensor (fused kernel)."""
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) * torch.rsqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class MLPBlock(nn.Module):
    """Two-layer transformer feed-forward: ``lin2(act(lin1(x)))`` on ``(..., dim)``."""

    def __init__(self, embedding_dim: int, mlp_dim: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


class MLP(nn.Module):
    """``num_layers`` linear layers with an activation between them (keys ``layers.{i}``).

    Used by the mask decoder's hypernetworks and IoU head, SAM 2's object-score head,
    object pointer projection, Hiera's block MLP (GELU) and SAM 2's two-way transformer
    MLP. ``activation`` defaults to ReLU; ``sigmoid_output`` applies a sigmoid to the
    result.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        sigmoid_output: bool = False,
        activation: type[nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        dims_in = [input_dim] + [hidden_dim] * (num_layers - 1)
        dims_out = [hidden_dim] * (num_layers - 1) + [output_dim]
        self.num_layers = num_layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims_in, dims_out, strict=True))
        self.sigmoid_output = sigmoid_output
        self.act = activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = self.num_layers - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self.act(x)
        if self.sigmoid_output:
            x = torch.sigmoid(x)
        return x


class ConvTranspose2x2(nn.ConvTranspose2d):
    """``ConvTranspose2d(kernel_size=2, stride=2)`` computed as one matrix product.

    With kernel = stride = 2 every input pixel writes its own 2x2 output block, so the
    layer is a per-pixel linear map ``C_in -> C_out * 4`` followed by a pixel shuffle.
    A GEMM is several times faster than the CPU transposed-convolution kernel. Same
    parameters (``weight`` ``(C_in, C_out, 2, 2)``, ``bias``) and same results.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        """``(B, C_in, H, W)`` -> ``(B, C_out, 2H, 2W)``."""
        return self.forward_channels_last(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C_in)`` -> ``(B, 2H, 2W, C_out)``, all channels-last."""
        b, h, w, _ = x.shape
        y = self.forward_blocked(x).reshape(b, h, w, 2, 2, self.out_channels)
        return y.permute(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, self.out_channels)

    def forward_blocked(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., C_in)`` -> ``(..., 2, 2, C_out)``: each pixel's 2x2 output block.

        Leaves the output in "blocked" order (no pixel shuffle), for callers that only
        apply per-pixel operations next and un-shuffle once at the end.
        """
        lead, c = x.shape[:-1], x.shape[-1]
        o = self.out_channels
        weight = self.weight.permute(0, 2, 3, 1).reshape(c, 4 * o)  # (C_in, dy, dx, C_out)
        flat = x.reshape(-1, c)
        if self.bias is None:
            y = flat @ weight
        else:
            y = torch.addmm(self.bias.repeat(4), flat, weight)
        return y.reshape(*lead, 2, 2, o)
