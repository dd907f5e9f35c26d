"""Cached readers of what core has computed: datasets, finished runs, failure tables, thumbnails.

Objects (datasets) live in st.cache_resource; tables in st.cache_data with a bounded number of entries, keyed
by the artifact's folder and modification time so a recompute is picked up. Nothing here starts computation:
a dataset that is not prepared yet is reported as missing (the Setup page starts the job that prepares it).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import streamlit as st

import core.job_kinds  # noqa: F401  (registers the job kinds pages submit)
from core import jobs, store
from core.datasets.base import ImageDataset
from core.workspace import open_dataset

PREPARE = "prepare_dataset"


def spec_json(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True)


def prepare_job(spec: dict) -> jobs.Job:
    """The job that builds (offline world) or checks (real datasets) ``spec``; done means it opens instantly."""
    return jobs.job_for(PREPARE, dataset=spec)


def dataset_ready(spec: dict) -> bool:
    return prepare_job(spec).state == jobs.DONE


@st.cache_resource(show_spinner=False, max_entries=4)
def _open(spec_text: str, cache_root: str) -> ImageDataset:
    return open_dataset(json.loads(spec_text))


def get_dataset(spec: dict) -> ImageDataset | None:
    """The opened dataset, or None while it has not been prepared (opening then would build it in the page)."""
    if not dataset_ready(spec):
        return None
    return _open(spec_json(spec), str(store.cache_root()))


def latest_runs(ds: ImageDataset) -> dict[str, dict]:
    """The newest finished run per model: model -> run summary (with its ``folder``)."""
    from core.find.runs import list_runs

    out: dict[str, dict] = {}
    for s in list_runs(ds):  # newest first
        out.setdefault(s["model"], s)
    return out


def read_failure_table(folder: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """A finished run's failure table (core.find.runs writes ``failures.parquet``), with its top-5 list column
    unpacked into int columns top1..top5: object columns of lists make every cache hit slow to unpickle."""
    import numpy as np
    import pyarrow.parquet as pq

    tbl = pq.read_table(Path(folder) / "failures.parquet", columns=columns)
    top = None
    if "top5" in tbl.column_names:
        col = tbl.column("top5").combine_chunks()
        flat = col.flatten().to_numpy(zero_copy_only=False)
        top = flat.reshape(len(col), -1) if len(col) else np.zeros((0, 5), np.int64)
        tbl = tbl.drop_columns(["top5"])
    df = tbl.to_pandas()
    if top is not None:
        for j in range(top.shape[1]):
            df[f"top{j + 1}"] = top[:, j].astype(np.int32)
    return df


@st.cache_data(show_spinner=False, max_entries=48)
def _table(folder: str, mtime: float) -> pd.DataFrame:
    return read_failure_table(folder)


def run_table(summary: dict) -> pd.DataFrame:
    """One row per debug image of a finished run (see core.find.failures.failure_table), top-5 as top1..top5."""
    return _table(summary["folder"], summary["mtime"])


@st.cache_data(show_spinner=False, max_entries=4096)
def _thumb(spec_text: str, cache_root: str, image_id: str, size: int) -> bytes:
    img = _open(spec_text, cache_root).load(image_id).convert("RGB")
    if max(img.size) > size:
        img.thumbnail((size, size))
    elif max(img.size) < size:  # small world images are scaled up with hard edges so digits stay legible
        from PIL import Image

        img = img.resize((size, size), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def thumbnail(spec: dict, image_id: str, size: int = 128) -> bytes:
    return _thumb(spec_json(spec), str(store.cache_root()), str(image_id), size)


def embedding_path(summary: dict) -> Path:
    from core.job_kinds import embedding_map_path

    return embedding_map_path(summary["backbone_key"], summary["dataset_key"], summary["split_config"])


@st.cache_data(show_spinner=False, max_entries=8)
def _parquet(path: str, mtime: float) -> pd.DataFrame:
    return pd.read_parquet(path)


def embedding_points(summary: dict) -> pd.DataFrame | None:
    """image_id, x, y of the run's debug images, or None until the embedding_map job has made it."""
    p = embedding_path(summary)
    return _parquet(str(p), p.stat().st_mtime) if p.exists() else None


def empty_state(message: str, icon: str = ":material/info:") -> None:
    """Explain why a page has nothing to show and link to where the user can fix that."""
    st.info(message, icon=icon)
    st.page_link("pages/setup.py", label="Go to Setup", icon=":material/settings:")


@st.cache_data(show_spinner=False, max_entries=16)
def _overlap(runs_key: tuple) -> tuple[pd.DataFrame, pd.DataFrame]:
    import numpy as np

    from core.find.failures import iou_matrix, overlap_from_matrix

    names = [model for _, model, _ in runs_key]
    masks = [read_failure_table(folder, ["image_id", "correct"]) for folder, _, _ in runs_key]
    first = masks[0]["image_id"]
    if all(len(m) == len(first) and m["image_id"].equals(first) for m in masks[1:]):
        # Runs over the same debug set: the failure matrix is their stacked wrong-prediction masks.
        return overlap_from_matrix(names, np.stack([~m["correct"].to_numpy(bool) for m in masks]))
    return iou_matrix({n: m.loc[~m["correct"], "image_id"].to_numpy() for n, m in zip(names, masks)})


def overlap(summaries: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """IoU and intersection counts of the failure sets of these runs (core.find.failures), cached."""
    return _overlap(tuple((s["folder"], s["model"], s["mtime"]) for s in summaries))


@st.cache_data(show_spinner=False, max_entries=16)
def _pair(a: tuple, b: tuple) -> dict[str, pd.DataFrame]:
    from core.find.failures import compare_pair

    return compare_pair(_table(*a), _table(*b))


def compare(summary_a: dict, summary_b: dict) -> dict[str, pd.DataFrame]:
    """Failures both runs share and those only one has (core.find.failures.compare_pair), cached."""
    return _pair((summary_a["folder"], summary_a["mtime"]), (summary_b["folder"], summary_b["mtime"]))


def require_dataset(spec: dict) -> ImageDataset:
    """The opened dataset; otherwise explain how to prepare it and stop the page."""
    ds = get_dataset(spec)
    if ds is None:
        empty_state("The dataset is not ready yet: build it on the Setup page first.")
        st.stop()
    return ds


def require_runs(ds: ImageDataset, minimum: int = 1, why: str = "") -> dict[str, dict]:
    """The newest finished run per model; with fewer than ``minimum``, say what to do and stop the page."""
    runs = latest_runs(ds)
    if len(runs) < minimum:
        empty_state(
            why
            or "No model has been run on this dataset yet. Pick models on the Setup page and run "
            "them; their debug failures appear here."
        )
        st.stop()
    return runs


def assignment_sidecars(summary: dict, attribute: str) -> list[tuple[dict, Path]]:
    """(provenance, parquet path) of the run's cached CLIP assignments for ``attribute``, newest first."""
    from core.describe.textualize import list_assignments

    return list_assignments(summary["folder"], attribute)


def assignments(summary: dict, attribute: str) -> tuple[pd.DataFrame, dict] | None:
    """The newest cached assignment of the run's debug_seed failures to ``attribute`` values, or None."""
    found = assignment_sidecars(summary, attribute)
    if not found:
        return None
    prov, pq = found[0]
    return _parquet(str(pq), pq.stat().st_mtime), prov


def failure_modes(summary: dict, attribute: str, k: int) -> pd.DataFrame | None:
    """The k most frequent assigned values per class (core.describe.assign.failure_modes), or None before assignment."""
    got = assignments(summary, attribute)
    if got is None:
        return None
    from core.describe.assign import failure_modes as top_k

    return top_k(got[0], k=k)


@st.cache_resource(show_spinner=False, max_entries=8)
def _generator(spec_text: str, cache_root: str, name: str, kwargs_text: str):
    from core.fix.experiments import default_generator

    return default_generator(_open(spec_text, cache_root), name, **json.loads(kwargs_text))


def generated_set_name(spec: dict, generator: str, kwargs: dict, attribute: str | None, seed: int = 0) -> str:
    """The shared set core.fix.mitigate generates into for this dataset, generator and attribute (None: baseline)."""
    from core.fix.mitigate import set_name

    gen = _generator(spec_json(spec), str(store.cache_root()), generator, json.dumps(kwargs, sort_keys=True))
    return set_name(get_dataset(spec), gen, attribute, seed)


def generated_set(name: str):
    from core.fix.generators import GeneratedSet

    return GeneratedSet(name)


def saved_results(ds: ImageDataset) -> dict[str, tuple[pd.DataFrame, dict]]:
    """The newest saved results table per experiment (``what``) for this dataset: what -> (table, meta)."""
    from core.fix.mitigate import list_results

    return {w: (_parquet(str(pq), pq.stat().st_mtime), meta) for w, (pq, meta) in list_results(ds.key).items()}


@st.cache_data(show_spinner=False, max_entries=16)
def _failures_with_values(folder: str, mtime: float, assigned: str | None, assigned_mtime: float) -> pd.DataFrame:
    table = _table(folder, mtime)
    fails = table[~table["correct"]]
    if assigned is None:
        return fails
    values = _parquet(assigned, assigned_mtime)[["image_id", "value", "prob"]]
    return fails.merge(values, on="image_id", how="left")


def failures_with_values(summary: dict, attribute: str) -> pd.DataFrame:
    """The run's failures, with the assigned ``attribute`` value and its probability where CLIP assigned one
    (debug_seed failures, once the textualize job has run)."""
    found = assignment_sidecars(summary, attribute)
    pq = found[0][1] if found else None
    return _failures_with_values(
        summary["folder"], summary["mtime"], str(pq) if pq else None, pq.stat().st_mtime if pq else 0.0
    )
