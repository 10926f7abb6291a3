"""File helpers: atomic output (write to a temporary file in the same folder, then
rename), where a folder would be created, and cheap reads of a file's head."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from samkit.errors import OutputError


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def chmod_as_created(path: str | os.PathLike[str]) -> None:
    """Give a file from ``tempfile.mkstemp`` (0600) or a folder from ``mkdtemp`` (0700)
    the mode a plain ``open`` / ``mkdir`` would have given it under the umask."""
    full = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, full & ~current_umask())


def nearest_existing(path: str | os.PathLike[str]) -> Path:
    """``path`` itself if it exists, else its nearest existing ancestor: where creating
    ``path`` as a folder would start (or what is in its way, when that is a file)."""
    probe = Path(path)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return probe


def read_head(path: str | os.PathLike[str], size: int = 1 << 16) -> str:
    """The first ``size`` bytes of a text file, decoded as UTF-8 (undecodable bytes
    replaced), or ``""`` if it cannot be read: enough to see how a large JSON begins
    without reading it whole."""
    try:
        with open(path, "rb") as f:
            return f.read(size).decode("utf-8", errors="replace")
    except OSError:
        return ""


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write(f)`` on a temporary file and move it to ``path`` only on success.

    Raises :class:`OutputError` when the folder is missing or not writable, or when
    ``path`` exists but is not a regular file (a folder, a device such as ``/dev/null``,
    a pipe): the rename would replace it with a plain file. A symbolic link is written
    through: its target is replaced and the link kept.
    """
    path = Path(path)
    if path.is_symlink():
        try:
            path = path.resolve(strict=True)
        except (OSError, RuntimeError) as exc:  # a loop, or a link to nothing
            if not isinstance(exc, FileNotFoundError):
                raise OutputError(f"cannot write {path}: {exc}") from None
            path = path.resolve()
    if path.exists() and not path.is_file():
        raise OutputError(f"cannot write {path}: it is not a regular file")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        chmod_as_created(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_json(path: Path, doc: Any) -> None:
    """Serialise ``doc`` as compact UTF-8 JSON and write it atomically."""
    atomic_write_bytes(path, json.dumps(doc).encode("utf-8"))
