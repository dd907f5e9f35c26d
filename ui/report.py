"""A self-contained HTML report (tables, charts, provenance) for stakeholders: one file, no network needed to view.

Text and table cells are HTML-escaped; charts embed plotly.js once, inline.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ui.text import html_text

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#1d1d1f}
h1{margin-bottom:.2rem} .meta{color:#666;font-size:.9rem} table{border-collapse:collapse;margin:.6rem 0 1.4rem}
th,td{border:1px solid #ddd;padding:.25rem .55rem;text-align:right;font-size:.9rem}
th{background:#f4f6fa} td:first-child,th:first-child{text-align:left} pre{background:#f6f6f6;padding:.6rem}
"""


def build_report(title: str, sections: Sequence[tuple[str, Any]], provenance: dict | None = None) -> str:
    """``sections``: (heading, content) where content is a DataFrame, a plotly Figure, or text."""
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html_text(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html_text(title)}</h1>"
        f"<p class='meta'>Made by Backdrop on {_dt.datetime.now():%Y-%m-%d %H:%M}</p>"
    ]
    plotly_js = "inline"
    for heading, content in sections:
        parts.append(f"<h2>{html_text(heading)}</h2>")
        if isinstance(content, pd.DataFrame):
            parts.append(content.to_html(index=False, escape=True, float_format=lambda v: f"{v:.4f}", border=0))
        elif hasattr(content, "to_html"):  # a plotly figure
            parts.append(content.to_html(full_html=False, include_plotlyjs=plotly_js))
            plotly_js = False
        else:
            parts.append(f"<p>{html_text(content)}</p>")
    if provenance:
        parts.append(
            "<h2>Where these numbers come from</h2><pre>"
            + html_text(pd.Series(provenance, dtype=object).to_string())
            + "</pre>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)
