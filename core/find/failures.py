"""Failures: the debug set's wrong predictions, their seed/heldout halves and per-class counts (overlap across
models: core.find.overlap).

Seed/heldout assignment ranks each class's failures by a hash of (image id, seed) and gives the first half to
debug_seed, so halves are balanced per class and an image that several models fail on tends to land in the same
half for all of them, which keeps cross-model comparisons honest.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import torch

SEED, HELDOUT = "seed", "heldout"


def _rank_hash(image_id: str, seed: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{seed}:{image_id}".encode(), digest_size=8).digest(), "big")


def failure_table(debug_df: pd.DataFrame, logits: np.ndarray | torch.Tensor, seed: int = 0) -> pd.DataFrame:
    """One row per debug image: prediction, correctness, confidence, top-5 (columns top1..top5) and its
    seed/heldout half if wrong."""
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
    for j in range(k):  # int columns, not a list column: tables of lists are slow to copy and to cache
        out[f"top{j + 1}"] = top_i[:, j].numpy().astype(np.int32)
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


def among(image_ids, ids) -> np.ndarray:
    """Boolean mask: which of ``image_ids`` are in ``ids`` (a hash set in Arrow; pandas' ``isin`` on string
    columns is ~30× slower at 100,000 ids, which a map selection easily reaches)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = pa.array(np.asarray(image_ids, dtype=object), pa.string())
    wanted = pa.array(np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=object), pa.string())
    return pc.is_in(values, value_set=wanted).to_numpy(zero_copy_only=False).astype(bool)
