"""The user-visible steps, one function each: the only place that chains core's modules into a flow.

The command line (``core.cli``), the background jobs (``core.job_kinds``), the app (through those jobs) and the
test fixtures all call these. Each step takes a dataset (a spec dict such as ``{"name": "scenes-mnist", "size":
"tiny"}`` or an opened dataset), typed configs from :mod:`core.config` (their defaults are the only defaults),
``progress``/``should_stop`` callbacks, and returns a small typed result; ``result.to_json()`` is what a job
records. Every step is cached underneath, so running one again resumes or returns at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import pandas as pd

from core.config import DEFAULT_ATTRIBUTE, DebugConfig, GeneratorConfig, HeadConfig, SplitConfig
from core.datasets.base import ImageDataset
from core.errors import InvalidInputError
from core.progress import ProgressFn, StopFn, check_stop, no_progress

DatasetLike = ImageDataset | dict | str
EXPERIMENTS = ("individual", "collective", "lam", "k")  # the `what` every saved experiment carries


def open_ds(dataset: DatasetLike) -> ImageDataset:
    """An opened dataset from a spec (opened once per process) or the dataset itself."""
    from core.workspace import open_dataset

    return dataset if isinstance(dataset, ImageDataset) else open_dataset(dataset)


@dataclass
class StepResult:
    """Base of the step results: ``to_json()`` keeps the fields a job records (tables stay in memory)."""

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("json", True)}


def _in_memory(**kw: Any) -> Any:
    """A result field for callers in this process (tables, models), left out of ``to_json``."""
    return field(metadata={"json": False}, **kw)


# -- dataset and models ------------------------------------------------------------------------------------------
@dataclass
class Prepared(StepResult):
    classes: int
    images: dict[str, int]


def prepare_dataset(
    dataset: dict | str, *, progress: ProgressFn | None = None, should_stop: StopFn | None = None
) -> Prepared:
    """Open the dataset once (the offline world renders its images here; real datasets are checked)."""
    import inspect

    from core.datasets import DATASETS
    from core.workspace import open_dataset

    spec = {"name": dataset} if isinstance(dataset, str) else dict(dataset)
    fn = DATASETS.entry(spec["name"]).fn
    params = inspect.signature(fn).parameters
    extra = {k: v for k, v in (("progress", progress), ("should_stop", should_stop)) if k in params}
    if extra:  # a dataset that reports its own progress is built here, then opened from its cache
        fn(**{k: v for k, v in spec.items() if k != "name"}, **extra)
    ds = open_dataset(spec)
    (progress or no_progress)(1, 1, "ready")
    return Prepared(len(ds.classes), {pool: len(ds.index(pool)) for pool in ds.pools()})


Prepare = Callable[[dict], Any]  # how setup steps prepare a dataset spec (the app's job shares the readiness)


@dataclass
class WorldBuilt(StepResult):
    folder: str
    images: dict[str, int]
    backbones: list[str]
    clip: str | None


WORLD_PARTS = ("images", "backbones", "clip")


def build_world(
    dataset: dict | str,
    parts: tuple[str, ...] = WORLD_PARTS,
    *,
    models: list[str] | None = None,
    clip_config: Any = None,
    prepare: Prepare | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> WorldBuilt:
    """The offline world: its images, then (``parts``) its backbones (``models``: default all) and its CLIP."""
    from core.datasets import is_offline_world

    spec = {"name": dataset} if isinstance(dataset, str) else dict(dataset)
    if not is_offline_world(spec):
        raise InvalidInputError(f"{spec.get('name')!r} is not the offline world; build_world makes scenes-mnist.")
    unknown = sorted(set(parts) - set(WORLD_PARTS))
    if unknown:
        raise InvalidInputError(f"Unknown world parts {unknown}; choose from {', '.join(WORLD_PARTS)}.")
    (prepare or (lambda s: prepare_dataset(s, progress=progress, should_stop=should_stop)))(spec)
    ds = open_ds(spec)
    backbones, clip = [], None
    if "backbones" in parts:
        from core.world.backbones import train_world_backbones

        check_stop(should_stop)
        backbones = [
            str(p) for p in train_world_backbones(ds, names=models, progress=progress, should_stop=should_stop)
        ]
    if "clip" in parts:
        from core.world.clip import train_world_clip, world_clip_dir

        check_stop(should_stop)
        train_world_clip(ds, clip_config, progress=progress, should_stop=should_stop)
        clip = str(world_clip_dir(ds, clip_config))
    return WorldBuilt(str(ds.folder), {p: len(ds.index(p)) for p in ds.pools()}, backbones, clip)


@dataclass
class ModelsRun(StepResult):
    accuracy: dict[str, dict[str, float]]
    runs: dict[str, Any] = _in_memory(default_factory=dict)  # model -> core.find.runs.ModelRun


def run_models(
    dataset: DatasetLike,
    models: list[str],
    split: SplitConfig = SplitConfig(),
    head: HeadConfig = HeadConfig(),
    *,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> ModelsRun:
    """Features, linear head and debug failures for each model in turn (each cached, so a rerun resumes)."""
    from core.find.runs import run_model

    if not models:
        raise InvalidInputError("Name at least one model to run (see `python -m core models`).")
    ds, progress = open_ds(dataset), progress or no_progress
    runs = {}
    for i, m in enumerate(models):
        check_stop(should_stop)
        progress(i, len(models), f"model {m} ({i + 1}/{len(models)})")
        runs[m] = run_model(
            ds,
            m,
            split,
            head,
            should_stop=should_stop,
            progress=lambda d, t, msg="", i=i, m=m: progress(i, len(models), f"{m}: {msg} {d}/{t}"),
        )
    progress(len(models), len(models), "done")
    return ModelsRun({m: r.summary["accuracy"] for m, r in runs.items()}, runs)


@dataclass
class Overlap(StepResult):
    iou: pd.DataFrame = _in_memory()
    intersections: pd.DataFrame = _in_memory()


def overlap(
    dataset: DatasetLike,
    models: list[str],
    split: SplitConfig = SplitConfig(),
    head: HeadConfig = HeadConfig(),
    *,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Overlap:
    """Intersection-over-union of the models' debug failure sets (paper §5.1)."""
    from core.find.failures import iou_matrix  # moves to core.find.overlap.iou_matrix (same signature)
    from core.find.runs import failure_ids

    runs = run_models(dataset, models, split, head, progress=progress, should_stop=should_stop).runs
    return Overlap(*iou_matrix(failure_ids(list(runs.values()))))


# -- describing failures (paper §4.1–4.2) ------------------------------------------------------------------------
@dataclass
class Proposed(StepResult):
    proposer: str
    classes: dict[str, str]  # class -> what happened to its list
    notice: str | None = None


def propose(
    dataset: DatasetLike,
    attribute: str = DEFAULT_ATTRIBUTE,
    *,
    proposer: str | None = None,
    options: dict | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Proposed:
    """Uncommon values per class (LLM when ``proposer`` is "llm" or a key is set, else the offline vocabulary:
    the world's own for the offline world), deduplicated, seeded into the curated lists. Lists a user edited
    are kept as they are. ``options`` go to the proposer (offline: ``top_n``, ``vocab``)."""
    from core.datasets import is_offline_world
    from core.describe.curation import CuratedLists
    from core.describe.proposals import choose_proposer, dedupe_proposals
    from core.describe.proposals import propose as ask

    ds = open_ds(dataset)
    proposer = proposer or choose_proposer()
    kw = dict(options or {})
    if proposer == "offline":
        kw.setdefault("vocab", "world" if is_offline_world(ds) else "builtin")
    props = ask(attribute, ds.classes, proposer=proposer, progress=progress, should_stop=should_stop, **kw)
    report = CuratedLists(ds, attribute).seed_from_proposals(props, dedupe_proposals(props))
    return Proposed(proposer, report, next((p.notice for p in props.values() if p.notice), None))


@dataclass
class Textualized(StepResult):
    model: str
    assigned: int
    modes_found: int
    list_version: str
    accuracy: dict | None = None  # against ground truth, where the dataset knows it (the offline world)
    assignments: pd.DataFrame = _in_memory(default=None)
    modes: pd.DataFrame = _in_memory(default=None)


def textualize(
    dataset: DatasetLike,
    model: str,
    attribute: str = DEFAULT_ATTRIBUTE,
    k: int = DebugConfig.k_modes,
    split: SplitConfig = SplitConfig(),
    head: HeadConfig = HeadConfig(),
    *,
    clip: Any = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Textualized:
    """CLIP names the value each debug_seed failure shows (over the curated lists); the k most frequent values
    per class are the model's failure modes. ``clip`` None: the dataset's default CLIP."""
    from core.describe import textualize as tx
    from core.find.runs import run_model

    ds = open_ds(dataset)
    run = run_model(ds, model, split, head, should_stop=should_stop)
    text = tx.textualize(ds, run, k=k, attribute=attribute, clip=clip, progress=progress, should_stop=should_stop)
    acc = None
    if attribute in getattr(ds, "attributes", ()):
        from core.describe.assign import score_assignments

        acc = score_assignments(text.assignments, ds, attribute)
    return Textualized(
        model,
        len(text.assignments),
        len(text.modes),
        text.provenance["list_version"],
        acc,
        text.assignments,
        text.modes,
    )


# -- fixing failures (paper §4.3, §5.3) --------------------------------------------------------------------------
def make_generator(dataset: DatasetLike, generator: GeneratorConfig = GeneratorConfig()):
    """The generator ``generator`` names, for this dataset (core.fix.experiments.default_generator)."""
    from core.fix.experiments import default_generator

    return default_generator(open_ds(dataset), generator.name, **generator.kwargs())


def generated_set_names(
    dataset: DatasetLike,
    generator: GeneratorConfig = GeneratorConfig(),
    attribute: str = DEFAULT_ATTRIBUTE,
    seed: int = DebugConfig.seed,
) -> tuple[str, str]:
    """(failure-mode set, Random_debugging set): the shared generated sets these settings generate into and
    every experiment with the same settings reads from."""
    from core.fix.mitigate import set_name

    ds = open_ds(dataset)
    gen = make_generator(ds, generator)
    return set_name(ds, gen, attribute, seed), set_name(ds, gen, None, seed)


@dataclass
class Generated(StepResult):
    ours: int
    random: int
    sets: list[str]
    skipped: str = ""  # failure modes the generator could not render, "class · value; ..."


def generate(
    dataset: DatasetLike,
    modes: pd.DataFrame | list[dict] | None = None,
    *,
    model: str | None = None,
    attribute: str = DEFAULT_ATTRIBUTE,
    generator: GeneratorConfig = GeneratorConfig(),
    debug: DebugConfig = DebugConfig(),
    split: SplitConfig = SplitConfig(),
    head: HeadConfig = HeadConfig(),
    clip: Any = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Generated:
    """Images for failure modes ({class_name, label, value} rows, best first per class; or, with ``model``, its
    top ``debug.k_modes`` modes) and as many Random_debugging images per class, into the shared generated sets
    that retraining, sweeps and collective debugging reuse."""
    from core.fix.experiments import skipped_modes
    from core.fix.mitigate import generate_for_modes

    if (modes is None) == (model is None):
        raise InvalidInputError("Generate for given failure modes or for a model's modes: give one of the two.")
    ds = open_ds(dataset)
    if modes is None:
        modes = textualize(
            ds, model, attribute, debug.k_modes, split, head, clip=clip, progress=progress, should_stop=should_stop
        ).modes
    ours, rand = generate_for_modes(
        ds,
        pd.DataFrame(modes),
        make_generator(ds, generator),
        debug,
        attribute=attribute,
        progress=progress,
        should_stop=should_stop,
    )
    sets = sorted(set(ours.get("set", [])) | set(rand.get("set", [])))
    return Generated(len(ours), len(rand), sets, skipped_modes(ours))


@dataclass
class ExperimentResult(StepResult):
    what: str
    rows: int
    parquet: str
    csv: str
    table: pd.DataFrame = _in_memory(default=None)


def experiment(
    dataset: DatasetLike,
    what: str,
    models: list[str],
    *,
    attribute: str = DEFAULT_ATTRIBUTE,
    generator: GeneratorConfig = GeneratorConfig(),
    debug: DebugConfig = DebugConfig(),
    split: SplitConfig = SplitConfig(),
    head: HeadConfig = HeadConfig(),
    reference: str | None = None,
    values: list | None = None,
    clip: Any = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> ExperimentResult:
    """One of the paper's experiments, saved with ``what`` in its metadata so every reader finds it:
    ``individual`` (Table 2: before / ours / Random_debugging), ``collective`` (Table 3, Figure 6: individual,
    random and collective types 1 and 2), or a sweep over ``lam`` or ``k`` (Figure 5; ``values`` default λ
    0…1 or k 1…5)."""
    from core.fix.experiments import Experiment, collective_study, individual, sweep
    from core.fix.mitigate import save_results

    if what not in EXPERIMENTS:
        raise InvalidInputError(f"Unknown experiment {what!r}: use {', '.join(EXPERIMENTS)}.")
    if not models:
        raise InvalidInputError("Name at least one model to debug (see `python -m core models`).")
    ds = open_ds(dataset)
    exp = Experiment(
        ds,
        debug,
        attribute=attribute,
        generator=make_generator(ds, generator),
        split_cfg=split,
        head_cfg=head,
        clip=clip,
        progress=progress,
        should_stop=should_stop,
    )
    meta: dict[str, Any] = {"models": list(models)}
    if what == "individual":
        df = individual(exp, models)
    elif what == "collective":
        df = collective_study(exp, models, reference)
        meta["reference"] = reference or models[0]
    else:
        if values is not None:
            values = [int(v) if what == "k" else float(v) for v in values]
        df = pd.concat([sweep(exp, m, what, values) for m in models], ignore_index=True)
    parquet, csv = save_results(
        df, what, exp.meta(what=what, step="experiment", generator_kwargs=generator.kwargs(), **meta)
    )
    return ExperimentResult(what, len(df), parquet, csv, df)


# -- looking at failures -----------------------------------------------------------------------------------------
def embedding_map(
    dataset: DatasetLike,
    model: str,
    split: SplitConfig = SplitConfig(),
    *,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> dict:
    """2-D map of the model's debug features for the Failures page (core.find.embedding): {"path", "points"}."""
    from core.find.embedding import compute_embedding_map

    return compute_embedding_map(open_ds(dataset), model, split, progress=progress, should_stop=should_stop)


@dataclass
class SearchHits(StepResult):
    image_id: list[str]
    score: list[float]


def search_failures(
    dataset: DatasetLike,
    model: str,
    query: str,
    top: int = 200,
    *,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> SearchHits:
    """The model's failures CLIP finds most like a free-text query ("a seven on grass"), best first."""
    from core.describe.assign import text_search
    from core.describe.textualize import default_clip
    from core.find.runs import run_model

    ds = open_ds(dataset)
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
    return SearchHits(hits["image_id"].astype(str).tolist(), [round(float(s), 4) for s in hits["score"]])


# -- the first run -----------------------------------------------------------------------------------------------
@dataclass
class SetupDone(StepResult):
    models: list[str]


SETUP_STAGES = ("images", "backbones", "CLIP", "models", "lists")


def setup_world(
    dataset: dict | str,
    *,
    prepare: Prepare | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> SetupDone:
    """Everything a first run on the offline world needs: its images, backbones and CLIP, a run of every world
    model, and offline-proposed background lists. Each stage is cached, so a rerun resumes."""
    from core.datasets import is_offline_world
    from core.world.backbones import world_model_names

    if not is_offline_world(dataset):
        raise InvalidInputError(
            "The one-click setup builds the offline world; for another dataset, prepare it and run models."
        )
    progress = progress or no_progress
    n = len(SETUP_STAGES)

    def stage(i: int) -> ProgressFn:
        return lambda d, t, msg="": progress(
            i * 1000 + int(1000 * d / max(t, 1)), n * 1000, f"{i + 1}/{n} {SETUP_STAGES[i]}: {msg}"
        )

    stage(0)(0, 1, "rendering")
    spec = {"name": dataset} if isinstance(dataset, str) else dict(dataset)
    (prepare or (lambda s: prepare_dataset(s, progress=stage(0), should_stop=should_stop)))(spec)
    build_world(spec, ("backbones",), prepare=lambda s: None, progress=stage(1), should_stop=should_stop)
    build_world(spec, ("clip",), prepare=lambda s: None, progress=stage(2), should_stop=should_stop)
    ds = open_ds(spec)
    names = world_model_names(ds)  # the trained world backbones and the packaged ImageNet models
    run_models(ds, names, progress=stage(3), should_stop=should_stop)
    stage(4)(0, 1, "proposing")
    propose(ds, DEFAULT_ATTRIBUTE, proposer="offline", should_stop=should_stop)
    progress(n * 1000, n * 1000, "ready")
    return SetupDone(names)
