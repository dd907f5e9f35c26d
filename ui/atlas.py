"""The embedding map's widget in the app: Embedding Atlas's Streamlit component (pan, zoom, rectangle and lasso
selection, drawn with WebGPU or WebGL 2), served from the offline-ready copy core.map_widget assembles.

With Streamlit's static file serving on (``server.enableStaticServing``, set in .streamlit/config.toml) the copy lives
in the app's static/ folder and is served from there, so the browser keeps the widget's files (its 36 MB in-browser
database among them) and their compiled code from one page load to the next; otherwise, or where that folder cannot
be written, Streamlit serves the copy in the cache as a component's files, fetched again on every page load."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st
import streamlit.components.v1 as components

from core import store
from core.map_widget import component_dir


def _static_root() -> Path | None:
    """The app's static/ folder when Streamlit serves it, else None."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if not st.get_option("server.enableStaticServing") or ctx is None:
        return None
    return Path(ctx.main_script_path).resolve().parent / "static"


@st.cache_resource(show_spinner=False)
def _component(cache_root: str, static_root: str | None):
    """Declared once per server (and cache root)."""
    if static_root is not None:
        try:
            folder = component_dir(Path(static_root))
        except OSError:  # a read-only install: served as a component's files below
            pass
        else:
            base = st.get_option("server.baseUrlPath").strip("/")
            url = "/" + "/".join(p for p in (base, "app/static", folder.name, "index.html") if p)
            return components.declare_component("embedding_atlas", url=url)
    return components.declare_component("embedding_atlas", path=str(component_dir(Path(cache_root) / "ui")))


def embedding_atlas(points: pd.DataFrame, *, key: str, text: str | None = None) -> str | None:
    """Draw ``points`` (columns x, y and any others to filter or colour by) with pan, zoom, box and lasso
    selection; returns the SQL predicate of the current selection over ``points`` (its row number is
    ``__row_index__``), or None when nothing is selected."""
    from embedding_atlas.options import make_embedding_atlas_props

    props = make_embedding_atlas_props(x="x", y="y", text=text, labels="disabled")
    root = _static_root()
    value = _component(str(store.cache_root()), None if root is None else str(root))(
        data_frame=points, props=props, key=key, default={}
    )
    predicate = (value or {}).get("predicate")
    return predicate or None
