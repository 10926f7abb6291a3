"""Weights: cache directory, verified downloads, safe loading and strict key checks.

- Files are read with ``torch.load(..., weights_only=True)`` (or safetensors) only.
- Downloads stream into a temporary file next to the destination, are verified against
  the preset's sha256 and size, then moved into place with ``os.replace`` (atomic).
- Every mismatch between a checkpoint and an architecture becomes a
  :class:`~samkit.errors.CheckpointError` that lists the first few offending keys.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from samkit.configs.base import WeightSpec
from samkit.errors import CheckpointError, DownloadError
from samkit.fileio import chmod_as_created, nearest_existing

_CHUNK = 1 << 20
_SHOW = 5


def cache_dir() -> Path:
    """``$SAMKIT_CACHE`` if set, else ``~/.cache/samkit``."""
    env = os.environ.get("SAMKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "samkit"


def cached_path(spec: WeightSpec) -> Path:
    """Where the file of ``spec`` lives (or would live) in the cache."""
    return cache_dir() / spec.filename


def bundled_path(spec: WeightSpec) -> Path | None:
    """Path of weights shipped inside the samkit package, if the preset has any."""
    if spec.bundled is None:
        return None
    return Path(__file__).resolve().parent / spec.bundled


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download(spec: WeightSpec, dest: Path | None = None, progress: bool = True) -> Path:
    """Download ``spec.url`` to ``dest`` (default: the cache), verified and atomic.

    Raises :class:`DownloadError` naming the URL and the path to place the file at when
    the network is unreachable, the server fails, or the sha256/size do not match.
    """
    dest = dest if dest is not None else cached_path(spec)
    hint = f"download {spec.url} yourself and place it at {dest}, or pass a checkpoint path"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as exc:
        blocker = nearest_existing(dest.parent)
        if not blocker.is_dir():  # a file is in the way
            named = dest.parent == cache_dir() and os.environ.get("SAMKIT_CACHE")
            where = f"SAMKIT_CACHE {dest.parent}" if named else f"the cache folder {dest.parent}"
            if blocker == dest.parent:
                problem = f"{where} is a file, not a folder"
            else:
                problem = f"cannot create {where}: {blocker} is a file, not a folder"
            raise DownloadError(f"{problem}; set SAMKIT_CACHE to a folder") from None
        raise DownloadError(
            f"cannot write to the cache folder {dest.parent} ({exc.strerror or exc}); "
            "set SAMKIT_CACHE to a writable folder"
        ) from None
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        try:
            response = urllib.request.urlopen(spec.url, timeout=30)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DownloadError(f"could not download {spec.url} ({reason}); {hint}") from None
        total = int(response.headers.get("Content-Length") or spec.size or 0) or None
        with os.fdopen(fd, "wb") as out, response, _progress(total, dest.name, progress) as bar:
            fd = -1
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                bar(len(chunk))
        size = tmp.stat().st_size
        if spec.size is not None and size != spec.size:
            what = "is incomplete" if size < spec.size else "is larger than expected"
            raise DownloadError(
                f"download of {spec.url} {what} ({size} bytes, expected {spec.size}); {hint}"
            )
        if spec.sha256 is not None and digest.hexdigest() != spec.sha256:
            raise DownloadError(
                f"sha256 of {spec.url} is {digest.hexdigest()}, expected {spec.sha256}; {hint}"
            )
        chmod_as_created(tmp)
        os.replace(tmp, dest)
    except (OSError, http.client.HTTPException) as exc:
        reason = str(exc) or type(exc).__name__
        raise DownloadError(f"could not download {spec.url} ({reason}); {hint}") from None
    finally:
        if fd != -1:
            os.close(fd)
        tmp.unlink(missing_ok=True)
    return dest


class _progress:
    """A rich progress bar when ``enabled`` (to stderr), else a no-op callback."""

    def __init__(self, total: int | None, name: str, enabled: bool) -> None:
        self.total, self.name, self.enabled = total, name, enabled
        self._bar = None

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.console import Console
        from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

        self._bar = Progress(
            *Progress.get_default_columns(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
        )
        self._bar.start()
        task = self._bar.add_task(f"downloading {self.name}", total=self.total)
        return lambda n: self._bar.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()


def verify_file(path: Path, spec: WeightSpec, sha256: bool = True) -> None:
    """Check a cached weights file's size and (``sha256``: reading it whole) its sha256
    against ``spec``.

    Raises:
        CheckpointError: a mismatch, with how to fix it.
    """
    size = path.stat().st_size
    if spec.size is not None and size != spec.size:
        raise CheckpointError(
            f"cached file {path} has {size} bytes, expected {spec.size}: delete it and "
            f"download again from {spec.url}"
        )
    if sha256 and spec.sha256 is not None:
        actual = sha256_file(path)
        if actual != spec.sha256:
            raise CheckpointError(
                f"{path} has sha256 {actual}, expected {spec.sha256}: delete it and "
                f"download again from {spec.url}"
            )


def resolve_weights(spec: WeightSpec, progress: bool = True) -> Path:
    """Bundled file, else cached file (its size checked; ``samkit download`` also hashes
    it, :func:`verify_file`), else download into the cache."""
    bundled = bundled_path(spec)
    if bundled is not None:
        if not bundled.is_file():
            raise CheckpointError(f"bundled weights missing from the installation: {bundled}")
        return bundled
    path = cached_path(spec)
    if path.is_file():
        verify_file(path, spec, sha256=False)  # hashing every load would be slow
        return path
    return download(spec, path, progress=progress)


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``name -> tensor`` dict, safely.

    Accepts a plain state dict (SAM 1, MobileSAM), a ``{"model": state_dict}`` wrapper
    (SAM 2 and samkit training checkpoints) and ``.safetensors`` files. Raises
    :class:`CheckpointError` for anything unreadable or not a state dict.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a folder, not a file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # torch's warnings would reach a CLI user
            warnings.simplefilter("ignore")
            if path.suffix.lower() == ".safetensors":
                from safetensors.torch import load_file

                obj: object = load_file(str(path), device="cpu")
            else:
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch/pickle/zip/safetensors all raise differently
        raise CheckpointError(f"cannot read checkpoint {path}: {_load_failure(exc)}") from None
    if isinstance(obj, Mapping) and "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise CheckpointError(f"{path} does not contain a state dict of tensors")
    return dict(obj)


def _load_failure(exc: Exception) -> str:
    """Why a checkpoint could not be read, in one line. torch's errors go on to suggest
    ``weights_only=False``: that advice is never passed on, only what was found."""
    text = str(exc).strip()
    generic = "truncated, corrupt or not a PyTorch/safetensors file"
    if "weights only load failed" in text.lower():
        detail = text.split("WeightsUnpickler error:", 1)[-1].strip().splitlines()
        detail = [line.strip() for line in detail if line.strip()]
        if detail and detail[0].startswith("Unsupported global"):
            return (
                "it holds Python objects besides tensors, and samkit only loads weights "
                "(torch.load(weights_only=True))"
            )
        return f"{generic} ({_words(detail[0] if detail else 'not a pickle of tensors')})"
    if "legacy .tar format" in text:
        return (
            "not a zip-format PyTorch file (corrupt, or PyTorch's legacy .tar format, "
            "which cannot be loaded weights-only)"
        )
    first = text.splitlines()[0] if text else type(exc).__name__
    if first.isdigit() or "weights_only" in first:  # a bare byte value, or torch's advice
        return generic
    return f"{generic} ({_words(first)})"


def _words(text: str, limit: int = 160) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " ..."


def first_few(keys: list[str]) -> str:
    """The first few of ``keys`` for a message, with how many more there are."""
    shown = ", ".join(keys[:_SHOW])
    return shown + (f" (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else "")


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointError` unless names and shapes match ``model`` exactly."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} vs {expected[k]}"
        for k in sorted(set(expected) & set(state_dict))
        if tuple(state_dict[k].shape) != expected[k]
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {first_few(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {first_few(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches: {first_few(mismatched)}")
        raise CheckpointError(
            f"{source} does not match this architecture (is it a checkpoint of another "
            f"model?): " + "; ".join(parts)
        )
