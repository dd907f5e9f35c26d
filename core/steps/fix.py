"""Steps that fix failures: generate images for failure modes (and the Random_debugging baseline) and run the
paper's experiments, saved so every reader finds them (paper §4.3, §5.3)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from core.config import (
    DEFAULT_ATTRIBUTE,
    DebugConfig,
    FilterConfig,
    GeneratorConfig,
    HeadConfig,
    RepeatsConfig,
    SplitConfig,
)
from core.errors import InvalidInputError
from core.executors import ExecutorLike
from core.progress import ProgressFn, StopFn
from core.steps.base import DatasetLike, StepResult, _in_memory, open_ds
from core.steps.describe import textualize

EXPERIMENTS = ("individual", "collective", "lam", "k")  # the `what` every saved experiment carries


def make_generator(
    dataset: DatasetLike,
    generator: GeneratorConfig = GeneratorConfig(),
    model: str | None = None,
    split: SplitConfig = SplitConfig(),
    head: HeadConfig = HeadConfig(),
):
    """The generator ``generator`` names, for this dataset (core.fix.experiments.default_generator). The
    ``edits`` generator edits one model's debug_seed failures: it needs ``model``."""
    from core.fix.experiments import default_generator

    ds, kw = open_ds(dataset), generator.kwargs()
    if generator.name == "edits" and "sources" not in kw:
        from core.find.runs import run_model
        from core.fix.generators.edits import seed_failures

        if model is None:
            raise InvalidInputError("The edits generator edits one model's failures: debug one model at a time.")
        kw["sources"] = seed_failures(run_model(ds, model, split, head))
    return default_generator(ds, generator.name, **kw)


def generated_set_names(
    dataset: DatasetLike,
    generator: GeneratorConfig = GeneratorConfig(),
    attribute: str = DEFAULT_ATTRIBUTE,
    seed: int = DebugConfig.seed,
    model: str | None = None,
    split: SplitConfig = SplitConfig(),
    head: HeadConfig = HeadConfig(),
) -> tuple[str, str]:
    """(failure-mode set, Random_debugging set): the shared generated sets these settings generate into and
    every experiment with the same settings reads from (``model``: whose failures the edits generator edits)."""
    from core.fix.mitigate import set_name

    ds = open_ds(dataset)
    gen = make_generator(ds, generator, model, split, head)
    return set_name(ds, gen, attribute, seed), set_name(ds, gen, None, seed)


@dataclass
class Generated(StepResult):
    ours: int
    random: int
    sets: list[str]
    skipped: str = ""  # failure modes the generator could not render, "class · value; ..."
    dropped: int = 0  # images the CLIP filter dropped (both sets; per mode in core.fix.generators.clip_filter)


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
    clip_filter: FilterConfig | None = None,
    executor: ExecutorLike = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> Generated:
    """Images for failure modes ({class_name, label, value} rows, best first per class; or, with ``model`` alone,
    its top ``debug.k_modes`` modes) and as many Random_debugging images per class, into the shared generated sets
    that retraining, sweeps and collective debugging reuse. With both, the modes are the given ones and ``model``
    is the model whose debug_seed failures the edits generator edits. ``executor="ray"`` runs the feature
    extraction, CLIP assignment and generation on Ray Data actor pools (core.executors)."""
    from core import executors
    from core.fix.experiments import skipped_modes
    from core.fix.mitigate import generate_for_modes

    ds = open_ds(dataset)
    with executors.use(executor):
        if modes is None:
            if model is None:
                raise InvalidInputError("Generate for given failure modes or for a model's modes: give one of the two.")
            modes = textualize(
                ds, model, attribute, debug.k_modes, split, head, clip=clip, progress=progress, should_stop=should_stop
            ).modes
        ours, rand = generate_for_modes(
            ds,
            pd.DataFrame(modes),
            make_generator(ds, generator, model, split, head),
            debug,
            attribute=attribute,
            clip_filter=clip_filter,
            clip=clip,
            progress=progress,
            should_stop=should_stop,
        )
    sets = sorted(set(ours.get("set", [])) | set(rand.get("set", [])))
    dropped = sum(r["dropped"] for r in ours.attrs.get("filtered", []))
    return Generated(len(ours), len(rand), sets, skipped_modes(ours), dropped)


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
    clip_filter: FilterConfig | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> ExperimentResult:
    """One of the paper's experiments, saved with ``what`` in its metadata so every reader finds it:
    ``individual`` (Table 2: before / ours / Random_debugging), ``collective`` (Table 3, Figure 6: individual,
    random and collective types 1 and 2), or a sweep over ``lam`` or ``k`` (Figure 5; ``values`` default λ
    0…1 or k 1…5)."""
    from core.fix.experiments import collective_study, individual, sweep
    from core.fix.mitigate import save_results

    if what not in EXPERIMENTS:
        raise InvalidInputError(f"Unknown experiment {what!r}: use {', '.join(EXPERIMENTS)}.")
    exp = _experiment(
        dataset, models, attribute, generator, debug, split, head, clip, clip_filter, progress, should_stop
    )
    meta: dict[str, Any] = {"models": list(models)}
    if what == "individual":
        df = individual(exp, models)
    elif what == "collective":
        df = collective_study(exp, models, reference)
        meta["reference"] = reference or models[0]
    else:
        df = pd.concat([sweep(exp, m, what, _values(what, values)) for m in models], ignore_index=True)
    parquet, csv = save_results(
        df, what, exp.meta(what=what, step="experiment", generator_kwargs=generator.kwargs(), **meta)
    )
    return ExperimentResult(what, len(df), parquet, csv, df)


def _values(what: str, values: list | None) -> list | None:
    """A sweep's values as the sweep takes them (JSON gives k as floats)."""
    return None if values is None else [int(v) if what == "k" else float(v) for v in values]


def _experiment(dataset, models, attribute, generator, debug, split, head, clip, clip_filter, progress, should_stop):
    """The core experiment these settings describe (refuses an empty model list)."""
    from core.fix.experiments import Experiment

    if not models:
        raise InvalidInputError("Name at least one model to debug (see `python -m core models`).")
    ds = open_ds(dataset)
    return Experiment(
        ds,
        debug,
        attribute=attribute,
        generator=make_generator(ds, generator, models[0] if len(models) == 1 else None, split, head),
        split_cfg=split,
        head_cfg=head,
        clip=clip,
        clip_filter=clip_filter,
        progress=progress,
        should_stop=should_stop,
    )


@dataclass
class RepeatsResult(StepResult):
    what: str  # individual, lam or k
    repeats: int
    verdicts: list[str]  # ours against each baseline, in words (core.fix.repeats.verdicts)
    parquet: str
    csv: str
    summary: pd.DataFrame = _in_memory(default=None)  # mean, ci_low, ci_high, n per model, method (point), metric
    tests: pd.DataFrame = _in_memory(default=None)  # paired tests of ours against each method
    rows: pd.DataFrame = _in_memory(default=None)  # every repeat's result rows (``repeat`` column)


def experiment_repeats(
    dataset: DatasetLike,
    what: str,
    models: list[str],
    *,
    repeats: RepeatsConfig = RepeatsConfig(),
    attribute: str = DEFAULT_ATTRIBUTE,
    generator: GeneratorConfig = GeneratorConfig(),
    debug: DebugConfig = DebugConfig(),
    split: SplitConfig = SplitConfig(),
    head: HeadConfig = HeadConfig(),
    values: list | None = None,
    clip: Any = None,
    clip_filter: FilterConfig | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> RepeatsResult:
    """``individual`` (Table 2) or a sweep over ``lam`` / ``k``, rerun ``repeats.n`` times (repeat i: split and
    generation seeds raised by i), summarised as mean and 95% CI per metric and method, with McNemar's test
    of ours against each baseline on the same images. Each finished repeat is cached (a stopped run resumes);
    the summary is saved as ``<what>-repeats`` where the Results page and the report find it."""
    from core.fix.repeats import check_kind, pooled, repeat_experiment, save_repeats, verdicts

    check_kind(what)
    exp = _experiment(
        dataset, models, attribute, generator, debug, split, head, clip, clip_filter, progress, should_stop
    )
    values = _values(what, values)
    rep = repeat_experiment(exp, what, list(models), repeats, values)
    summary, tests = pooled(rep, what)
    meta = exp.meta(
        what=f"{what}-repeats",
        step="experiment_repeats",
        models=list(models),
        values=values,
        repeats=repeats.n,
        alpha=repeats.alpha,
        split_seeds=sorted(set(rep.rows["split_seed"].astype(int))),
        clip=exp.clip.key,
        list_versions=sorted(set(rep.rows.get("list_version", pd.Series(dtype=str)).dropna().astype(str))),
        generator_kwargs=generator.kwargs(),
    )
    parquet, csv = save_repeats(what, summary, tests, rep.rows, meta)
    return RepeatsResult(what, repeats.n, verdicts(tests, repeats.alpha), parquet, csv, summary, tests, rep.rows)
