"""Overlap of failure sets across models (paper §5.3, Figure 6): intersection-over-union, family averages, and
what two models share.

One kernel: a boolean failure matrix (models × images), packed 64 images to a word, and a popcount of every pair's
AND give every pair's intersection (exact integers) and so its union. Runs over the same debug set (the usual case: one split config) build that matrix by stacking their
wrong-prediction masks, with no id hashing; failure sets given as image ids are factorized into it in one pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from core.errors import InvalidInputError
from core.find.failures import failures


def failure_matrix(failure_sets: Mapping[str, Iterable], universe: list[str] | None = None):
    """(model names, universe ids, boolean matrix M×N) with True where a model fails on an image.

    All ids are factorized in one pass (hashing strings once), which keeps 40 models × 30,000 images fast."""
    names = list(failure_sets)
    parts = [np.asarray(list(failure_sets[n]), dtype=object) for n in names]
    sizes = [len(p) for p in parts]
    every = np.concatenate(parts) if parts else np.zeros(0, dtype=object)
    if universe is None:
        codes, uni = pd.factorize(every, sort=True)
    else:
        uni = pd.Index(universe, dtype=object)
        codes = uni.get_indexer(every)
    B = np.zeros((len(names), len(uni)), dtype=bool)
    row = np.repeat(np.arange(len(names)), sizes)
    keep = codes >= 0
    B[row[keep], codes[keep]] = True
    return names, list(uni), B


def intersections(B: np.ndarray, block: int = 4) -> np.ndarray:
    """(M, M) int64 counts of the images both rows of a boolean M×N matrix are True on: the rows packed to 64-bit
    words, ANDed pair by pair and popcounted (``np.bitwise_count``), upper triangle only, ``block`` rows at a time.
    Exact, and 50-200× faster than a float32 matrix product on CPUs (benchmarks/overlap.py)."""
    B = np.asarray(B, dtype=bool)
    packed = np.packbits(B.reshape(len(B), -1), axis=1)
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    words = np.ascontiguousarray(packed).view(np.uint64)
    m = len(words)
    out = np.empty((m, m), np.int64)
    for i in range(0, m, block):
        both = np.bitwise_count(words[i : i + block, None, :] & words[None, i:, :]).sum(-1, dtype=np.int64)
        out[i : i + block, i:] = both
        out[i:, i : i + block] = both.T
    return out


def overlap_from_matrix(names: list[str], B: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """IoU and raw intersection counts between every pair of rows of a boolean failure matrix."""
    inter = intersections(np.asarray(B, dtype=bool).reshape(len(names), -1))
    sizes = np.diagonal(inter).astype(np.float64)
    union = sizes[:, None] + sizes[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros((len(names), len(names))), where=union > 0)
    return pd.DataFrame(iou, index=names, columns=names), pd.DataFrame(inter, index=names, columns=names)


def _are_masks(names: list[str], sets: list) -> bool:
    arrays = [np.asarray(s) for s in sets]
    if not arrays or not all(a.dtype == bool and a.ndim == 1 for a in arrays):
        return False
    if len({len(a) for a in arrays}) > 1:
        sizes = ", ".join(f"{n}: {len(a)}" for n, a in zip(names, arrays))
        raise InvalidInputError(
            f"Wrong-prediction masks cover debug sets of different sizes ({sizes}); give each model's failing "
            "image ids instead to compare runs over different debug sets."
        )
    return True


def iou_matrix(failure_sets: Mapping[str, np.ndarray]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Intersection-over-union and raw intersections of the failure sets of several models.

    Each value is either the ids of the images a model fails on, or (the fast path) a boolean wrong-prediction
    mask over a debug set every model shares, in the same order."""
    names = list(failure_sets)
    sets = [failure_sets[n] for n in names]
    if _are_masks(names, sets):
        return overlap_from_matrix(names, np.stack([np.asarray(s, dtype=bool) for s in sets]))
    names, _, B = failure_matrix(failure_sets)
    return overlap_from_matrix(names, B)


def overlap_of_runs(folders: Mapping[str, str | Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """IoU and intersections of finished runs' failure sets (model name -> run folder); reads two columns of
    each failure table, and takes the fast path when the runs share their debug set."""
    from core.find.runs import read_failure_table

    tables = {n: read_failure_table(f, ["image_id", "correct"]) for n, f in folders.items()}
    first = next(iter(tables.values()))["image_id"] if tables else None
    if first is not None and all(len(t) == len(first) and t["image_id"].equals(first) for t in tables.values()):
        return iou_matrix({n: ~t["correct"].to_numpy(bool) for n, t in tables.items()})
    return iou_matrix({n: t.loc[~t["correct"], "image_id"].to_numpy() for n, t in tables.items()})


def mean_pairwise_iou(iou: pd.DataFrame) -> float:
    """Mean IoU over pairs of distinct models (the diagonal is left out); NaN with fewer than two models."""
    values = iou.to_numpy(dtype=float)
    off = values[~np.eye(len(values), dtype=bool)]
    return float(off.mean()) if off.size else float("nan")


def family_average(iou: pd.DataFrame, family_of: Mapping[str, str]) -> pd.DataFrame:
    """Mean IoU between families (off-diagonal pairs only within a family); NaN where a family pair has no two
    distinct models. One indicator-matrix product: sums and pair counts of every family pair at once."""
    fams = sorted({family_of[n] for n in iou.index})
    code = {f: i for i, f in enumerate(fams)}

    def one_hot(names) -> np.ndarray:  # models × families
        return (np.array([code.get(family_of[n], -1) for n in names])[:, None] == np.arange(len(fams))).astype(float)

    rows, cols = one_hot(iou.index), one_hot(iou.columns)
    distinct = iou.index.to_numpy()[:, None] != iou.columns.to_numpy()[None, :]
    sums = rows.T @ np.where(distinct, iou.to_numpy(dtype=float), 0.0) @ cols
    pairs = rows.T @ distinct.astype(float) @ cols
    mean = np.divide(sums, pairs, out=np.full_like(sums, np.nan), where=pairs > 0)
    return pd.DataFrame(mean, index=fams, columns=fams)


def compare_pair(table_a: pd.DataFrame, table_b: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Failures two models share, and those only one of them has (rows from table_a / table_b)."""
    fa, fb = set(failures(table_a)["image_id"]), set(failures(table_b)["image_id"])
    return {
        "both": table_a[table_a["image_id"].isin(fa & fb)],
        "only_a": table_a[table_a["image_id"].isin(fa - fb)],
        "only_b": table_b[table_b["image_id"].isin(fb - fa)],
    }
