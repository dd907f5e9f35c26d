"""A populated tiny offline world for the app's tests, built once per test session in the shared session cache:
the world's images, two world models run through the pipeline, and offline-proposed background lists."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from core import jobs
from tests.app_harness import TINY

import core.job_kinds  # noqa: F401


@dataclass
class World:
    cache: Path
    spec: dict
    models: list[str]
    busiest_class: str      # the class with the most failures of the first model


def run_job(kind: str, **kwargs):
    """Run a job kind in this process exactly as the app's button would submit it (same id, same cache)."""
    job = jobs.job_for(kind, **kwargs)
    if job.state != jobs.DONE:
        jobs.run_inline(job)
    return job.status()["result"]


@pytest.fixture(scope="session")
def populated_world(session_cache) -> World:
    assert os.environ["BACKDROP_CACHE"] == str(session_cache)
    from core.models import world_model_names
    from core.pipeline import list_runs
    from core.workspace import open_dataset

    run_job("prepare_dataset", dataset=TINY)
    models = sorted(world_model_names())[:2]
    run_job("run_models", dataset=TINY, models=models)
    run_job("propose_values", dataset=TINY, attribute="background", proposer="offline", top_n=10, vocab="world")
    ds = open_dataset(TINY)
    runs = {s["model"]: s for s in list_runs(ds)}
    import pandas as pd

    table = pd.read_parquet(Path(runs[models[0]]["folder"]) / "failures.parquet")
    busiest = ds.classes[int(table.loc[~table["correct"], "label"].value_counts().idxmax())]
    return World(session_cache, TINY, models, busiest)
