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


@pytest.fixture(scope="session", autouse=True)
def _no_orphan_jobs(tmp_path_factory):
    """Background jobs that tests started must not outlive the test session (they run in their own process
    groups and would keep the CPU busy long after pytest exits)."""
    yield
    import glob

    from core import jobs

    base = str(tmp_path_factory.getbasetemp())  # this session's tmp_path folders (fresh_cache lives there)
    for cache in {str(_SESSION_CACHE), *glob.glob(os.path.join(base, "*", "cache"))}:
        os.environ["BACKDROP_CACHE"] = cache
        jobs.stop_all(grace=3.0)
    os.environ["BACKDROP_CACHE"] = str(_SESSION_CACHE)


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
