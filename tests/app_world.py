"""A populated tiny offline world for the app's tests, built once per test session in the shared session cache:
the world's images, two world-trained backbones run through the pipeline, and offline-proposed background lists.
Each step is the job kind the app's buttons submit, run in this process (same job id, so the app shares it)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

import core.job_kinds  # noqa: F401
from core import jobs
from tests.app_harness import TINY

MODELS = ["world-mobilenet-s", "world-resnet-s"]  # the two smallest world backbones: seconds to train


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
    from core.workspace import open_dataset
    from core.world.backbones import train_world_backbones

    run_job("prepare_dataset", dataset=TINY)
    ds = open_dataset(TINY)
    train_world_backbones(ds, names=MODELS)
    run_job("run_models", dataset=TINY, models=MODELS)
    run_job("propose_values", dataset=TINY, attribute="background", proposer="offline", top_n=10, vocab="world")
    runs = {s["model"]: s for s in list_runs(ds)}
    table = pd.read_parquet(Path(runs[MODELS[0]]["folder"]) / "failures.parquet", columns=["label", "correct"])
    busiest = ds.classes[int(table.loc[~table["correct"], "label"].value_counts().idxmax())]
    return World(session_cache, TINY, MODELS, busiest)


SMALL_CLIP = {"epochs": 1, "max_steps": 10}  # the real world CLIP code at test size (the default trains for minutes)


@pytest.fixture(scope="session")
def assigned_world(populated_world) -> World:
    """Each model's debug_seed failures assigned to background values (core.describe.textualize, cached beside the run)."""
    from core.describe.textualize import textualize
    from core.find.runs import run_model
    from core.workspace import open_dataset
    from core.world.clip import WorldClipConfig, train_world_clip

    ds = open_dataset(TINY)
    clip = train_world_clip(ds, WorldClipConfig(**SMALL_CLIP))
    for m in populated_world.models:
        textualize(ds, run_model(ds, m), k=3, attribute="background", clip=clip)
    return populated_world


@pytest.fixture(scope="session")
def results_world(assigned_world) -> World:
    """A saved before/after table: what the Results page's 'individual' experiment job saves (core.fix.mitigate),
    computed from the assignments above."""
    from core.config import DebugConfig, HeadConfig, SplitConfig
    from core.describe.textualize import textualize
    from core.find.runs import run_model
    from core.fix.experiments import Experiment, default_generator
    from core.fix.mitigate import ModelContext, debug_model, generate_for_modes, save_results
    from core.workspace import open_dataset
    from core.world.clip import WorldClipConfig, load_world_clip

    ds = open_dataset(TINY)
    clip = load_world_clip(ds, WorldClipConfig(**SMALL_CLIP))
    cfg, gen = DebugConfig(), default_generator(ds, "world")
    rows = []
    for m in assigned_world.models[:1]:  # one model keeps the session short; the page handles any number
        run = run_model(ds, m)
        ours, rand = generate_for_modes(ds, textualize(ds, run, k=cfg.k_modes, clip=clip).modes, gen, cfg)
        rows += debug_model(ModelContext(ds, run, SplitConfig(), HeadConfig()), ours, rand, cfg)
    meta = Experiment(ds, cfg, generator=gen).meta(models=assigned_world.models[:1], what="individual")
    save_results(pd.DataFrame(rows), "individual", meta)
    return assigned_world
