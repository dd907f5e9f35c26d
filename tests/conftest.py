"""Test-wide set-up and shared fixtures: every test session gets its own cache folder, never the user's cache/;
the tiny offline world, its world CLIP and the populated app worlds are built once per session."""

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

    base = str(tmp_path_factory.getbasetemp())  # this pytest run's tmp_path folders (fresh_cache lives there)
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


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensor work on one intra-op thread (faster than threads contending for few cores); module-wide via
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    from core.threads import single_thread

    with single_thread():
        yield


@pytest.fixture(scope="session")
def tiny_world(session_cache):
    """The tiny offline world (``scenes-mnist``, seed 0), rendered once into the session cache."""
    from core.datasets import create_dataset

    return create_dataset("scenes-mnist", size="tiny", seed=0)


@pytest.fixture(scope="session")
def world_clip(tiny_world):
    """The world CLIP trained on the tiny world with the default config (its tower started from world-resnet-m,
    trained first), once per session."""
    from core.threads import single_thread
    from core.world.clip import train_world_clip

    with single_thread():
        return train_world_clip(tiny_world, device="cpu")


@pytest.fixture(scope="session")
def open_world(session_cache):
    """The tiny open-vocabulary world (``scenes-mnist-open``, seed 0), its offline-proposed background lists and a
    world CLIP trained on it with a shortened schedule (the ViT tower from scratch, 150 steps), built once per session:
    ``(world, {class: candidates}, clip)``."""
    from core.datasets import create_dataset
    from core.describe.proposals import propose
    from core.describe.proposals.offline import offline_options
    from core.threads import single_thread
    from core.world.clip import FROM_SCRATCH, WorldClipConfig, train_world_clip

    world = create_dataset("scenes-mnist-open", size="tiny", seed=0)
    props = propose("background", world.classes, proposer="offline", **offline_options(world))
    with single_thread():
        clip = train_world_clip(world, WorldClipConfig(**FROM_SCRATCH, max_steps=150), device="cpu")
    return world, {c: p.values for c, p in props.items()}, clip


# The app's populated worlds (models run, lists curated, experiments done), session-scoped, in tests/app_world.py.
from tests.app_world import assigned_world, populated_world, repeats_world, results_world  # noqa: E402, F401
