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


def embedding_map_path(backbone_key: str, dataset_key: str, split_config: dict):
    """Where the 2-D map of a model's debug features lives (keyed like the features it projects)."""
    from core import store

    return store.cache_root() / "embedding_maps" / f"{store.make_key(backbone_key, dataset_key, split_config)}.parquet"


@job_kind("embedding_map")
def embedding_map(progress, should_stop, dataset: dict, model: str, split: dict | None = None):
    """2-D PCA (scikit-learn) of a model's cached debug-set features, for the Failures page's linked map."""
    from dataclasses import asdict

    import numpy as np
    import pandas as pd
    from sklearn.decomposition import PCA

    from core import store
    from core.features import extract_features
    from core.pipeline import get_splits, load_backbone

    ds = open_dataset(dataset)
    split_cfg = SplitConfig(**(split or {}))
    debug = get_splits(ds, split_cfg).debug
    backbone = load_backbone(model, ds)
    feats = np.asarray(extract_features(backbone, ds, debug, progress=progress, should_stop=should_stop), np.float32)
    xy = PCA(n_components=2, random_state=0).fit_transform(feats)
    out = pd.DataFrame({"image_id": debug["image_id"].astype(str).to_numpy(), "x": xy[:, 0], "y": xy[:, 1]})
    path = embedding_map_path(backbone.key, ds.key, asdict(split_cfg))
    with store.atomic_path(path) as tmp:
        out.to_parquet(tmp, index=False)
    return {"path": str(path), "points": len(out)}


@job_kind("propose_values")
def propose_values(progress, should_stop, dataset: dict, attribute: str = "background", proposer: str = "offline",
                   top_n: int = 10, vocab: str = "builtin"):
    """Proposals for every class (LLM or offline vocabulary), deduplicated, seeded into lists nobody has edited."""
    from core.curation import CuratedLists
    from core.proposals import dedupe_proposals, propose

    ds = open_dataset(dataset)
    kw = {"top_n": top_n, "vocab": vocab} if proposer == "offline" else {}
    props = propose(attribute, ds.classes, proposer=proposer, progress=progress, should_stop=should_stop, **kw)
    report = CuratedLists(ds, attribute).seed_from_proposals(props, dedupe_proposals(props))
    notice = next((p.notice for p in props.values() if p.notice), None)
    return {"proposer": proposer, "classes": report, "notice": notice}


@job_kind("generate_images")
def generate_images(progress, should_stop, set_name: str, generator: str, modes: list[dict], images_per_mode: int,
                    generator_kwargs: dict | None = None, attribute: str = "background", seed: int = 0,
                    baseline: bool = False):
    """Images for failure modes ({class_name, label, value} rows), or with ``baseline`` the same number per class
    prompted with the class alone (Random_debugging), into a resumable generated set."""
    import pandas as pd

    from core.generate import baseline_for, create_generator, generate_set, mode_requests

    requests = mode_requests(pd.DataFrame(modes), images_per_mode, attribute=attribute)
    if baseline:
        requests = baseline_for(requests)
    made = generate_set(create_generator(generator, **(generator_kwargs or {})), requests, set_name, seed=seed,
                        progress=progress, should_stop=should_stop)
    return {"set": set_name, "images": len(made.index())}


@job_kind("textualize")
def textualize_failures(progress, should_stop, dataset: dict, model: str, attribute: str = "background", k: int = 3,
                        split: dict | None = None, head: dict | None = None):
    """CLIP names the value each debug_seed failure shows (over the curated lists); the top-k per class are the
    model's failure modes. Cached beside the run (core.textualize)."""
    from core.pipeline import run_model
    from core.textualize import textualize

    ds = open_dataset(dataset)
    run = run_model(ds, model, SplitConfig(**(split or {})), HeadConfig(**(head or {})), should_stop=should_stop)
    text = textualize(ds, run, k=k, attribute=attribute, progress=progress, should_stop=should_stop)
    return {"assigned": len(text.assignments), "modes": len(text.modes), "list_version": text.provenance["list_version"]}
