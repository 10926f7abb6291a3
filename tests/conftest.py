"""Make helper modules in ``tests/`` (e.g. ``reference_shims``) importable; shared
fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)


@pytest.fixture
def cli_isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """For CLI tests: a private weights cache, no debug mode, and the tmp folder as the
    working directory. Modules opt in with ``pytestmark = usefixtures("cli_isolated")``."""
    monkeypatch.setenv("SAMKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SAMKIT_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
