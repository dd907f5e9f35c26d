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
def run_models(
    progress, should_stop, dataset: dict, models: list[str], split: dict | None = None, head: dict | None = None
):
    """Features, heads and failures for each model in turn (each cached, so a rerun resumes)."""
    from core.find.runs import run_model

    ds = open_dataset(dataset)
    out = {}
    for i, m in enumerate(models):
        check_stop(should_stop)
        progress(i, len(models), f"model {m} ({i + 1}/{len(models)})")
        run = run_model(
            ds,
            m,
            SplitConfig(**(split or {})),
            HeadConfig(**(head or {})),
            should_stop=should_stop,
            progress=lambda d, t, msg: progress(i, len(models), f"{m}: {msg} {d}/{t}"),
        )
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
    from core.find.features import extract_features
    from core.find.runs import get_splits, load_backbone

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
def propose_values(
    progress,
    should_stop,
    dataset: dict,
    attribute: str = "background",
    proposer: str = "offline",
    top_n: int = 10,
    vocab: str = "builtin",
    base_url: str | None = None,
    model: str | None = None,
):
    """Proposals for every class (LLM or offline vocabulary), deduplicated, seeded into lists nobody has edited.
    ``base_url`` and ``model`` choose the LLM's server and model (default: OpenAI, LLMConfig.model)."""
    from core.describe.curation import CuratedLists
    from core.describe.proposals import dedupe_proposals, propose

    ds = open_dataset(dataset)
    if proposer == "offline":
        kw = {"top_n": top_n, "vocab": vocab}
    else:
        kw = {k: v for k, v in (("base_url", base_url), ("model", model)) if v}
    props = propose(attribute, ds.classes, proposer=proposer, progress=progress, should_stop=should_stop, **kw)
    report = CuratedLists(ds, attribute).seed_from_proposals(props, dedupe_proposals(props))
    notice = next((p.notice for p in props.values() if p.notice), None)
    return {"proposer": proposer, "classes": report, "notice": notice}


@job_kind("textualize")
def textualize_failures(
    progress,
    should_stop,
    dataset: dict,
    model: str,
    attribute: str = "background",
    k: int = 3,
    split: dict | None = None,
    head: dict | None = None,
):
    """CLIP names the value each debug_seed failure shows (over the curated lists); the top-k per class are the
    model's failure modes. Cached beside the run (core.describe.textualize)."""
    from core.describe.textualize import textualize
    from core.find.runs import run_model

    ds = open_dataset(dataset)
    run = run_model(ds, model, SplitConfig(**(split or {})), HeadConfig(**(head or {})), should_stop=should_stop)
    text = textualize(ds, run, k=k, attribute=attribute, progress=progress, should_stop=should_stop)
    return {
        "assigned": len(text.assignments),
        "modes": len(text.modes),
        "list_version": text.provenance["list_version"],
    }


@job_kind("generate_modes")
def generate_modes(
    progress,
    should_stop,
    dataset: dict,
    modes: list[dict],
    attribute: str = "background",
    k: int = 3,
    images_per_mode: int = 5,
    generator: str | None = None,
    generator_kwargs: dict | None = None,
    seed: int = 0,
):
    """Images for failure modes ({class_name, label, value} rows, best first per class: what the Generate page
    previews) and as many Random_debugging images per class, into the shared generated sets that retraining and
    sweeps reuse (core.fix.mitigate.generate_for_modes)."""
    import pandas as pd

    from core.config import DebugConfig
    from core.fix.experiments import default_generator
    from core.fix.mitigate import generate_for_modes

    ds = open_dataset(dataset)
    cfg = DebugConfig(k_modes=k, images_per_mode=images_per_mode, seed=seed)
    gen = default_generator(ds, generator, **(generator_kwargs or {}))
    ours, rand = generate_for_modes(
        ds, pd.DataFrame(modes), gen, cfg, attribute=attribute, progress=progress, should_stop=should_stop
    )
    return {"ours": len(ours), "random": len(rand), "sets": sorted(set(ours.get("set", [])) | set(rand.get("set", [])))}


@job_kind("experiment")
def experiment(
    progress,
    should_stop,
    dataset: dict,
    what: str,
    models: list[str],
    attribute: str = "background",
    generator: str | None = None,
    generator_kwargs: dict | None = None,
    lam: float = 0.5,
    k: int = 3,
    images_per_mode: int = 5,
    reference: str | None = None,
    values: list | None = None,
):
    """One of the paper's experiments (core.fix.experiments), saved with what it came from (core.fix.mitigate):
    ``individual`` (Table 2), ``collective`` (Table 3 / Figure 6), or a sweep over ``lam`` or ``k`` (Figure 5)."""
    import pandas as pd

    from core.config import DebugConfig
    from core.errors import InvalidInputError
    from core.fix.experiments import Experiment, collective_study, default_generator, individual, sweep
    from core.fix.mitigate import save_results

    if what not in ("individual", "collective", "lam", "k"):
        raise InvalidInputError(f"Unknown experiment {what!r}: use individual, collective, lam or k.")
    ds = open_dataset(dataset)
    exp = Experiment(
        ds,
        DebugConfig(k_modes=k, images_per_mode=images_per_mode, lam=lam),
        attribute=attribute,
        generator=default_generator(ds, generator, **(generator_kwargs or {})),
        progress=progress,
        should_stop=should_stop,
    )
    if what == "individual":
        df = individual(exp, models)
    elif what == "collective":
        df = collective_study(exp, models, reference)
    else:
        df = pd.concat([sweep(exp, m, what, values) for m in models], ignore_index=True)
    parquet, csv = save_results(df, what, exp.meta(models=models, what=what))
    return {"rows": len(df), "parquet": parquet, "csv": csv}


@job_kind("setup_world")
def setup_world(progress, should_stop, dataset: dict):
    """Everything a first run needs, in one job: the world's images, its backbones and CLIP, a pipeline run of
    every world model, and offline-proposed background lists. Each step is cached, so a rerun resumes."""
    from core import jobs

    steps = ["images", "backbones", "CLIP", "models", "lists"]

    def step(i: int):
        return lambda d, t, msg="": progress(
            i * 1000 + int(1000 * d / max(t, 1)), len(steps) * 1000, f"{i + 1}/{len(steps)} {steps[i]}: {msg}"
        )

    step(0)(0, 1, "rendering")
    prep = jobs.job_for("prepare_dataset", dataset=dataset)
    if prep.state != jobs.DONE:
        jobs.run_inline(prep)  # its own status turns done here, so pages open the world from now on
    ds = open_dataset(dataset)
    check_stop(should_stop)
    from core.describe.textualize import ensure_lists
    from core.find.runs import run_model
    from core.world.backbones import train_world_backbones, world_model_names
    from core.world.clip import train_world_clip

    train_world_backbones(ds, progress=step(1), should_stop=should_stop)
    train_world_clip(ds, progress=step(2), should_stop=should_stop)
    names = world_model_names(ds)  # the trained world backbones and the packaged ImageNet models
    for i, name in enumerate(names):
        check_stop(should_stop)
        step(3)(i, len(names), name)
        run_model(ds, name, should_stop=should_stop)
    step(4)(0, 1, "proposing")
    ensure_lists(ds, "background", proposer="offline", should_stop=should_stop)
    progress(len(steps) * 1000, len(steps) * 1000, "ready")
    return {"models": names}


@job_kind("search_failures")
def search_failures(progress, should_stop, dataset: dict, model: str, query: str, top: int = 200):
    """The model's failures that CLIP finds most similar to a free-text query ("a seven on grass")."""
    from core.describe.assign import text_search
    from core.describe.textualize import default_clip
    from core.find.runs import run_model

    ds = open_dataset(dataset)
    run = run_model(ds, model, should_stop=should_stop)
    hits = text_search(
        query,
        run.failures["image_id"].tolist(),
        ds,
        default_clip(ds),
        top=top,
        progress=progress,
        should_stop=should_stop,
    )
    return {"image_id": hits["image_id"].tolist(), "score": [round(float(s), 4) for s in hits["score"]]}
