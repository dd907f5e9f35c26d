"""The self-contained HTML report for stakeholders: tables, charts, example failure and generated images, and
provenance, in one file that needs no network to view. The app's Download tab, the public API
(``core.api.report``) and the CLI (``python -m core report``) all build it here.

Text and table cells are HTML-escaped; charts embed plotly.js once, inline; images are ``data:`` URIs.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from core.config import DebugConfig, GeneratorConfig, HeadConfig, SplitConfig
from core.display import (
    GRID_CSS,
    Examples,
    Gallery,
    ModeExamples,
    RepeatsTable,
    ResultsTable,
    before_after_figure,
    html_text,
    mode_examples,
    repeats_figure,
    repeats_table,
    sweep_figure,
)

TITLES = {
    "individual": "Before / after: individual debugging vs Random_debugging",
    "collective": "Collective debugging",
    "lam": "λ sweep",
    "k": "k sweep",
    "individual-repeats": "Before / after over repeats: mean and 95% CI",
    "lam-repeats": "λ sweep over repeats: mean and 95% CI",
    "k-repeats": "k sweep over repeats: mean and 95% CI",
}

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#1d1d1f}
h1{margin-bottom:.2rem} .meta{color:#666;font-size:.9rem} table{border-collapse:collapse;margin:.6rem 0 1.4rem}
th,td{border:1px solid #ddd;padding:.25rem .55rem;text-align:right;font-size:.9rem}
th{background:#f4f6fa} td:first-child,th:first-child{text-align:left} pre{background:#f6f6f6;padding:.6rem}
"""


def _table(df: pd.DataFrame) -> str:
    return df.to_html(index=False, escape=True, float_format=lambda v: f"{v:.4f}", border=0)


def section_html(content: Any, plotly_js: str | bool) -> tuple[str, str | bool]:
    """One section's HTML, and whether plotly.js still has to be embedded by a later chart."""
    if isinstance(content, pd.DataFrame):
        return _table(content), plotly_js
    if isinstance(content, (ResultsTable, RepeatsTable)):
        return content._repr_html_(), plotly_js
    if isinstance(content, (Gallery, ModeExamples, Examples)):
        return content.to_html(css=False), plotly_js
    if hasattr(content, "to_plotly_json"):  # a plotly figure
        return content.to_html(full_html=False, include_plotlyjs=plotly_js), False
    if isinstance(content, (list, tuple)):
        parts = []
        for c in content:
            part, plotly_js = section_html(c, plotly_js)
            parts.append(part)
        return "\n".join(parts), plotly_js
    return f"<p>{html_text(content)}</p>", plotly_js


def build_report(title: str, sections: Sequence[tuple[str, Any]], provenance: dict | None = None) -> str:
    """The report as one HTML string.

    ``sections``: (heading, content) pairs; content is a DataFrame, a plotly figure, a
    :class:`core.display.Gallery` / :class:`~core.display.ModeExamples` (images), a
    :class:`~core.display.ResultsTable`, a list of those, or text. ``provenance``: what the numbers came from
    (shown at the end).

    >>> html = build_report("Backdrop results", [("Accuracy", df), ("Gain", fig), ("Examples", examples)])
    """
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html_text(title)}</title>"
        f"<style>{_STYLE}</style>{GRID_CSS}</head><body><h1>{html_text(title)}</h1>"
        f"<p class='meta'>Made by Backdrop on {_dt.datetime.now():%Y-%m-%d %H:%M}</p>"
    ]
    plotly_js: str | bool = "inline"
    for heading, content in sections:
        parts.append(f"<h2>{html_text(heading)}</h2>")
        part, plotly_js = section_html(content, plotly_js)
        parts.append(part)
    if provenance:
        parts.append(
            "<h2>Where these numbers come from</h2><pre>"
            + html_text(pd.Series(provenance, dtype=object).to_string())
            + "</pre>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def results_sections(results: Mapping[str, pd.DataFrame]) -> list[tuple[str, Any]]:
    """Each results table (``what`` -> rows: "individual", "collective", "lam", "k") with its chart."""
    from core.fix.mitigate import relative_to_individual

    sections: list[tuple[str, Any]] = []
    for what, df in results.items():
        sections.append((TITLES.get(what, what), ResultsTable(df, title="") if what == "individual" else df))
        if what == "individual":
            sections.append(("debug_heldout accuracy before and after", before_after_figure(df)))
        elif what == "collective":
            rel = relative_to_individual(df)
            sections.append(("Collective gain relative to individual", before_after_figure(rel, "relative")))
        elif what in ("lam", "k"):
            sections.append((TITLES[what] + " (debug_heldout)", sweep_figure(df, what)))
        elif what == "individual-repeats":
            sections[-1] = (TITLES[what], repeats_table(df))
            sections.append(("debug_heldout accuracy over repeats", repeats_figure(df)))
        elif what in ("lam-repeats", "k-repeats"):
            sections.append((TITLES[what] + " (debug_heldout)", sweep_figure(df, what.removesuffix("-repeats"))))
    return sections


def generated_rows(
    dataset, generator: GeneratorConfig, attribute: str, seed: int, model: str | None = None
) -> pd.DataFrame:
    """Index rows (with ``set``) of the failure-mode images these settings generated (for ``model``'s failures,
    with the edits generator); reads only (empty when nothing was generated yet)."""
    from core.fix.generators import GeneratedSet, list_sets
    from core.steps import generated_set_names

    name = generated_set_names(dataset, generator, attribute, seed, model)[0]
    if name not in list_sets():
        return pd.DataFrame(columns=["image_id", "class_name", "value", "set"])
    return GeneratedSet(name).index().assign(set=name)


def examples_of(
    dataset,
    model: str,
    *,
    attribute: str = "background",
    k: int = DebugConfig.k_modes,
    generator: GeneratorConfig = GeneratorConfig(),
    seed: int = DebugConfig.seed,
    split: SplitConfig = SplitConfig(),
    head: HeadConfig = HeadConfig(),
    list_versions: Sequence[str] = (),
    per_mode: int = 3,
) -> Examples:
    """``model``'s failure modes, each with up to ``per_mode`` of its failures beside up to ``per_mode`` images
    generated for it, from what earlier steps cached (the run, its CLIP assignments — for one of
    ``list_versions`` when given, else the newest — and the generated set). Reads only: empty when the run or
    its assignments are missing."""
    from core.describe.assign import failure_modes
    from core.describe.textualize import list_assignments
    from core.find.runs import load_run

    run = load_run(dataset, model, split, head)
    if run is None:
        return Examples()
    found = list_assignments(run.folder, attribute)
    chosen = next((pq for prov, pq in found if prov.get("list_version") in set(list_versions)), None)
    chosen = chosen or (found[0][1] if found else None)
    if chosen is None:
        return Examples()
    assignments = pd.read_parquet(chosen)
    modes = failure_modes(assignments, k=k)
    rows = generated_rows(dataset, generator, attribute, seed, model)
    return mode_examples(dataset, model, assignments, modes, rows, per_mode=per_mode)


def settings_of(meta: dict) -> dict:
    """The keyword arguments of :func:`examples_of` that a saved experiment's metadata records."""
    debug = meta.get("debug") or {}
    return {
        "attribute": meta.get("attribute", "background"),
        "k": int(debug.get("k_modes", DebugConfig.k_modes)),
        "seed": int(debug.get("seed", DebugConfig.seed)),
        "generator": GeneratorConfig(meta.get("generator"), options=dict(meta.get("generator_kwargs") or {})),
        "split": SplitConfig(**(meta.get("split") or {})),
        "head": HeadConfig(**(meta.get("head") or {})),
    }


def results_report(
    dataset,
    saved: Mapping[str, tuple[pd.DataFrame, dict]],
    sections: Sequence[tuple[str, Any]] | None = None,
    *,
    models: Sequence[str] | None = None,
    per_mode: int = 3,
    title: str | None = None,
) -> str:
    """The report of saved results (``kind -> (rows, metadata)``, as ``core.fix.mitigate.list_results`` finds
    them, or as the API's results carry them): ``sections`` (default: each table with its chart), then for each
    model (default: those of the individual, else the first, results) a few failures per failure mode beside the
    images generated for that mode, then provenance. Reads only: nothing is computed or generated."""
    sections = list(sections if sections is not None else results_sections({w: df for w, (df, _) in saved.items()}))
    if saved:
        df, meta = saved.get("individual") or next(iter(saved.values()))
        versions = [str(v) for v in df.get("list_version", pd.Series(dtype=str)).dropna().unique()]
        for m in models if models is not None else list(dict.fromkeys(df.get("model", []))):
            ex = examples_of(dataset, m, list_versions=versions, per_mode=per_mode, **settings_of(meta))
            if ex:
                sections.append((f"{m}: failures per mode and the images generated for it", ex))
    provenance = {w: meta for w, (_, meta) in saved.items()} or None
    return build_report(title or f"Backdrop results: {dataset.name}", sections, provenance)
