"""Typed results and state objects shared by predictors, the CLI and (later) the server."""

from __future__ import annotations

import io
import operator
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from samkit.errors import InvalidImage

_EMBEDDING_FORMAT = "samkit.ImageEmbedding/1"


def is_int(value: object) -> bool:
    """Whether ``value`` is an integer argument: a Python or numpy integer, not a bool
    (``True`` would pass as 1) and not a float that happens to be whole."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


@dataclass(frozen=True, eq=False)  # identity equality: comparing tensors is ambiguous
class ImageEmbedding:
    """The image encoder's output for one image, plus the geometry to map prompts.

    Attributes:
        features: ``(1, C, h, w)`` float32 image embedding (256x64x64 for SAM 1).
        original_size: ``(H, W)`` of the image the user passed, in pixels.
        input_size: ``(H', W')`` of the resized image before padding to the model's
            square input (SAM 1: longest side 1024, aspect kept).
        model_name: registry name of the model that produced it (``None`` if unknown);
            predictors refuse embeddings from a different model.
        high_res_features: extra feature maps some families need (SAM 2's stride-4/8
            maps); empty for SAM 1.

    The object is immutable and holds no reference to a model, so one embedding can be
    shared by many predictors/threads. ``save``/``load`` (or ``to_bytes``/``from_bytes``)
    serialise it with ``torch.save`` and read it back with ``weights_only=True``.
    """

    features: torch.Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    model_name: str | None = None
    high_res_features: tuple[torch.Tensor, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        # sizes as plain ints (numpy integers would not survive a weights-only load)
        for name in ("original_size", "input_size"):
            value = getattr(self, name)
            try:
                size = tuple(operator.index(v) for v in value)
            except TypeError:
                raise InvalidImage(f"{name} must be two integers, got {value!r}") from None
            if len(size) != 2:
                raise InvalidImage(f"{name} must be two integers, got {value!r}")
            object.__setattr__(self, name, size)

    def to(self, device: str | torch.device) -> ImageEmbedding:
        """A copy with tensors on ``device``."""
        return ImageEmbedding(
            features=self.features.to(device),
            original_size=self.original_size,
            input_size=self.input_size,
            model_name=self.model_name,
            high_res_features=tuple(t.to(device) for t in self.high_res_features),
        )

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        torch.save(
            {
                "format": _EMBEDDING_FORMAT,
                "features": self.features.detach().cpu(),
                "original_size": list(self.original_size),
                "input_size": list(self.input_size),
                "model_name": self.model_name,
                "high_res_features": [t.detach().cpu() for t in self.high_res_features],
            },
            buf,
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ImageEmbedding:
        try:
            obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception:  # torch's message suggests weights_only=False: not passed on
            raise InvalidImage(
                "not a samkit image embedding (not a weights-only torch.save file)"
            ) from None
        if not isinstance(obj, dict) or obj.get("format") != _EMBEDDING_FORMAT:
            raise InvalidImage("not a samkit image embedding (unknown format)")
        try:
            features = obj["features"]
            high_res = tuple(obj["high_res_features"])
            model_name = obj["model_name"]
            sizes = [
                (int(obj[key][0]), int(obj[key][1]))
                for key in ("original_size", "input_size")
                if len(obj[key]) == 2
            ]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise InvalidImage(f"malformed samkit image embedding: {exc!r}") from None
        if (
            not isinstance(features, torch.Tensor)
            or not all(isinstance(t, torch.Tensor) for t in high_res)
            or not (model_name is None or isinstance(model_name, str))
            or len(sizes) != 2
        ):
            raise InvalidImage("malformed samkit image embedding (unexpected field types)")
        return cls(features, sizes[0], sizes[1], model_name, high_res)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write atomically (temporary file + rename)."""
        from samkit.fileio import atomic_write_bytes

        atomic_write_bytes(Path(path), self.to_bytes())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ImageEmbedding:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise InvalidImage(f"cannot read embedding {path}: {exc.strerror or exc}") from None
        return cls.from_bytes(data)


@dataclass(frozen=True)
class MaskPrediction:
    """Masks for one prompt set, in original-image pixels.

    Attributes:
        masks: ``(K, H, W)`` bool (or float32 logits with ``return_logits=True``).
        scores: ``(K,)`` predicted IoU, in the decoder's output order (index-stable, not
            sorted): with ``multimask=True`` index 0..2 are the three candidates.
        low_res_logits: ``(K, 256, 256)`` float32 logits in the padded model-input
            frame; feed one back as ``mask_input`` (shape ``(1, 256, 256)``) to refine.
    """

    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray

    @property
    def best_index(self) -> int:
        """Index of the highest predicted IoU."""
        return int(np.argmax(self.scores))

    @property
    def best_mask(self) -> np.ndarray:
        return self.masks[self.best_index]


@dataclass(frozen=True)
class BatchMaskPrediction:
    """Masks for N prompt sets decoded together.

    Attributes:
        masks: ``(N, K, H, W)`` bool (or float32 logits).
        scores: ``(N, K)`` predicted IoU, index-stable.
        low_res_logits: ``(N, K, 256, 256)`` float32.
    """

    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray

    def __len__(self) -> int:
        return int(self.masks.shape[0])

    def __getitem__(self, i: int) -> MaskPrediction:
        return MaskPrediction(self.masks[i], self.scores[i], self.low_res_logits[i])
