"""Make helper modules in ``tests/`` (e.g. ``reference_shims``) importable; shared
fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)


def _probe_torchvision_for_transformers() -> None:
    """transformers asks once (and caches) whether torchvision is installed. Ask now,
    before any test module puts the torchvision stand-ins of ``reference_shims`` into
    ``sys.modules``, so that the answer (not installed) never depends on test order."""
    try:
        from transformers.utils import import_utils
    except ImportError:
        return  # the HF parity modules then fail loudly on their own imports
    import_utils.is_torchvision_available()


_probe_torchvision_for_transformers()


@pytest.fixture
def cli_isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """For CLI tests: a private weights cache, no debug mode, and the tmp folder as the
    working directory. Modules opt in with ``pytestmark = usefixtures("cli_isolated")``."""
    monkeypatch.setenv("SAMKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SAMKIT_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network: every ``urllib.request.urlopen`` fails as an unreachable host does."""
    import urllib.error

    def unreachable(url, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr("urllib.request.urlopen", unreachable)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of tiny-tensor tests (thread-pool stalls cost more
    than they gain on a loaded 2-core machine). Modules opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
