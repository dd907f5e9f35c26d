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

from core.display import (
    GRID_CSS,
    Gallery,
    ModeExamples,
    ResultsTable,
    before_after_figure,
    html_text,
    mode_examples,
    sweep_figure,
)

TITLES = {
    "individual": "Before / after: individual debugging vs Random_debugging",
    "collective": "Collective debugging",
    "lam": "λ sweep",
    "k": "k sweep",
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
    if isinstance(content, ResultsTable):
        return content._repr_html_(), plotly_js
    if isinstance(content, (Gallery, ModeExamples)):
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


def model_examples(exp, model: str, per_mode: int = 3) -> list[ModeExamples]:
    """For each of ``model``'s failure modes under experiment ``exp``: up to ``per_mode`` of its failures beside
    up to ``per_mode`` images generated for that mode (cached steps: textualization and generation)."""
    text = exp.textualization(model)
    ours, _ = exp.images(text.modes)
    return mode_examples(exp.dataset, model, text.assignments, text.modes, ours, per_mode=per_mode)


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
    return sections


def experiment_report(
    exp,
    results: Mapping[str, pd.DataFrame],
    models: Sequence[str] | None = None,
    *,
    per_mode: int = 3,
    title: str | None = None,
) -> str:
    """The report of an experiment's results: tables and charts, then for each model (default: every model in
    the results) a few failures per failure mode beside the images generated for that mode, then provenance."""
    if models is None:
        models = list(dict.fromkeys(m for df in results.values() for m in df.get("model", [])))
    sections = results_sections(results)
    for m in models:
        sections.append((f"{m}: failures per mode and the images generated for it", model_examples(exp, m, per_mode)))
    return build_report(title or f"Backdrop results: {exp.dataset.name}", sections, exp.meta())
