"""The tiny offline world and its trained world CLIP, built once per test session in the shared session cache."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_world(session_cache):
    from core.datasets import create_dataset

    return create_dataset("scenes-mnist", size="tiny", seed=0)


@pytest.fixture(scope="session")
def world_clip(tiny_world):
    from core.threads import single_thread
    from core.world.clip import train_world_clip

    with single_thread():  # two threads on a shared 2-core box stall each other several-fold
        return train_world_clip(tiny_world, device="cpu")
