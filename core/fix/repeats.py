"""Repeats and uncertainty: an experiment rerun over several seeds, mean and 95% confidence interval per metric,
and a paired test of ours against each baseline on the same images.

A repeat with seed ``s`` redraws the splits (``SplitConfig.seed``; so the head, its failures, their seed/heldout
halves and the failure modes change) and the generated images (``DebugConfig.seed``); the dataset stays (world
seeds: build one :class:`~core.fix.experiments.Experiment` per world and pass ``make_experiment``).

Intervals are Student-t intervals over the repeats' values (``scipy.stats.t.interval``; NaN with one repeat).
The paired test is McNemar's (``statsmodels.stats.contingency_tables.mcnemar``) on the 2×2 table of
(ours correct, other correct) summed over repeats, each (repeat, image) pair one observation: exact binomial
when fewer than 25 pairs disagree, else the chi-square with continuity correction. It answers "do the two
heads differ on the same images"; the interval of the per-repeat accuracy difference answers "by how much".
A verdict calls a difference significant only when both agree: p < α and the interval excludes 0.

:func:`repeat_experiment` runs Table 2 (``individual``) or a λ / k sweep over ``RepeatsConfig.n`` repeats
(repeat i: split and generation seeds raised by i, so repeat 0 is the single run with the same settings); each
finished repeat is cached under ``results/repeats/``, so a stopped run resumes and a longer one reuses it.
:func:`save_repeats` keeps the pooled summary (with its paired tests and every repeat's rows) where the app's
Results page and the report find it (``what`` = ``individual-repeats``, ``lam-repeats``, ``k-repeats``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar

from core import store
from core.config import RepeatsConfig
from core.errors import InvalidInputError
from core.progress import ProgressFn, no_progress

CONFIDENCE = 0.95
EXACT_BELOW = 25  # discordant pairs under which McNemar's test is the exact binomial
METRICS = (
    "acc_test",
    "acc_seed",
    "acc_heldout",
    "discovery_precision",
    "discovery_recall",
    "assignment_accuracy",
)
SWEEP_METRICS = ("acc_heldout", "acc_test", "acc_seed", "n_generated")
KINDS = ("individual", "lam", "k")  # the experiments that can be repeated
SPLITS = ("heldout", "test")  # the images the paired tests compare methods on
NAMES = {
    "random": "Random_debugging",
    "real_failures": "real failures",
    "oracle": "the oracle",
    "before": "the head before debugging",
}
SPLIT_NAMES = {"heldout": "debug_heldout", "seed": "debug_seed", "test": "test"}


@dataclass
class Repeated:
    rows: pd.DataFrame  # every repeat's result rows, with a ``repeat`` column (the seed)
    predictions: pd.DataFrame  # per-image predictions (core.fix.mitigate.PREDICTION_COLUMNS) with ``repeat``


def interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(mean, low, high): the Student-t confidence interval of the mean of ``values`` (NaNs dropped)."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return (float("nan"),) * 3
    mean = float(v.mean())
    if len(v) < 2:
        return mean, float("nan"), float("nan")
    sem = float(stats.sem(v))
    if sem == 0.0:
        return mean, mean, mean
    low, high = stats.t.interval(confidence, len(v) - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


def reseeded(exp, seed: int, gen_seed: int | None = None, progress: ProgressFn | None = None):
    """A copy of ``exp`` whose splits use ``seed`` and generated images ``gen_seed`` (default ``seed``); same
    dataset, models, CLIP, CLIP filter and generator."""
    from core.fix.experiments import Experiment

    return Experiment(
        exp.dataset,
        replace(exp.cfg, seed=int(seed if gen_seed is None else gen_seed)),
        attribute=exp.attribute,
        generator=exp.generator,
        split_cfg=replace(exp.split_cfg, seed=int(seed)),
        head_cfg=exp.head_cfg,
        clip=exp.clip,
        clip_filter=exp.clip_filter,
        progress=progress or exp.progress,
        should_stop=exp.should_stop,
    )


def repeat(
    make_experiment: Callable[[int], Any],
    seeds: Sequence[int],
    run: Callable[[Any, list], pd.DataFrame],
    progress: ProgressFn | None = None,
) -> Repeated:
    """``run(experiment, predictions)`` once per seed on ``make_experiment(seed)``; rows and predictions pooled."""
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise InvalidInputError(f"Repeats need one or more distinct seeds; got {seeds!r}.")
    progress = progress or no_progress
    rows, preds = [], []
    for i, s in enumerate(seeds):
        progress(i, len(seeds), f"repeat {i + 1} of {len(seeds)} (seed {s})")
        p: list[pd.DataFrame] = []
        df = run(make_experiment(s), p)
        rows.append(df.assign(repeat=s))
        preds += [x.assign(repeat=s) for x in p]
    progress(len(seeds), len(seeds), "repeats done")
    return Repeated(
        pd.concat(rows, ignore_index=True), pd.concat(preds, ignore_index=True) if preds else pd.DataFrame()
    )


def individual_repeats(exp, models: list[str], seeds: Sequence[int], progress: ProgressFn | None = None) -> Repeated:
    """Table 2 (every method side by side) once per seed; see :func:`summarize` and :func:`paired_tests`."""
    from core.fix.experiments import individual

    return repeat(lambda s: reseeded(exp, s), seeds, lambda e, p: individual(e, models, p), progress)


def run_once(exp, what: str, models: list[str], predictions: list, values=None) -> pd.DataFrame:
    """One repeat: Table 2 (``individual``) or a sweep over ``lam`` / ``k`` for every model."""
    from core.fix.experiments import individual, sweep

    if what == "individual":
        return individual(exp, models, predictions)
    return pd.concat([sweep(exp, m, what, values, predictions) for m in models], ignore_index=True)


def check_kind(what: str) -> None:
    if what not in KINDS:
        raise InvalidInputError(f"Only {', '.join(KINDS)} can be repeated; got {what!r}.")


def repeat_inputs(exp, what: str, models: list[str], values=None) -> dict:
    """Everything one repeat's result depends on besides its seeds (the cache key of its part), including the
    CLIP and the curated lists' version. Loads the default CLIP into ``exp`` (once for every repeat)."""
    from core.describe.textualize import default_clip, ensure_lists

    exp.clip = exp.clip or default_clip(exp.dataset)
    lists = ensure_lists(exp.dataset, exp.attribute, progress=exp.progress, should_stop=exp.should_stop)
    return exp.meta(
        what=what,
        models=list(models),
        values=None if values is None else list(values),
        clip=exp.clip.key,
        list_version=lists.current_version_id(),
    )


def repeat_experiment(
    exp,
    what: str,
    models: list[str],
    repeats: RepeatsConfig = RepeatsConfig(),
    values=None,
    progress: ProgressFn | None = None,
) -> Repeated:
    """``what`` (individual, lam or k) over ``repeats.n`` repeats; repeat i uses split seed and generation seed
    each raised by i. A finished repeat is read back from the cache instead of being run again."""
    check_kind(what)
    progress = progress or exp.progress
    inputs = repeat_inputs(exp, what, models, values)
    folder = store.cache_root() / "results" / "repeats"
    n = repeats.n

    def make(i: int):
        def step(done, total, message=""):
            progress(done, total, f"repeat {i + 1} of {n}: {message}")

        return reseeded(exp, exp.split_cfg.seed + i, exp.cfg.seed + i, progress=step)

    def run(e, predictions: list) -> pd.DataFrame:
        stem = folder / f"{what}-{store.make_key(inputs, e.split_cfg.seed, e.cfg.seed)}"
        rows_path, preds_path = stem.with_suffix(".rows.parquet"), stem.with_suffix(".predictions.parquet")
        if rows_path.is_file() and preds_path.is_file():
            predictions.append(pd.read_parquet(preds_path))
            return pd.read_parquet(rows_path)
        found: list[pd.DataFrame] = []
        rows = run_once(e, what, models, found, values).assign(split_seed=e.split_cfg.seed)
        preds = pd.concat(found, ignore_index=True)
        for path, df in ((preds_path, preds), (rows_path, rows)):  # rows last: they mark the repeat finished
            with store.atomic_path(path) as tmp:
                df.to_parquet(tmp, index=False)
        predictions.append(preds)
        return rows

    return repeat(make, range(n), run, progress)


def pooled(rep: Repeated, what: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, paired tests) of a repeated experiment: mean and CI per model, method (and sweep point) and
    metric; ours against every other method on the same debug_heldout and test images."""
    check_kind(what)
    if what == "individual":
        summary = summarize(rep.rows)
        tests = [paired_tests(rep.predictions, split=s) for s in SPLITS]
    else:
        points = rep.rows[rep.rows["method"] != "before"]
        summary = summarize(points, SWEEP_METRICS, by=("model", "method", what))
        tests = [paired_tests(rep.predictions, split=s, by=(what,)) for s in SPLITS]
    return summary, pd.concat(tests, ignore_index=True)


def save_repeats(
    what: str, summary: pd.DataFrame, tests: pd.DataFrame, rows: pd.DataFrame, meta: dict
) -> tuple[str, str]:
    """Persist a repeated experiment's summary (parquet + CSV) with its paired tests and every repeat's rows."""
    from core.fix.mitigate import save_results

    return save_results(summary, f"{what}-repeats", meta, parts={"tests": tests, "rows": rows})


def read_repeats(path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(summary, paired tests, rows) of a repeated experiment saved by :func:`save_repeats`."""
    from core.fix.mitigate import read_results, result_part

    return read_results(path), result_part(path, "tests"), result_part(path, "rows")


def summarize(
    rows: pd.DataFrame, metrics: Sequence[str] = METRICS, by: Sequence[str] = ("model", "method")
) -> pd.DataFrame:
    """Per group (default model × method) and metric: mean, 95% CI bounds and the number of repeats."""
    by = [c for c in by if c in rows.columns]
    out = []
    for key, g in rows.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        for m in metrics:
            if m not in g.columns:
                continue
            vals = pd.to_numeric(g[m], errors="coerce").to_numpy(dtype=float)
            mean, low, high = interval(vals)
            out.append({**dict(zip(by, key)), "metric": m, "mean": mean, "ci_low": low, "ci_high": high,
                        "n": int(np.isfinite(vals).sum())})  # fmt: skip
    return pd.DataFrame(out)


def mcnemar_test(a: np.ndarray, b: np.ndarray) -> dict:
    """McNemar's test of two classifiers' correctness on the same items (boolean arrays, paired by position)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    if a.shape != b.shape:
        raise InvalidInputError(f"Paired test needs the same images for both methods; got {len(a)} and {len(b)}.")
    table = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
    discordant = table[0][1] + table[1][0]
    if discordant == 0:
        return {"a_only": 0, "b_only": 0, "statistic": 0.0, "p_value": 1.0, "test": "none (no discordant pairs)"}
    exact = discordant < EXACT_BELOW
    res = mcnemar(table, exact=exact, correction=True)
    return {
        "a_only": table[0][1],
        "b_only": table[1][0],
        "statistic": float(res.statistic),
        "p_value": float(res.pvalue),
        "test": "McNemar exact" if exact else "McNemar chi2",
    }


def paired_tests(
    predictions: pd.DataFrame, against: str = "ours", split: str = "heldout", by: Sequence[str] = ()
) -> pd.DataFrame:
    """Ours (``against``) versus every other method, per model (and per value of the ``by`` columns, e.g. a
    sweep's ``lam``), on the same ``split`` images of every repeat.

    Columns: model, the ``by`` columns, method, split, n_pairs, acc_<against> and acc_other (pooled), ours_only /
    other_only (images one head gets right and the other not), the McNemar statistic and p-value, and the mean
    per-repeat accuracy difference (ours − other) with its 95% CI."""
    need = {"model", "method", "image_id", "split", "correct", *by}
    if predictions.empty or need - set(predictions.columns):
        raise InvalidInputError(f"Paired tests need per-image predictions with columns {sorted(need)}.")
    p = predictions[predictions["split"] == split]
    if "repeat" not in p.columns:
        p = p.assign(repeat=0)
    out = []
    for key, g in p.groupby(["model", *by], sort=True):
        key = key if isinstance(key, tuple) else (key,)
        model, point = key[0], dict(zip(by, key[1:]))
        wide = g.pivot_table(index=["repeat", "image_id"], columns="method", values="correct", aggfunc="first")
        if against not in wide.columns:
            continue
        for other in [m for m in wide.columns if m != against]:
            pair = wide[[against, other]].dropna().astype(bool)
            res = mcnemar_test(pair[against].to_numpy(), pair[other].to_numpy())
            per_repeat = pair.groupby(level="repeat").mean()
            mean, low, high = interval((per_repeat[against] - per_repeat[other]).to_numpy())
            out.append(
                {
                    "model": model,
                    **point,
                    "method": other,
                    "split": split,
                    "n_pairs": len(pair),
                    f"acc_{against}": float(pair[against].mean()),
                    "acc_other": float(pair[other].mean()),
                    f"{against}_only": res["a_only"],
                    "other_only": res["b_only"],
                    "statistic": res["statistic"],
                    "p_value": res["p_value"],
                    "test": res["test"],
                    "diff_mean": mean,
                    "diff_ci_low": low,
                    "diff_ci_high": high,
                }
            )
    return pd.DataFrame(out)


def verdict(row: dict | pd.Series, alpha: float = RepeatsConfig.alpha, against: str = "ours") -> str:
    """A paired test's row (:func:`paired_tests`) in words: the difference with its interval, McNemar's p, and
    whether the difference is significant. It is only when p < α and the 95% CI of the per-repeat difference
    excludes 0 (with one repeat there is no interval and p decides), e.g. "ours − random on debug_heldout:
    +0.051 (95% CI +0.020 to +0.082), McNemar p = 0.003 over 606 paired images: ours is significantly better
    than Random_debugging (α = 0.05)."."""
    method, diff, p = str(row["method"]), float(row["diff_mean"]), float(row["p_value"])
    low, high = float(row.get("diff_ci_low", np.nan)), float(row.get("diff_ci_high", np.nan))
    point = "".join(
        f" at {'λ' if c == 'lam' else c} = {float(row[c]):g}" for c in ("lam", "k") if c in row and pd.notna(row[c])
    )
    has_ci = np.isfinite(low) and np.isfinite(high)
    ci = f" (95% CI {low:+.3f} to {high:+.3f})" if has_ci else " (one repeat: no interval)"
    where = SPLIT_NAMES.get(str(row.get("split", "")), str(row.get("split", "")))
    text = (
        f"{against} − {method} on {where}{point}: {diff:+.3f}{ci}, McNemar p = {p:.3g} over "
        f"{int(row.get('n_pairs', 0)):,} paired images: "
    )
    other = NAMES.get(method, method)
    if has_ci and low <= 0 <= high:
        why = f"the 95% CI includes 0{' although p < α' if p < alpha else ''}"
    elif p >= alpha:
        why = f"p ≥ {alpha:g}"
    else:
        better = "better" if diff > 0 else "worse"
        return text + f"{against} is significantly {better} than {other} (α = {alpha:g})."
    return text + f"the difference from {other} is not significant ({why})."


def verdicts(tests: pd.DataFrame, alpha: float = RepeatsConfig.alpha, against: str = "ours") -> list[str]:
    """The verdicts a reader needs: ours against each baseline on debug_heldout, and against 'before' on test
    (does retraining cost test accuracy)."""
    if tests.empty:
        return []
    keep = ((tests["split"] == "heldout") & (tests["method"] != "before")) | (
        (tests["split"] == "test") & (tests["method"] == "before")
    )
    return [verdict(r, alpha, against) for _, r in tests[keep].iterrows()]


__all__ = [
    "Repeated",
    "interval",
    "reseeded",
    "repeat",
    "individual_repeats",
    "summarize",
    "mcnemar_test",
    "paired_tests",
    "verdict",
    "verdicts",
    "run_once",
    "repeat_experiment",
    "pooled",
    "save_repeats",
    "read_repeats",
    "KINDS",
    "SWEEP_METRICS",
    "CONFIDENCE",
    "METRICS",
]
