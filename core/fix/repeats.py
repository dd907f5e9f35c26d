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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar

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


def reseeded(exp, seed: int):
    """A copy of ``exp`` whose splits and generated images use ``seed`` (same dataset, models, CLIP, generator)."""
    from core.fix.experiments import Experiment

    return Experiment(
        exp.dataset,
        replace(exp.cfg, seed=int(seed)),
        attribute=exp.attribute,
        generator=exp.generator,
        split_cfg=replace(exp.split_cfg, seed=int(seed)),
        head_cfg=exp.head_cfg,
        clip=exp.clip,
        progress=exp.progress,
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


def paired_tests(predictions: pd.DataFrame, against: str = "ours", split: str = "heldout") -> pd.DataFrame:
    """Ours (``against``) versus every other method, per model, on the same ``split`` images of every repeat.

    Columns: model, method, split, n_pairs, acc_<against> and acc_other (pooled), ours_only / other_only (images
    one head gets right and the other not), the McNemar statistic and p-value, and the mean per-repeat accuracy
    difference (ours − other) with its 95% CI."""
    need = {"model", "method", "image_id", "split", "correct"}
    if predictions.empty or need - set(predictions.columns):
        raise InvalidInputError(f"Paired tests need per-image predictions with columns {sorted(need)}.")
    p = predictions[predictions["split"] == split]
    if "repeat" not in p.columns:
        p = p.assign(repeat=0)
    out = []
    for model, g in p.groupby("model", sort=True):
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


def verdict(row: dict | pd.Series, alpha: float = 0.05, against: str = "ours") -> str:
    """A paired test's row in words, e.g. "ours − random: +0.051 (95% CI +0.02 to +0.08), significant (p = 0.003)"."""
    sig = "significant" if row["p_value"] < alpha else "not significant"
    ci = f" (95% CI {row['diff_ci_low']:+.3f} to {row['diff_ci_high']:+.3f})" if np.isfinite(row["diff_ci_low"]) else ""
    return (
        f"{against} − {row['method']}: {row['diff_mean']:+.3f}{ci}, {sig} at α = {alpha:g} (p = {row['p_value']:.3g})"
    )


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
    "CONFIDENCE",
    "METRICS",
]
