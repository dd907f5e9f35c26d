"""Cached views of what core has computed: datasets, finished runs, failure tables, overlap, thumbnails.

Every read is a core call (core.find.runs, core.find.overlap, core.find.embedding, core.describe.textualize,
core.fix.mitigate); this module only caches them. Objects (datasets) live in st.cache_resource; tables in
st.cache_data with a bounded number of entries, keyed by the artifact's folder and modification time so a
recompute is picked up. Nothing here starts computation:
a dataset that is not prepared yet is reported as missing (the Setup page starts the job that prepares it).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

import core.job_kinds  # noqa: F401  (registers the job kinds pages submit)
from core import jobs, store
from core.config import GeneratorConfig
from core.datasets.base import ImageDataset
from core.describe import textualize
from core.display import iou_heatmap
from core.find.embedding import (
    available_methods,
    drawn_points,
    embedding_map_path,
    ids_in_selection,
    load_embedding_map,
    map_points,
)
from core.find.overlap import compare_pair, family_average, overlap_of_runs
from core.find.runs import latest_runs, read_failure_table
from core.fix.mitigate import list_results, read_results
from core.workspace import open_dataset

if TYPE_CHECKING:
    import plotly.graph_objects as go

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


@st.cache_data(show_spinner=False, max_entries=48)
def _table(folder: str, mtime: float) -> pd.DataFrame:
    return read_failure_table(folder)


def run_table(summary: dict) -> pd.DataFrame:
    """One row per debug image of a finished run (core.find.runs.read_failure_table), cached."""
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
    img.save(buf, format="JPEG", quality=90)  # what st.image would turn an opaque PNG into on every rerun
    return buf.getvalue()


def thumbnail(spec: dict, image_id: str, size: int = 128) -> bytes:
    return _thumb(spec_json(spec), str(store.cache_root()), str(image_id), size)


def _mtime(path: Path) -> float:
    """A cached artifact's version for cache keys: its modification time (0.0 while it does not exist)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


@st.cache_resource(show_spinner=False, max_entries=4)  # not copied on each read (200,000 rows); never mutated
def _map(summary_key: str, method: str, mtime: float, classes: tuple[str, ...]) -> pd.DataFrame | None:
    summary = json.loads(summary_key)
    points = load_embedding_map(summary, method)
    if points is None:
        return None
    return map_points(points, _table(summary["folder"], summary["mtime"]), list(classes))


def _map_key(summary: dict) -> str:
    return json.dumps({k: summary[k] for k in ("backbone_key", "dataset_key", "split_config", "folder", "mtime")})


def projection_methods() -> list[str]:
    """The embedding map's projections this installation offers (UMAP only when umap-learn is installed)."""
    return available_methods()


@st.cache_resource(show_spinner=False, max_entries=4)
def _drawn(summary_key: str, method: str, mtime: float, classes: tuple[str, ...]) -> pd.DataFrame | None:
    points = _map(summary_key, method, mtime, classes)
    return None if points is None else drawn_points(points)


def embedding_points(summary: dict, classes: list[str], method: str = "pca") -> pd.DataFrame | None:
    """What the run's embedding map widget receives (core.find.embedding.drawn_points: no image ids), or None until
    the embedding_map job has made the projection; ``map_selection`` maps its selections back to image ids."""
    return _drawn(_map_key(summary), method, _mtime(embedding_map_path(summary, method)), tuple(classes))


@st.cache_data(show_spinner=False, max_entries=16)
def _selected(summary_key: str, method: str, mtime: float, classes: tuple[str, ...], predicate: str):
    points = _map(summary_key, method, mtime, classes)
    return None if points is None else ids_in_selection(points, predicate)


def map_selection(summary: dict, classes: list[str], method: str, predicate: str):
    """image_ids inside a selection drawn on the run's embedding map (the widget's SQL predicate), cached."""
    return _selected(_map_key(summary), method, _mtime(embedding_map_path(summary, method)), tuple(classes), predicate)


def empty_state(message: str, icon: str = ":material/info:") -> None:
    """Explain why a page has nothing to show and link to where the user can fix that."""
    st.info(message, icon=icon)
    st.page_link("pages/setup.py", label="Go to Setup", icon=":material/settings:")


@st.cache_data(show_spinner=False, max_entries=16)
def _overlap(runs_key: tuple) -> tuple[pd.DataFrame, pd.DataFrame]:
    return overlap_of_runs({model: folder for folder, model, _ in runs_key})


def overlap(summaries: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """IoU and intersection counts of the failure sets of these runs (core.find.overlap.overlap_of_runs), cached."""
    return _overlap(_runs_key(summaries))


def _runs_key(summaries: list[dict]) -> tuple:
    return tuple((s["folder"], s["model"], s["mtime"]) for s in summaries)


@st.cache_data(show_spinner=False, max_entries=16)
def _family_overlap(runs_key: tuple, families: tuple[str, ...]) -> pd.DataFrame:
    iou, _ = _overlap(runs_key)
    return family_average(iou, {model: fam for (_, model, _), fam in zip(runs_key, families)})


def family_overlap(summaries: list[dict]) -> pd.DataFrame:
    """Mean IoU within and between the runs' model families (core.find.overlap.family_average), cached."""
    return _family_overlap(_runs_key(summaries), tuple(s["family"] for s in summaries))


@st.cache_resource(show_spinner=False, max_entries=8)  # a plotly figure: drawn as it is, never mutated
def _overlap_figure(runs_key: tuple) -> go.Figure:
    iou, inter = _overlap(runs_key)
    return iou_heatmap(iou, inter=inter)


def overlap_figure(summaries: list[dict]) -> go.Figure:
    """The runs' IoU heatmap with a selectable marker on every cell (core.display.iou_heatmap), built once."""
    return _overlap_figure(_runs_key(summaries))


@st.cache_data(show_spinner=False, max_entries=16)
def _pair(a: tuple, b: tuple) -> dict[str, pd.DataFrame]:
    return compare_pair(_table(*a), _table(*b))


def compare(summary_a: dict, summary_b: dict) -> dict[str, pd.DataFrame]:
    """Failures both runs share and those only one has (core.find.overlap.compare_pair), cached."""
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


def _assignment_version(summary: dict, attribute: str) -> float:
    """The newest cached assignment's modification time (0.0 before any): a key that changes when one is made."""
    found = textualize.list_assignments(summary["folder"], attribute)
    return _mtime(found[0][1]) if found else 0.0


@st.cache_data(show_spinner=False, max_entries=16)
def _assignments(folder: str, attribute: str, version: float) -> tuple[pd.DataFrame, dict] | None:
    return textualize.latest_assignments(folder, attribute)


def assignments(summary: dict, attribute: str) -> tuple[pd.DataFrame, dict] | None:
    """The newest cached assignment of the run's debug_seed failures to ``attribute`` values, or None."""
    return _assignments(summary["folder"], attribute, _assignment_version(summary, attribute))


def failure_modes(summary: dict, attribute: str, k: int) -> pd.DataFrame | None:
    """The k most frequent assigned values per class (core.describe.textualize), or None before assignment."""
    return _failure_modes(summary["folder"], attribute, int(k), _assignment_version(summary, attribute))


@st.cache_data(show_spinner=False, max_entries=16)
def _failure_modes(folder: str, attribute: str, k: int, version: float) -> pd.DataFrame | None:
    return textualize.latest_failure_modes(folder, attribute, k)


def discovery(ds: ImageDataset, summary: dict, attribute: str, k: int) -> str | None:
    """One line scoring the run's failure modes and assignment against the dataset's ground truth
    (core.describe.discovery); None where the dataset has none, or before assignment."""
    version = _assignment_version(summary, attribute)
    return _discovery(ds.key, str(store.cache_root()), ds, summary["folder"], attribute, int(k), version)


@st.cache_data(show_spinner=False, max_entries=16)
def _discovery(
    dataset_key: str, cache_root: str, _ds: ImageDataset, folder: str, attribute: str, k: int, version: float
) -> str | None:
    from core.describe.discovery import describe, latest_discovery

    report = latest_discovery(_ds, folder, attribute, k)
    return None if report is None else describe(report, k)


@st.cache_resource(show_spinner=False, max_entries=8)
def _generator(spec_text: str, cache_root: str, generator_text: str, model: str | None):
    from core.steps import make_generator

    return make_generator(_open(spec_text, cache_root), GeneratorConfig(**json.loads(generator_text)), model)


def generated_set_name(
    spec: dict, generator: GeneratorConfig, attribute: str | None, seed: int = 0, model: str | None = None
) -> str:
    """The shared set core.fix.mitigate generates into for this dataset, generator and
    attribute (None: baseline); ``model`` is the model whose failures the edits generator edits."""
    from dataclasses import asdict

    from core.fix.mitigate import set_name

    gen = _generator(spec_json(spec), str(store.cache_root()), json.dumps(asdict(generator), sort_keys=True), model)
    return set_name(get_dataset(spec), gen, attribute, seed)


def generated_set(name: str):
    from core.fix.generators import GeneratedSet

    return GeneratedSet(name)


def filter_report(name: str) -> pd.DataFrame:
    """Per mode of a generated set: images the CLIP filter scored, dropped, restored by hand, and kept."""
    from core.fix.generators.clip_filter import filter_report as report

    return report(generated_set(name))


def dropped_by_filter(name: str) -> pd.DataFrame:
    """Images of a generated set the CLIP filter dropped and nobody restored (reason and scores)."""
    from core.fix.generators.clip_filter import dropped_by_filter as dropped

    return dropped(generated_set(name))


def greyed(name: str, image_id: str):
    """A dropped image, shown greyed out."""
    return generated_set(name).load(image_id).convert("L")


@st.cache_data(show_spinner=False, max_entries=16)
def _results(path: str, mtime: float) -> pd.DataFrame:
    return read_results(path)


def saved_results(ds: ImageDataset) -> dict[str, tuple[pd.DataFrame, dict]]:
    """The newest saved results table per experiment (``what``) for this dataset: what -> (table, meta)."""
    return {w: (_results(str(pq), _mtime(pq)), meta) for w, (pq, meta) in list_results(ds.key).items()}


@st.cache_data(show_spinner=False, max_entries=8)
def _repeats(path: str, mtime: float, alpha: float) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    from core.fix.repeats import read_repeats, verdicts

    summary, tests, _rows = read_repeats(path)
    return summary, tests, verdicts(tests, alpha)


def saved_repeats(ds: ImageDataset) -> dict[str, tuple[pd.DataFrame, pd.DataFrame, list[str], dict]]:
    """The newest repeated experiment per kind ("individual", "lam", "k") for this dataset: kind -> (summary,
    paired tests, verdicts in words, meta), as core.fix.repeats saved and words them."""
    from core.config import RepeatsConfig

    out = {}
    for w, (pq, meta) in list_results(ds.key).items():
        if w.endswith("-repeats"):
            alpha = float(meta.get("alpha", RepeatsConfig.alpha))
            out[w.removesuffix("-repeats")] = (*_repeats(str(pq), _mtime(pq), alpha), meta)
    return out


@st.cache_data(show_spinner=False, max_entries=16)
def _failures_with_values(folder: str, mtime: float, attribute: str, version: float) -> pd.DataFrame:
    return textualize.failures_with_values(folder, attribute)


def failures_with_values(summary: dict, attribute: str) -> pd.DataFrame:
    """The run's failures, with the assigned ``attribute`` value and its probability where CLIP assigned one
    (core.describe.textualize.failures_with_values), cached."""
    return _failures_with_values(
        summary["folder"], summary["mtime"], attribute, _assignment_version(summary, attribute)
    )


@st.cache_data(show_spinner=False, ttl=2, max_entries=16)
def _setup_captions(dataset_key: str, cache_root: str, _ds: ImageDataset) -> dict[str, str]:
    from core.steps.setup import setup_captions

    return setup_captions(_ds)


def made_by(ds: ImageDataset, *shown: tuple[str, str]) -> str:
    """Which setup step made what a page shows (core.steps.setup.setup_captions), for each (kind, key) shown;
    "" when the setup build made none of them."""
    captions = _setup_captions(ds.key, str(store.cache_root()), ds)
    return " ".join(dict.fromkeys(c for c in (captions.get(f"{kind}:{key}") for kind, key in shown) if c))


def results_made_by(ds: ImageDataset, what: str) -> str:
    """``made_by`` for the newest saved ``what`` table (the one the Results page shows)."""
    found = list_results(ds.key).get(what)
    return made_by(ds, (what, str(found[0]))) if found else ""


def model_order(ds: ImageDataset, runs: dict) -> list[str]:
    """The run models in the order pages offer them: the default world model first (core.steps.model_order)."""
    from core.steps.setup import model_order as order

    return order(ds, list(runs))


@st.cache_data(show_spinner=False, ttl=2, max_entries=8)
def _setup_steps(dataset_key: str, cache_root: str, _ds: ImageDataset) -> tuple[pd.DataFrame | None, str]:
    from core.steps.setup import setup_table, steps_left

    return setup_table(_ds), steps_left(_ds)


def setup_steps(ds: ImageDataset) -> pd.DataFrame | None:
    """The setup build's steps and what became of each (core.steps.setup.setup_table); None before any build."""
    return _setup_steps(ds.key, str(store.cache_root()), ds)[0]


def setup_left(ds: ImageDataset) -> str:
    """The setup steps skipped or stopped so far, as one phrase ("" when none)."""
    return _setup_steps(ds.key, str(store.cache_root()), ds)[1]
