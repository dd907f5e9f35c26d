"""Test-wide set-up: every test session gets its own cache folder, never the user's cache/."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_CACHE = Path(tempfile.mkdtemp(prefix="backdrop-test-cache-"))
os.environ["BACKDROP_CACHE"] = str(_SESSION_CACHE)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.pop("OPENAI_API_KEY", None)


@pytest.fixture(scope="session")
def session_cache() -> Path:
    """Shared cache for artifacts that are expensive and identical across tests (tiny world, trained models)."""
    return _SESSION_CACHE


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    """An empty cache for tests that check writing, resuming or corruption handling."""
    root = tmp_path / "cache"
    monkeypatch.setenv("BACKDROP_CACHE", str(root))
    return root
