"""Selections over failure tables for the pages' filters and exports (row filtering only; no results computed)."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from core.find.failures import among

EXPORT_COLUMNS = [
    "image_id",
    "label",
    "class_name",
    "pred",
    "pred_name",
    "confidence",
    "true_prob",
    "top5_names",
    "split",
    "value",
    "value_prob",
]


def select_rows(
    df: pd.DataFrame,
    *,
    labels: Iterable[int] = (),
    preds: Iterable[int] = (),
    split: str | None = None,
    values: Iterable[str] = (),
    ids: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Rows matching every given filter; an empty filter keeps everything."""
    mask = pd.Series(True, index=df.index)
    labels, preds, values = list(labels), list(preds), list(values)
    if labels:
        mask &= df["label"].isin(labels)
    if preds:
        mask &= df["pred"].isin(preds)
    if split:
        mask &= df["split"] == split
    if values and "value" in df:
        mask &= df["value"].isin(values)
    if ids is not None:
        mask &= among(df["image_id"], ids)
    return df[mask]


def top_columns(df: pd.DataFrame) -> list[str]:
    """The unpacked top-5 prediction columns present (fewer than five when there are fewer classes)."""
    return [c for c in ("top1", "top2", "top3", "top4", "top5") if c in df]


def named(df: pd.DataFrame, classes: list[str]) -> pd.DataFrame:
    """The table with class names beside label, prediction and top-5 (for display and CSV export)."""
    names = pd.Series(classes)
    out = df.copy()
    out["class_name"] = names.reindex(out["label"].to_numpy()).to_numpy()
    out["pred_name"] = names.reindex(out["pred"].to_numpy()).to_numpy()
    tops = top_columns(out)
    out["top5_names"] = [" | ".join(classes[int(i)] for i in t) for t in out[tops].to_numpy()] if tops else ""
    return out


def export_csv(df: pd.DataFrame, classes: list[str]) -> bytes:
    out = named(df, classes)
    return out[[c for c in EXPORT_COLUMNS if c in out]].to_csv(index=False).encode()


def fmt_matrix(df: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """A numeric matrix as text for display, '–' where undefined (e.g. a family with one model)."""
    return df.map(lambda v: "–" if pd.isna(v) else f"{v:.{digits}f}")
