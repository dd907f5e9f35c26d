"""The job kinds the app (and the CLI's setup) run in the background: one per step of :mod:`core.steps`, each
turning JSON arguments into that step's typed call and its result into JSON.

Arguments are JSON (a dataset is given by its spec dict, e.g. {"name": "scenes-mnist", "size": "tiny"}; a config
by (part of) its fields, e.g. ``debug={"k_modes": 2}``) so a job's id is a stable hash of what it computes.
"""

from __future__ import annotations

import time

from core import steps as core_steps
from core.config import (
    DebugConfig,
    FilterConfig,
    GeneratorConfig,
    HeadConfig,
    RepeatsConfig,
    SetupConfig,
    SplitConfig,
    from_dict,
)
from core.jobs import job_kind
from core.progress import check_stop

PREPARE = "prepare_dataset"


def _given(**kw):
    """The arguments a job was given (the step's own defaults fill the rest: they live in one place)."""
    return {k: v for k, v in kw.items() if v is not None}


def _filter(clip_filter: dict | None) -> FilterConfig | None:
    """The CLIP filter a job asks for (None: no filtering; ``{}``: the filter with its default thresholds)."""
    return None if clip_filter is None else from_dict(FilterConfig, clip_filter)


@job_kind("selftest")
def selftest(progress, should_stop, steps: int = 5, delay: float = 0.1):
    """Counts to ``steps``: shows that background jobs, progress and stopping work on this machine."""
    for i in range(steps):
        check_stop(should_stop)
        time.sleep(delay)
        progress(i + 1, steps, "counting")
    return {"counted": steps}


@job_kind(PREPARE)
def prepare_dataset(progress, should_stop, dataset: dict):
    """Opens the dataset once (the offline world renders its images here) so that pages can open it instantly."""
    return core_steps.prepare_dataset(dataset, progress=progress, should_stop=should_stop).to_json()


def prepare_shared(spec: dict, progress=None) -> None:
    """Prepare ``spec`` as the app's prepare job (run here unless done), so the app opens the dataset from now
    on: the setup steps of the CLI and of the setup job use it (``progress`` also hears the job's progress)."""
    from core import jobs

    job = jobs.job_for(PREPARE, dataset=spec)
    if job.state != jobs.DONE:
        jobs.run_inline(job, also=progress)


@job_kind("setup_world")
def setup_world(progress, should_stop, dataset: dict, setup: dict | None = None, clip: dict | None = None):
    """Everything a first run needs, in one job (core.steps.setup_world); what `python -m core setup` runs.
    ``setup``: SetupConfig fields (e.g. {"lite": false} skips the EfficientNet-Lite family); ``clip``: the world
    CLIP's WorldClipConfig fields."""
    from core.world.clip import WorldClipConfig

    return core_steps.setup_world(
        dataset,
        config=from_dict(SetupConfig, setup),
        clip_config=from_dict(WorldClipConfig, clip) if clip else None,
        prepare=prepare_shared,
        progress=progress,
        should_stop=should_stop,
    ).to_json()


@job_kind("run_models")
def run_models(
    progress, should_stop, dataset: dict, models: list[str], split: dict | None = None, head: dict | None = None
):
    """Features, heads and failures for each model in turn: model -> accuracy per split."""
    return core_steps.run_models(
        dataset,
        models,
        from_dict(SplitConfig, split),
        from_dict(HeadConfig, head),
        progress=progress,
        should_stop=should_stop,
    ).accuracy


@job_kind("embedding_map")
def embedding_map(progress, should_stop, dataset: dict, model: str, split: dict | None = None, method: str = "pca"):
    """2-D map of a model's debug features (PCA, or UMAP), for the Failures page's linked map."""
    return core_steps.embedding_map(
        dataset, model, from_dict(SplitConfig, split), method=method, progress=progress, should_stop=should_stop
    )


@job_kind("propose_values")
def propose_values(
    progress,
    should_stop,
    dataset: dict,
    attribute: str | None = None,
    proposer: str | None = None,
    top_n: int | None = None,
    vocab: str | None = None,
    base_url: str | None = None,
    model: str | None = None,
):
    """Proposals for every class (LLM or offline vocabulary), deduplicated, seeded into lists nobody has edited.
    ``base_url`` and ``model`` choose the LLM's server and model (default: OpenAI, LLMConfig.model)."""
    return core_steps.propose(
        dataset,
        proposer=proposer,
        options=_given(top_n=top_n, vocab=vocab, base_url=base_url, model=model),
        progress=progress,
        should_stop=should_stop,
        **_given(attribute=attribute),
    ).to_json()


@job_kind("textualize")
def textualize_failures(
    progress,
    should_stop,
    dataset: dict,
    model: str,
    attribute: str | None = None,
    k: int | None = None,
    split: dict | None = None,
    head: dict | None = None,
):
    """CLIP names the value each debug_seed failure shows; the top-k per class are the model's failure modes."""
    r = core_steps.textualize(
        dataset,
        model,
        split=from_dict(SplitConfig, split),
        head=from_dict(HeadConfig, head),
        progress=progress,
        should_stop=should_stop,
        **_given(attribute=attribute, k=k),
    )
    return {"assigned": r.assigned, "modes": r.modes_found, "list_version": r.list_version}


@job_kind("generate_modes")
def generate_modes(
    progress,
    should_stop,
    dataset: dict,
    modes: list[dict],
    attribute: str | None = None,
    generator: dict | None = None,
    debug: dict | None = None,
    model: str | None = None,
    clip_filter: dict | None = None,
):
    """Images for failure modes (what the Generate page previews) and the Random_debugging baseline, CLIP-filtered
    with ``clip_filter``; ``model`` is the model whose failures the edits generator edits."""
    return core_steps.generate(
        dataset,
        modes,
        model=model,
        generator=from_dict(GeneratorConfig, generator),
        debug=from_dict(DebugConfig, debug),
        clip_filter=_filter(clip_filter),
        progress=progress,
        should_stop=should_stop,
        **_given(attribute=attribute),
    ).to_json()


@job_kind("experiment")
def experiment(
    progress,
    should_stop,
    dataset: dict,
    what: str,
    models: list[str],
    attribute: str | None = None,
    generator: dict | None = None,
    debug: dict | None = None,
    split: dict | None = None,
    head: dict | None = None,
    reference: str | None = None,
    values: list | None = None,
    clip_filter: dict | None = None,
):
    """One of the paper's experiments: ``individual``, ``collective``, or a sweep over ``lam`` or ``k``; with the
    edits generator, on one model (core raises a clear error otherwise)."""
    return core_steps.experiment(
        dataset,
        what,
        models,
        generator=from_dict(GeneratorConfig, generator),
        debug=from_dict(DebugConfig, debug),
        split=from_dict(SplitConfig, split),
        head=from_dict(HeadConfig, head),
        reference=reference,
        values=values,
        clip_filter=_filter(clip_filter),
        progress=progress,
        should_stop=should_stop,
        **_given(attribute=attribute),
    ).to_json()


@job_kind("experiment_repeats")
def experiment_repeats(
    progress,
    should_stop,
    dataset: dict,
    what: str,
    models: list[str],
    repeats: dict | None = None,
    attribute: str | None = None,
    generator: dict | None = None,
    debug: dict | None = None,
    split: dict | None = None,
    head: dict | None = None,
    values: list | None = None,
):
    """``individual`` or a ``lam`` / ``k`` sweep rerun over several seeds: mean and 95% CI per method, and
    McNemar's test of ours against each baseline (the verdicts, in words)."""
    return core_steps.experiment_repeats(
        dataset,
        what,
        models,
        repeats=from_dict(RepeatsConfig, repeats),
        generator=from_dict(GeneratorConfig, generator),
        debug=from_dict(DebugConfig, debug),
        split=from_dict(SplitConfig, split),
        head=from_dict(HeadConfig, head),
        values=values,
        progress=progress,
        should_stop=should_stop,
        **_given(attribute=attribute),
    ).to_json()


@job_kind("search_failures")
def search_failures(progress, should_stop, dataset: dict, model: str, query: str, top: int | None = None):
    """The model's failures that CLIP finds most similar to a free-text query ("a seven on grass")."""
    return core_steps.search_failures(
        dataset, model, query, progress=progress, should_stop=should_stop, **_given(top=top)
    ).to_json()
