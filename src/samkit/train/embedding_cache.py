"""On-disk cache of image embeddings for training with a frozen image encoder.

With ``freeze_image_encoder`` the encoder output of an image never changes, and it is by
far the most expensive part of a step, so it is computed once and stored as
``<cache_dir>/<image_id>.pt`` (``torch.save`` written atomically, read back with
``weights_only=True``). Each file records a key: the sha256 of a fingerprint of the
encoder weights (and preprocessing constants) plus the image's pixels and shape. A file
whose key differs (another model, fine-tuned encoder, edited image) is recomputed and
overwritten.

Augmentation caveat: cached mode trains on the *fixed, non-augmented* images -- any pixel
augmentation (flips, colour jitter, crops) would change the embedding every step and
defeat the cache. Augment the dataset offline (distinct ``image_id`` per variant) or
train with ``cache_embeddings=False``.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from samkit.errors import OutputError
from samkit.fileio import atomic_write_bytes
from samkit.inference.predictor import preprocess_image
from samkit.modeling import SamModel

__all__ = ["EmbeddingCache", "encoder_fingerprint", "preprocess_image"]

_FORMAT = "samkit.train.EmbeddingCache/1"

#: An image embedding and its high-resolution features (empty for SAM 1).
Embedding = tuple[torch.Tensor, tuple[torch.Tensor, ...]]
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def encoder_fingerprint(model: SamModel) -> str:
    """sha256 over the tensors an image embedding depends on (names, dtypes, shapes,
    bytes: ``model.EMBEDDING_PREFIXES``, the image encoder and for SAM 2 also the
    decoder's high-resolution projections and ``no_mem_embed``) and the preprocessing
    constants (input size, pixel mean/std)."""
    digest = hashlib.sha256()
    digest.update(f"{model.image_size}|{model._pixel_stats}".encode())
    prefixes = model.EMBEDDING_PREFIXES
    state = {k: v for k, v in model.state_dict().items() if k.startswith(prefixes)}
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


class EmbeddingCache:
    """Compute-once image embeddings, persisted under ``cache_dir``.

    Args:
        model: the model whose (frozen) image encoder produces the embeddings. The
            fingerprint of its weights is taken at construction: after the encoder
            weights change (e.g. :meth:`Trainer.resume
            <samkit.train.trainer.Trainer.resume>` loaded others), call :meth:`refresh`.
        cache_dir: folder for the ``.pt`` files (created if missing; :class:`OutputError`
            if it cannot be).
        max_memory_items: embeddings also kept in memory (LRU), 0 = disk only.

    Attributes:
        hits, misses: lookups served from memory/disk vs computed by the encoder.
    """

    def __init__(self, model: SamModel, cache_dir: str | Path, max_memory_items: int = 32) -> None:
        self.model = model
        self.cache_dir = Path(cache_dir)
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise OutputError(
                f"cannot create the embedding cache folder {self.cache_dir}: {reason}"
            ) from None
        self.fingerprint = encoder_fingerprint(model)
        self.hits = 0
        self.misses = 0
        self.max_memory_items = max_memory_items
        self._memory: OrderedDict[str, tuple[str, Embedding]] = OrderedDict()

    def refresh(self) -> None:
        """Take the encoder's fingerprint again (its weights were replaced) and forget
        the embeddings held in memory: files of the new weights are reused, the others
        recomputed."""
        self.fingerprint = encoder_fingerprint(self.model)
        self._memory.clear()

    def path_for(self, image_id: str) -> Path:
        """Cache file of ``image_id`` (unsafe characters replaced, plus a short hash when
        that changed the name, so distinct ids never collide)."""
        safe = _SAFE.sub("_", str(image_id)) or "_"
        if safe != image_id:
            safe += "-" + hashlib.sha256(str(image_id).encode()).hexdigest()[:8]
        return self.cache_dir / f"{safe}.pt"

    def key_for(self, image: np.ndarray) -> str:
        """The validity key of an image's embedding under this cache's encoder."""
        arr = np.ascontiguousarray(image)
        digest = hashlib.sha256(self.fingerprint.encode())
        digest.update(f"|{arr.dtype}|{arr.shape}|".encode())
        digest.update(arr.tobytes())
        return digest.hexdigest()

    def _load(self, path: Path, key: str) -> Embedding | None:
        if not path.is_file():
            return None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # corrupt/foreign file: recompute and overwrite
            return None
        if not isinstance(obj, dict) or obj.get("format") != _FORMAT or obj.get("key") != key:
            return None
        features, high_res = obj.get("features"), obj.get("high_res", [])
        tensors = [features, *high_res] if isinstance(high_res, list) else [None]
        if not all(isinstance(t, torch.Tensor) for t in tensors):
            return None
        return features, tuple(high_res)

    @torch.no_grad()
    def get_embedding(self, image_id: str, image: np.ndarray) -> Embedding:
        """``(1, C, h, w)`` float32 embedding of ``image`` on the model's device and its
        high-resolution features (SAM 2's two maps, empty for SAM 1), as
        :meth:`~samkit.modeling.sam.Sam.embed_image` gives them."""
        key = self.key_for(image)
        cached = self._memory.get(image_id)
        if cached is not None and cached[0] == key:
            self.hits += 1
            self._memory.move_to_end(image_id)
            return cached[1]
        path = self.path_for(image_id)
        loaded = self._load(path, key)
        if loaded is None:
            self.misses += 1
            x, _, _ = preprocess_image(self.model, image)
            features, high_res = self.model.embed_image(x)
            loaded = (features.detach().float().cpu(), tuple(t.float().cpu() for t in high_res))
            record = {"format": _FORMAT, "key": key, "features": loaded[0]}
            record["high_res"] = list(loaded[1])
            buf = io.BytesIO()
            torch.save(record, buf)
            atomic_write_bytes(path, buf.getvalue())
        else:
            self.hits += 1
        device = self.model.device
        embedding = (loaded[0].to(device), tuple(t.to(device) for t in loaded[1]))
        if self.max_memory_items > 0:
            self._memory[image_id] = (key, embedding)
            while len(self._memory) > self.max_memory_items:
                self._memory.popitem(last=False)
        return embedding

    def get(self, image_id: str, image: np.ndarray) -> torch.Tensor:
        """``(1, C, h, w)`` float32 embedding of ``image`` on the model's device (the
        first part of :meth:`get_embedding`)."""
        return self.get_embedding(image_id, image)[0]
