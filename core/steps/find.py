"""Steps that find failures: prepare a dataset, build the offline world, run models (features, head, failures),
overlap of failure sets, and the 2-D embedding map (paper §3, §5.1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd

from core.config import HeadConfig, SplitConfig
from core.errors import InvalidInputError
from core.executors import ExecutorLike
from core.progress import ProgressFn, StopFn, check_stop, no_progress, offset
from core.steps.base import DatasetLike, StepResult, _in_memory, open_ds


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


class Prepare(Protocol):
    """How setup steps prepare a dataset spec (the app's prepare job shares the readiness): it takes the spec and
    a progress callback to report to (None: none)."""

    def __call__(self, spec: dict, *, progress: ProgressFn | None = None) -> Any: ...


def already_prepared(spec: dict, *, progress: ProgressFn | None = None) -> None:
    """The ``Prepare`` for a dataset that is ready already (opened, or prepared by an earlier step): nothing to do."""


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
    if prepare is None:
        prepare_dataset(spec, progress=progress, should_stop=should_stop)
    else:
        prepare(spec, progress=progress)
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
    return WorldBuilt(str(getattr(ds, "folder", "")), {p: len(ds.index(p)) for p in ds.pools()}, backbones, clip)


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
    executor: ExecutorLike = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> ModelsRun:
    """Features, linear head and debug failures for each model in turn (each cached, so a rerun resumes);
    ``executor="ray"`` extracts the features on Ray Data actor pools (core.executors)."""
    from core import executors
    from core.find.runs import run_model

    if not models:
        raise InvalidInputError("Name at least one model to run (see `python -m core models`).")
    ds, report = open_ds(dataset), progress or no_progress
    runs = {}
    n = len(models)
    for i, m in enumerate(models):
        check_stop(should_stop)
        report(i * 1000, n * 1000, f"model {m} ({i + 1}/{n})")

        # the bar moves with the images inside each model; the message counts them
        within = offset(report, i * 1000, n * 1000, 1000, prefix=f"{m} ({i + 1}/{n})", unit="images")
        with executors.use(executor):
            runs[m] = run_model(ds, m, split, head, should_stop=should_stop, progress=within)
    report(n * 1000, n * 1000, "done")
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
    from core.find.overlap import overlap_of_runs

    runs = run_models(dataset, models, split, head, progress=progress, should_stop=should_stop).runs
    return Overlap(*overlap_of_runs({name: run.folder for name, run in runs.items()}))


def embedding_map(
    dataset: DatasetLike,
    model: str,
    split: SplitConfig = SplitConfig(),
    *,
    method: str = "pca",
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> dict:
    """2-D map (PCA, or UMAP) of the model's debug features for the Failures page (core.find.embedding):
    {"path", "points", "method"}."""
    from core.find.embedding import compute_embedding_map

    return compute_embedding_map(
        open_ds(dataset), model, split, method=method, progress=progress, should_stop=should_stop
    )
