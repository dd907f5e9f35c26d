"""The Failures page's embedding map on its own, over a synthetic debug set (served by benchmarks/embedding_map.py).

The same widget (ui.atlas), points (core.find.embedding.map_points, drawn_points), selection
(core.find.embedding.ids_in_selection, core.find.failures.among) and gallery filter (ui.tables.select_rows) as
pages/failures.py, cached the way ui/data.py caches them (st.cache_resource: no copy per rerun); the points are
BENCH_MAP_POINTS random images in ten Gaussian clusters, 30% of them failures
(benchmarks.embedding_map.synthetic_points); the widget gets their drawn columns, as in the app.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd
import streamlit as st

from benchmarks.embedding_map import synthetic_points
from core.find.embedding import drawn_points, ids_in_selection
from core.find.failures import among
from ui.atlas import embedding_atlas
from ui.tables import select_rows


@st.cache_resource(show_spinner=False)
def synthetic(n: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    points, failures = synthetic_points(n)
    return points, drawn_points(points), failures


st.set_page_config(layout="wide")
pts, drawn, fails = synthetic(int(os.environ.get("BENCH_MAP_POINTS", "200000")))
st.caption(f"All {len(pts):,} debug images.")
predicate = embedding_atlas(drawn, key="bench-atlas", text="true class")
ids = None
if predicate:
    ids = ids_in_selection(pts, predicate)
    n_fail = int(among(fails["image_id"], ids).sum())
    st.caption(f"{len(ids):,} points selected on the map, {n_fail:,} of them failures.")
sel = select_rows(fails, ids=ids)
st.caption(f"Gallery: {len(sel):,} failures")
st.dataframe(sel.head(30), hide_index=True)
