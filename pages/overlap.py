"""Overlap: intersection-over-union of failure sets across models, by family; a cell shows what two models share."""

import streamlit as st

from core.notebook_export import notebook_bytes
from ui import data
from ui.feedback import guard
from ui.gallery import grid
from ui.nav import within_app
from ui.state import dataset_spec
from ui.tables import fmt_matrix
from ui.text import md

within_app()

EXAMPLES = 12

st.title("Overlap")
spec = dataset_spec()
ds = data.require_dataset(spec)
runs = data.require_runs(
    ds, 2, "Overlap compares the failures of at least two models; run more models on the Setup page."
)

ordered = sorted(runs, key=lambda m: (runs[m]["family"], m))
chosen = st.multiselect("Models (ordered by family)", ordered, default=ordered[:40], key="ov-models")
chosen = [m for m in ordered if m in chosen]
if len(chosen) < 2:
    st.caption("Choose at least two models.")
    st.stop()

st.download_button(
    "Open as notebook",
    lambda: notebook_bytes("overlap", spec, chosen),
    file_name="overlap.ipynb",
    mime="application/x-ipynb+json",
    icon=":material/code:",
)
with guard("Computing the overlap"):
    summaries = [runs[m] for m in chosen]
    iou, _ = data.overlap(summaries)
    heat = data.overlap_figure(summaries)
    st.caption("Click a cell to see the failures the two models share and those only one of them has.")
    event = st.plotly_chart(heat, on_select="rerun", selection_mode="points", key="ov-heat")

    fam = data.family_overlap(summaries)
    with st.expander("Family averages (mean IoU over pairs of distinct models)", expanded=len(fam) > 1):
        st.dataframe(fmt_matrix(fam), width="content")

    picked = [(p.get("y"), p.get("x")) for p in event.selection.points if p.get("x") in runs and p.get("y") in runs]
    if picked and picked[0] != st.session_state.get("ov-last-pick"):  # a new click; the selectboxes win after
        st.session_state["ov-a"], st.session_state["ov-b"] = st.session_state["ov-last-pick"] = picked[0]
    c1, c2 = st.columns(2)
    for k, default in (("ov-a", chosen[0]), ("ov-b", chosen[1])):
        if st.session_state.get(k) not in chosen:
            st.session_state[k] = default
    a = c1.selectbox("Model A", chosen, key="ov-a")
    b = c2.selectbox("Model B", chosen, key="ov-b")
    if a == b:
        st.caption("Pick two different models.")
        st.stop()
    parts = data.compare(runs[a], runs[b])
    st.subheader(f"{md(a)} × {md(b)}: IoU {iou.at[a, b]:.3f}")
    tabs = st.tabs(
        [
            f"Both fail ({len(parts['both']):,})",
            f"Only {md(a)} ({len(parts['only_a']):,})",
            f"Only {md(b)} ({len(parts['only_b']):,})",
        ]
    )
    for tab, key in zip(tabs, ("both", "only_a", "only_b")):
        with tab:
            rows = parts[key].head(EXAMPLES)

            def cell(r):
                st.image(data.thumbnail(spec, r.image_id), width="stretch")
                st.caption(f"{md(ds.classes[r.label])} → {md(ds.classes[r.pred])}")

            grid(list(rows.itertuples()), cell, columns=6)
            if len(parts[key]) > EXAMPLES:
                st.caption(f"{EXAMPLES} of {len(parts[key]):,} shown.")
