"""The Failures page's embedding map on its own, over a synthetic debug set (served by benchmarks/embedding_map.py).

The same widget (ui.atlas), points (core.find.embedding.map_points), selection (core.find.embedding.ids_in_selection)
and gallery filter (ui.tables.select_rows) as pages/failures.py; the points are BENCH_MAP_POINTS random images in
ten Gaussian clusters, 30% of them failures.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd
import streamlit as st

from core.find.embedding import ids_in_selection, map_points
from ui.atlas import embedding_atlas
from ui.tables import select_rows

CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@st.cache_data(show_spinner=False)
def synthetic(n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    label = rng.integers(0, 10, n)
    centre = rng.normal(scale=4.0, size=(10, 2))
    xy = centre[label] + rng.normal(size=(n, 2))
    correct = rng.random(n) > 0.3
    pred = np.where(correct, label, (label + rng.integers(1, 10, n)) % 10)
    ids = [f"val/{i:06d}" for i in range(n)]
    table = pd.DataFrame(
        {
            "image_id": ids,
            "label": label,
            "pred": pred,
            "correct": correct,
            "split": np.where(rng.random(n) < 0.5, "seed", "heldout"),
        }
    )
    points = pd.DataFrame({"image_id": ids, "x": xy[:, 0], "y": xy[:, 1]})
    return map_points(points, table, CLASSES), table[~table["correct"]]


st.set_page_config(layout="wide")
pts, fails = synthetic(int(os.environ.get("BENCH_MAP_POINTS", "200000")))
st.caption(f"All {len(pts):,} debug images.")
predicate = embedding_atlas(pts, key="bench-atlas", text="true class")
ids = None
if predicate:
    ids = ids_in_selection(pts, predicate)
    n_fail = int(fails["image_id"].isin(ids).sum())
    st.caption(f"{len(ids):,} points selected on the map, {n_fail:,} of them failures.")
sel = select_rows(fails, ids=ids)
st.caption(f"Gallery: {len(sel):,} failures")
st.dataframe(sel.head(30), hide_index=True)
