"""A populated tiny offline world for the app's tests, built once per test session in the shared session cache:
the world's images, two world-trained backbones run through the pipeline, and offline-proposed background lists.
Each stage is a step of core.steps, the same the app's jobs run; where a page test checks that the app shares a
job, the fixture runs that job in this process (same id)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

import core.job_kinds  # noqa: F401
from core import jobs, steps
from core.config import DebugConfig, RepeatsConfig
from tests.app_harness import TINY

# The two smallest world backbones (seconds to train); the first is the setup build's default world model, the one
# the pages show first.
MODELS = ["world-resnet-s", "world-mobilenet-s"]


@dataclass
class World:
    cache: Path
    spec: dict
    models: list[str]
    busiest_class: str  # the class with the most failures of the first model


def run_job(kind: str, **kwargs):
    """Run a job kind in this process exactly as the app's button would submit it (same id, same cache)."""
    job = jobs.job_for(kind, **kwargs)
    if job.state != jobs.DONE:
        jobs.run_inline(job)
    return job.status()["result"]


@pytest.fixture(scope="session")
def populated_world(session_cache) -> World:
    assert os.environ["BACKDROP_CACHE"] == str(session_cache)
    from core.find.runs import list_runs
    from core.job_kinds import prepare_shared

    steps.build_world(TINY, ("images", "backbones"), models=MODELS, prepare=prepare_shared)
    run_job("run_models", dataset=TINY, models=sorted(MODELS))  # the job the Setup page asks for: the page shares it
    steps.propose(TINY, "background", proposer="offline", options={"top_n": 10})
    ds = steps.open_ds(TINY)
    runs = {s["model"]: s for s in list_runs(ds)}
    table = pd.read_parquet(Path(runs[MODELS[0]]["folder"]) / "failures.parquet", columns=["label", "correct"])
    busiest = ds.classes[int(table.loc[~table["correct"], "label"].value_counts().idxmax())]
    return World(session_cache, TINY, MODELS, busiest)


# The real world CLIP code at test size (the default trains for minutes), with the ViT tower from scratch
# (core.world.clip.FROM_SCRATCH's tower and balance): the default's tower would be one more backbone to train
# (world-resnet-m), for ten steps.
SMALL_CLIP = {"image_tower": None, "balance": 0.5, "epochs": 1, "max_steps": 10}


def small_clip():
    """The world CLIP at test size (trained by ``assigned_world``)."""
    from core.world.clip import WorldClipConfig, load_world_clip

    return load_world_clip(steps.open_ds(TINY), WorldClipConfig(**SMALL_CLIP))


@pytest.fixture(scope="session")
def assigned_world(populated_world) -> World:
    """Each model's debug_seed failures assigned to background values (cached beside the run)."""
    from core.world.clip import WorldClipConfig

    steps.build_world(TINY, ("clip",), clip_config=WorldClipConfig(**SMALL_CLIP), prepare=steps.already_prepared)
    for m in populated_world.models:
        steps.textualize(TINY, m, "background", 3, clip=small_clip())
    return populated_world


@pytest.fixture(scope="session")
def results_world(assigned_world) -> World:
    """The one-click setup build over these models, without its EfficientNet-Lite step: it finds the world, the
    runs, the lists and the assignments above cached and adds what it makes last, a generated set and a saved
    before/after table for the default world model (models[0]), with the small CLIP above."""
    from core.config import SetupConfig
    from core.job_kinds import prepare_shared
    from core.world.clip import WorldClipConfig

    done = steps.setup_world(
        TINY,
        config=SetupConfig(lite=False, models=tuple(assigned_world.models)),
        clip_config=WorldClipConfig(**SMALL_CLIP),
        prepare=prepare_shared,
    )
    assert done.default_model == assigned_world.models[0]
    return assigned_world


REPEATS = dict(what="individual", repeats=RepeatsConfig(n=2), debug=DebugConfig(k_modes=1, images_per_mode=1))


@pytest.fixture(scope="session")
def repeats_world(results_world) -> World:
    """Table 2 over two repeats (split and generation seeds 0 and 1) for the first model, saved as the app's
    experiment_repeats job and ``debug --repeats 2`` save it (one mode per class, one image per mode: the
    surfaces, not the effect sizes, are under test here)."""
    steps.experiment_repeats(TINY, models=results_world.models[:1], clip=small_clip(), **REPEATS)
    return results_world
