"""Failures: the debug set's wrong predictions, their seed/heldout halves, per-class counts, and overlap across models.

Seed/heldout assignment ranks each class's failures by a hash of (image id, seed) and gives the first half to
debug_seed, so halves are balanced per class and an image that several models fail on tends to land in the same
half for all of them, which keeps cross-model comparisons honest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import torch

SEED, HELDOUT = "seed", "heldout"


def _rank_hash(image_id: str, seed: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{image_id}".encode(), digest_size=8).digest(), "big")


def failure_table(debug_df: pd.DataFrame, logits: np.ndarray | torch.Tensor, seed: int = 0) -> pd.DataFrame:
    """One row per debug image: prediction, correctness, confidence, top-5 and its seed/heldout half if wrong."""
    logits = torch.as_tensor(np.array(logits, dtype=np.float32))
    if len(logits) != len(debug_df):
        raise ValueError(f"{len(logits)} predictions for {len(debug_df)} debug images")
    probs = logits.softmax(1)
    k = min(5, probs.shape[1])
    top_p, top_i = probs.topk(k, dim=1)
    out = debug_df.reset_index(drop=True).copy()
    out["pred"] = top_i[:, 0].numpy()
    out["confidence"] = top_p[:, 0].numpy()
    out["true_prob"] = probs[
        torch.arange(len(out)), torch.as_tensor(out["label"].to_numpy(dtype=np.int64, copy=True))
    ].numpy()
    out["top5"] = [list(map(int, r)) for r in top_i.numpy()]
    out["correct"] = out["pred"].to_numpy() == out["label"].to_numpy()
    out["split"] = assign_halves(out, seed)
    return out


def assign_halves(table: pd.DataFrame, seed: int = 0) -> pd.Series:
    """ "seed" / "heldout" for failures (first ceil(n/2) per class by hash rank), "" for correct predictions."""
    split = pd.Series("", index=table.index, dtype=object)
    wrong = table[~table["correct"]]
    for _, group in wrong.groupby("label", sort=True):
        order = sorted(group.index, key=lambda i: _rank_hash(str(group.at[i, "image_id"]), seed))
        half = (len(order) + 1) // 2
        split[order[:half]] = SEED
        split[order[half:]] = HELDOUT
    return split


def failures(table: pd.DataFrame, split: str | None = None) -> pd.DataFrame:
    """The wrong predictions, optionally only one half ("seed" or "heldout")."""
    wrong = table[~table["correct"]]
    return wrong if split is None else wrong[wrong["split"] == split]


def per_class_counts(table: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    g = table.groupby("label")
    out = pd.DataFrame({"label": range(len(classes)), "class_name": classes})
    out["n_debug"] = out["label"].map(g.size()).fillna(0).astype(int)
    out["n_failures"] = out["label"].map(g["correct"].apply(lambda c: int((~c).sum()))).fillna(0).astype(int)
    for half in (SEED, HELDOUT):
        out[f"n_{half}"] = out["label"].map(table[table["split"] == half].groupby("label").size()).fillna(0).astype(int)
    out["failure_rate"] = (out["n_failures"] / out["n_debug"].where(out["n_debug"] > 0)).fillna(0.0)
    return out


def failure_matrix(failure_ids: Mapping[str, Iterable[str]], universe: list[str] | None = None):
    """(model names, universe ids, boolean matrix M×N) with True where a model fails on an image.

    All ids are factorized in one pass (hashing strings once), which keeps 40 models × 30,000 images fast."""
    names = list(failure_ids)
    parts = [np.asarray(list(failure_ids[n]), dtype=object) for n in names]
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


def overlap_from_matrix(names: list[str], B: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """IoU and raw intersection counts between every pair of rows of a boolean failure matrix (one matmul)."""
    Bf = B.astype(np.float32)
    inter = Bf @ Bf.T
    sizes = Bf.sum(1)
    union = sizes[:, None] + sizes[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return (
        pd.DataFrame(iou, index=names, columns=names),
        pd.DataFrame(inter.astype(np.int64), index=names, columns=names),
    )


def iou_matrix(failure_ids: Mapping[str, Iterable[str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Intersection-over-union and raw intersections of the failure sets of several models."""
    names, _, B = failure_matrix(failure_ids)
    return overlap_from_matrix(names, B)


def family_average(iou: pd.DataFrame, family_of: Mapping[str, str]) -> pd.DataFrame:
    """Mean IoU between families (off-diagonal pairs only within a family)."""
    fams = sorted({family_of[n] for n in iou.index})
    out = pd.DataFrame(np.nan, index=fams, columns=fams)
    for a in fams:
        for b in fams:
            rows = [n for n in iou.index if family_of[n] == a]
            cols = [n for n in iou.columns if family_of[n] == b]
            vals = [iou.at[r, c] for r in rows for c in cols if r != c]
            out.at[a, b] = float(np.mean(vals)) if vals else np.nan
    return out


def compare_pair(table_a: pd.DataFrame, table_b: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Failures two models share, and those only one of them has (rows from table_a / table_b)."""
    fa, fb = set(failures(table_a)["image_id"]), set(failures(table_b)["image_id"])
    return {
        "both": table_a[table_a["image_id"].isin(fa & fb)],
        "only_a": table_a[table_a["image_id"].isin(fa - fb)],
        "only_b": table_b[table_b["image_id"].isin(fb - fa)],
    }
