"""Failure discovery scored against ground truth (the offline world): which (class, value) cells really fail, and
how many of them the textualization's failure modes name.

A model's **true failure slices** are the cells of its debug set (class × true attribute value) whose failure
rate is significantly above the rest of that class. The test is one-sided Fisher's exact test
(``scipy.stats.fisher_exact``, ``alternative="greater"``) on the 2×2 table (failures, successes) of the cell
against the class's other debug images, for every cell with at least ``MIN_CELL`` images; the p-values of all
tested cells of the model are then adjusted together with Benjamini–Hochberg
(``scipy.stats.false_discovery_control``) and a cell is a true slice when its adjusted p-value is at most
``ALPHA``. Fisher against the rest of the class (rather than a binomial against the class's rate, which
includes the cell itself) keeps the two samples independent; the false-discovery control keeps the ~100 cells
of a 10-class, 10-value world from producing a handful of chance "slices" at α = 0.05.

Scores of the k modes found (``rank <= k`` per class): precision@k = found modes that are true slices / modes
found; recall@k = true slices found / true slices (of the classes that have any). A class with fewer true slices
than the modes found for it caps precision: the **ceiling** is the precision a perfect namer would reach with the
same number of modes per class (Σ_class min(modes found, true slices) / modes found). Values are compared after
lower-casing, collapsing spaces and dropping a leading "in"/"on"/"a"/"an"/"the", as the world's renderer reads them.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, fisher_exact

from core.describe.assign import ground_truth, score_assignments
from core.errors import InvalidInputError

ALPHA = 0.05  # false-discovery rate of the true-slice test
MIN_CELL = 5  # debug images a (class, value) cell needs before it is tested
SLICE_COLUMNS = [
    "label",
    "class_name",
    "value",
    "n",
    "n_failures",
    "rate",
    "class_rate",
    "p_value",
    "p_adjusted",
    "true",
]
_FILLER = re.compile(r"^(?:(?:in|on|an|a|the) )+")


def norm_value(v) -> str:
    """A value as the world reads it: lower case, single spaces, no leading "in"/"on"/"a"/"an"/"the"."""
    return _FILLER.sub("", " ".join(str(v).lower().split()))


def failure_slices(
    table: pd.DataFrame,
    dataset,
    attribute: str = "background",
    alpha: float = ALPHA,
    min_cell: int = MIN_CELL,
) -> pd.DataFrame:
    """Every (class, value) cell of a run's debug table with its failure rate and test; ``true`` marks the slices.

    ``table`` is a run's failure table (``ModelRun.table``: image_id, label, correct). Rows are sorted per class
    worst first (failure rate, then failures, then value); cells under ``min_cell`` images have NaN p-values.
    """
    if not 0.0 < alpha < 1.0:
        raise InvalidInputError(f"α must lie strictly between 0 and 1; got {alpha}.")
    if not isinstance(min_cell, (int, np.integer)) or min_cell < 1:
        raise InvalidInputError(f"The minimum cell size must be a positive whole number; got {min_cell!r}.")
    missing = {"image_id", "label", "correct"} - set(table.columns)
    if missing:
        raise InvalidInputError(f"The debug table lacks column(s) {sorted(missing)}; pass a run's failure table.")
    truth = ground_truth(dataset, attribute)
    ids = table["image_id"].astype(str)
    unknown = ~ids.isin(truth.index)
    if unknown.any():
        raise InvalidInputError(
            f"{int(unknown.sum())} debug image(s) are not in {dataset.name} (e.g. {ids[unknown].iloc[0]!r}); "
            "score a run against the dataset it was made on."
        )
    df = pd.DataFrame(
        {
            "label": table["label"].astype(int).to_numpy(),
            "value": truth.loc[ids].map(norm_value).to_numpy(),
            "failed": ~table["correct"].astype(bool).to_numpy(),
        }
    )
    cells = df.groupby(["label", "value"]).agg(n=("failed", "size"), n_failures=("failed", "sum")).reset_index()
    per_class = df.groupby("label")["failed"].agg(["size", "sum"])
    cells["class_rate"] = cells["label"].map(per_class["sum"] / per_class["size"])
    cells["rate"] = cells["n_failures"] / cells["n"]
    p = np.full(len(cells), np.nan)
    for i, (lab, n, f) in enumerate(cells[["label", "n", "n_failures"]].itertuples(index=False)):
        if n >= min_cell:
            rest_n, rest_f = per_class.at[lab, "size"] - n, per_class.at[lab, "sum"] - f
            p[i] = fisher_exact([[f, n - f], [rest_f, rest_n - rest_f]], alternative="greater").pvalue
    cells["p_value"] = p
    tested = ~np.isnan(p)
    adj = np.full(len(cells), np.nan)
    if tested.any():
        adj[tested] = false_discovery_control(p[tested], method="bh")
    cells["p_adjusted"] = adj
    cells["true"] = tested & (np.nan_to_num(adj, nan=1.0) <= alpha)
    classes = list(dataset.classes)
    cells.insert(1, "class_name", [classes[lab] for lab in cells["label"]])
    cells = cells.sort_values(["label", "rate", "n_failures", "value"], ascending=[True, False, False, True])
    return cells.reset_index(drop=True)[SLICE_COLUMNS]


def worst_slices(slices: pd.DataFrame, per_class: dict[int, int]) -> pd.DataFrame:
    """The ``per_class[label]`` worst tested cells of each class (highest failure rate first; ground truth): the
    modes an oracle that knows the model's failures would name. Columns class_name, label, value, rank."""
    tested = slices[slices["p_value"].notna()]
    parts = [tested[tested["label"] == lab].head(m) for lab, m in sorted(per_class.items()) if m > 0]
    out = pd.concat(parts) if parts else tested.iloc[:0]
    out = out[["class_name", "label", "value"]].copy()
    out["rank"] = out.groupby("label").cumcount() + 1
    return out.reset_index(drop=True)


def score_discovery(modes: pd.DataFrame, slices: pd.DataFrame, k: int) -> dict:
    """precision@k and recall@k of the modes found (``rank <= k`` per class) against the true slices, and the
    ceiling of precision@k: the best any namer could score with as many modes per class."""
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k <= 0:
        raise InvalidInputError(f"k must be a positive whole number; got {k!r}.")
    found = modes[modes["rank"] <= k] if "rank" in modes.columns else modes
    found_set = {(int(lab), norm_value(v)) for lab, v in zip(found["label"], found["value"]) if isinstance(v, str)}
    true = slices[slices["true"]]
    true_set = {(int(lab), v) for lab, v in zip(true["label"], true["value"])}
    hits = found_set & true_set
    true_per_class = pd.Series([lab for lab, _ in true_set], dtype=int).value_counts()
    found_per_class = pd.Series([lab for lab, _ in found_set], dtype=int).value_counts()
    reachable = int(sum(min(n, int(true_per_class.get(lab, 0))) for lab, n in found_per_class.items()))
    nan = float("nan")
    return {
        "k": int(k),
        "precision": len(hits) / len(found_set) if found_set else nan,
        "ceiling": reachable / len(found_set) if found_set else nan,
        "recall": len(hits) / len(true_set) if true_set else nan,
        "hits": len(hits),
        "n_found": len(found_set),
        "n_true": len(true_set),
    }


def discovery_report(
    dataset,
    table: pd.DataFrame,
    modes: pd.DataFrame,
    assignments: pd.DataFrame,
    k: int,
    attribute: str = "background",
    alpha: float = ALPHA,
    slices: pd.DataFrame | None = None,
) -> dict:
    """Everything a result row records about discovery for one model: precision@k, recall@k, the number of true
    slices, and CLIP's assignment accuracy on the debug_seed failures with its chance level and its coverage (the
    share of failures whose true value was among their class's candidates: what accuracy can reach). ``modes`` and
    ``assignments`` are the model's failure modes and CLIP's assignments (a
    :class:`~core.describe.textualize.Textualization`'s); ``slices`` the output of :func:`failure_slices` for
    ``table`` when already computed (with the same α)."""
    if slices is None:
        slices = failure_slices(table, dataset, attribute, alpha=alpha)
    disc = score_discovery(modes, slices, k)
    acc = score_assignments(assignments, dataset, attribute)
    return {
        "discovery_precision": disc["precision"],
        "discovery_ceiling": disc["ceiling"],
        "discovery_recall": disc["recall"],
        "n_true_slices": disc["n_true"],
        "discovery_alpha": alpha,
        "assignment_accuracy": acc["accuracy"],
        "assignment_chance": acc["chance"],
        "assignment_coverage": acc["coverage"],
    }


def latest_discovery(dataset, run_folder, attribute: str, k: int) -> dict | None:
    """:func:`discovery_report` of a finished run's newest assignment with ``k`` modes per class; None before
    the run's failures are assigned, or where ``dataset`` has no ground truth for ``attribute``."""
    if attribute not in getattr(dataset, "attributes", ()):
        return None
    from core.describe.assign import failure_modes
    from core.describe.textualize import latest_assignments
    from core.find.runs import read_failure_table

    got = latest_assignments(run_folder, attribute)
    if got is None:
        return None
    assigned = got[0]
    return discovery_report(
        dataset, read_failure_table(run_folder), failure_modes(assigned, k=k), assigned, k, attribute
    )


def describe(report: dict, k: int) -> str:
    """One line (the CLI's, the Backgrounds page's): discovery precision/recall@k and assignment accuracy."""
    ceiling = report.get("discovery_ceiling")
    at_most = f" (at most {ceiling:.3f} with this many true slices)" if ceiling is not None and ceiling < 1 else ""
    coverage = report.get("assignment_coverage")  # absent in reports saved before it was recorded
    covered = (
        f"; the true value was a candidate for {coverage:.3f} of them" if coverage is not None and coverage < 1 else ""
    )
    return (
        f"discovery against ground truth: precision@{k} {report['discovery_precision']:.3f}{at_most}, "
        f"recall@{k} {report['discovery_recall']:.3f} ({report['n_true_slices']} true failure slices at "
        f"FDR {report['discovery_alpha']:g}); assignment accuracy {report['assignment_accuracy']:.3f} "
        f"(chance {report['assignment_chance']:.3f}{covered})"
    )


__all__ = [
    "ALPHA",
    "MIN_CELL",
    "failure_slices",
    "worst_slices",
    "score_discovery",
    "discovery_report",
    "latest_discovery",
    "describe",
    "norm_value",
]
