"""The job kinds the app and CLI can run in the background; each wraps one core function.

Arguments are JSON (a dataset is given by its spec dict, e.g. {"name": "scenes-mnist", "size": "tiny"}) so a
job's id is a stable hash of what it computes.
"""
from __future__ import annotations

import time

from core.config import HeadConfig, SplitConfig
from core.jobs import job_kind
from core.progress import check_stop
from core.workspace import open_dataset


@job_kind("selftest")
def selftest(progress, should_stop, steps: int = 5, delay: float = 0.1):
    """Counts to ``steps``: shows that background jobs, progress and stopping work on this machine."""
    for i in range(steps):
        check_stop(should_stop)
        time.sleep(delay)
        progress(i + 1, steps, "counting")
    return {"counted": steps}


@job_kind("run_models")
def run_models(progress, should_stop, dataset: dict, models: list[str], split: dict | None = None,
               head: dict | None = None):
    """Features, heads and failures for each model in turn (each cached, so a rerun resumes)."""
    from core.pipeline import run_model

    ds = open_dataset(dataset)
    out = {}
    for i, m in enumerate(models):
        check_stop(should_stop)
        progress(i, len(models), f"model {m} ({i + 1}/{len(models)})")
        run = run_model(ds, m, SplitConfig(**(split or {})), HeadConfig(**(head or {})), should_stop=should_stop,
                        progress=lambda d, t, msg: progress(i, len(models), f"{m}: {msg} {d}/{t}"))
        out[m] = run.summary["accuracy"]
    progress(len(models), len(models), "done")
    return out


@job_kind("prepare_dataset")
def prepare_dataset(progress, should_stop, dataset: dict):
    """Opens the dataset once (the offline world renders its images here) so that pages can open it instantly."""
    import inspect

    from core.datasets import DATASETS

    spec = dict(dataset)
    fn = DATASETS.entry(spec.pop("name")).fn
    params = inspect.signature(fn).parameters
    extra = {k: v for k, v in (("progress", progress), ("should_stop", should_stop)) if k in params}
    ds = fn(**spec, **extra)
    sizes = {pool: len(ds.index(pool)) for pool in ds.pools()}
    progress(1, 1, "ready")
    return {"classes": len(ds.classes), "images": sizes}
