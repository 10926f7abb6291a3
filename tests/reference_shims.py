"""Test-only stand-ins for torchvision and timm so the official packages import.

The PyPI builds of torchvision/timm do not work with the CPU torch used here, and the
official ``segment-anything`` / ``mobile_sam`` packages import a handful of their
functions. We provide faithful replacements of exactly those functions, inside the test
suite only (samkit never imports torchvision or timm):

- ``torchvision.transforms.functional.to_pil_image`` / ``resize`` on PIL images:
  torchvision delegates to ``PIL.Image.fromarray`` and ``Image.resize((w, h), BILINEAR)``.
- ``torchvision.ops.boxes.batched_nms`` / ``box_area``: a plain greedy NMS (tested
  separately in ``test_reference_shims.py`` against a brute-force definition).
- ``torchvision.transforms.ToTensor`` / ``Resize`` / ``Normalize`` (the official SAM 2
  transforms): ``ToTensor`` divides a HWC uint8 array by 255 into CHW float;
  ``Resize`` on a tensor is ``F.interpolate(bilinear, align_corners=False,
  antialias=True)`` in torchvision (its tensor path calls exactly that); ``Normalize``
  is ``(x - mean) / std``. They are TorchScript-compatible modules because the official
  code scripts them.
- ``timm.models.layers.DropPath`` / ``to_2tuple`` / ``trunc_normal_`` and
  ``timm.models.registry.register_model``: trivial at inference.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import torch
from PIL import Image
from torch import nn


def to_pil_image(pic: np.ndarray) -> Image.Image:
    if isinstance(pic, torch.Tensor):
        raise TypeError("shim only supports numpy input, as the official code passes")
    if pic.ndim == 3 and pic.shape[2] == 1:
        pic = pic[:, :, 0]
    return Image.fromarray(pic)


def resize(img: Image.Image, size: list[int] | tuple[int, int], *args, **kwargs) -> Image.Image:
    h, w = int(size[0]), int(size[1])
    return img.resize((w, h), Image.BILINEAR)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _iou_matrix(boxes: torch.Tensor) -> torch.Tensor:
    area = box_area(boxes)
    lt = torch.max(boxes[:, None, :2], boxes[None, :, :2])
    rb = torch.min(boxes[:, None, 2:], boxes[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area[:, None] + area[None, :] - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS: keep the highest score, drop boxes with IoU > threshold, repeat."""
    order = torch.argsort(scores, descending=True, stable=True)
    iou = _iou_matrix(boxes.double())
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    keep = []
    for i in order.tolist():
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return torch.tensor(keep, dtype=torch.long)


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS independently per category ``idxs`` (torchvision semantics)."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.long)
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


class ToTensor:
    def __call__(self, pic) -> torch.Tensor:
        if isinstance(pic, Image.Image):
            pic = np.asarray(pic)
        arr = np.asarray(pic)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        t = torch.from_numpy(np.ascontiguousarray(arr.transpose((2, 0, 1)))).contiguous()
        return t.float().div(255) if t.dtype == torch.uint8 else t.float()


class Resize(nn.Module):
    def __init__(self, size: list[int] | tuple[int, int]) -> None:
        super().__init__()
        self.size = [int(size[0]), int(size[1])]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeeze = x.dim() == 3
        if squeeze:
            x = x.unsqueeze(0)
        out = torch.nn.functional.interpolate(
            x, size=self.size, mode="bilinear", align_corners=False, antialias=True
        )
        if squeeze:
            out = out.squeeze(0)
        return out


class Normalize(nn.Module):
    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        return (x - mean) / std


class DropPath(nn.Module):
    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def to_2tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x, x)


def trunc_normal_(tensor: torch.Tensor, mean=0.0, std=1.0, a=-2.0, b=2.0) -> torch.Tensor:
    return nn.init.trunc_normal_(tensor, mean=mean, std=std, a=a, b=b)


def register_model(fn):
    return fn


def _module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    mod.__samkit_shim__ = True
    return mod


def install() -> None:
    """Put the shims in ``sys.modules`` (idempotent). Refuses to shadow a real install."""
    existing = sys.modules.get("torchvision")
    if existing is not None and not getattr(existing, "__samkit_shim__", False):
        raise RuntimeError("a real torchvision is imported; the shims would shadow it")
    functional = _module(
        "torchvision.transforms.functional", resize=resize, to_pil_image=to_pil_image
    )
    transforms = _module(
        "torchvision.transforms",
        functional=functional,
        ToTensor=ToTensor,
        Resize=Resize,
        Normalize=Normalize,
    )
    ops_boxes = _module(
        "torchvision.ops.boxes", batched_nms=batched_nms, box_area=box_area, nms=nms
    )
    ops = _module("torchvision.ops", boxes=ops_boxes, batched_nms=batched_nms, nms=nms)
    tv = _module("torchvision", transforms=transforms, ops=ops)
    layers = _module(
        "timm.models.layers", DropPath=DropPath, to_2tuple=to_2tuple, trunc_normal_=trunc_normal_
    )
    registry = _module("timm.models.registry", register_model=register_model)
    models = _module("timm.models", layers=layers, registry=registry)
    timm = _module("timm", models=models)
    sys.modules.update(
        {
            "torchvision": tv,
            "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional,
            "torchvision.ops": ops,
            "torchvision.ops.boxes": ops_boxes,
            "timm": timm,
            "timm.models": models,
            "timm.models.layers": layers,
            "timm.models.registry": registry,
        }
    )


def import_segment_anything():
    """Import the official ``segment_anything`` package (fails loudly if missing)."""
    install()
    import segment_anything

    return segment_anything


def import_sam2_module(name: str):
    """Import a module of the official ``sam2`` package, e.g. ``"modeling.memory_encoder"``.

    The memory and transformer modules need no torchvision; the shims are installed
    anyway so that any ``sam2`` module importing it gets the same stand-ins.
    """
    import importlib

    install()
    return importlib.import_module(f"sam2.{name}")


def import_mobile_sam():
    """Import the official MobileSAM package from ``mobilesam-mirror``."""
    install()
    import mobile_sam

    return mobile_sam
