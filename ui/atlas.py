"""The embedding map's widget in the app: Embedding Atlas's Streamlit component (pan, zoom, rectangle and lasso
selection, drawn with WebGPU or WebGL 2), served from the offline-ready copy core.map_widget assembles."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st
import streamlit.components.v1 as components

from core import store
from core.map_widget import component_dir


@st.cache_resource(show_spinner=False)
def _component(cache_root: str):
    """Declared once per server (and cache root)."""
    return components.declare_component("embedding_atlas", path=str(component_dir(Path(cache_root) / "ui")))


def embedding_atlas(points: pd.DataFrame, *, key: str, text: str | None = None) -> str | None:
    """Draw ``points`` (columns x, y and any others to filter or colour by) with pan, zoom, box and lasso
    selection; returns the SQL predicate of the current selection over ``points`` (its row number is
    ``__row_index__``), or None when nothing is selected."""
    from embedding_atlas.options import make_embedding_atlas_props

    props = make_embedding_atlas_props(x="x", y="y", text=text, labels="disabled")
    value = _component(str(store.cache_root()))(data_frame=points, props=props, key=key, default={})
    predicate = (value or {}).get("predicate")
    return predicate or None
