"""Failures: a gallery of one model's debug failures with filters, a linked embedding map and CSV export."""

import streamlit as st

from core import jobs
from core.find.failures import among
from core.notebook_export import notebook_bytes
from ui import data
from ui.atlas import embedding_atlas
from ui.feedback import guard
from ui.gallery import grid, page_slice
from ui.jobs import job_panel
from ui.nav import within_app
from ui.state import dataset_spec
from ui.tables import export_csv, named, select_rows
from ui.text import md

within_app()

PER_PAGE = 30

st.title("Failures")
spec = dataset_spec()
ds = data.require_dataset(spec)
runs = data.require_runs(ds)

classes = ds.classes
models = data.model_order(ds, runs)
model = st.selectbox(
    "Model",
    models,
    key="failures-model",
    format_func=lambda m: f"{m} · {runs[m]['family']} · {runs[m]['n_failures']:,} failures",
)
summary = runs[model]
if made := data.made_by(ds, ("run", summary["folder"]), ("assign", summary["folder"])):
    st.caption(md(made))
with guard("Loading the model's failures"):
    table = data.run_table(summary)
    attribute = st.sidebar.selectbox("Attribute of assigned values", ["background", "colour"], key="f-attr")
    fails = data.failures_with_values(summary, attribute)
    acc = summary.get("accuracy", {})
    c = st.columns(5)
    c[0].metric("Debug accuracy", f"{acc.get('debug', 0):.1%}")
    c[1].metric("Test accuracy", f"{acc.get('test', 0):.1%}")
    c[2].metric("Failures", f"{len(fails):,}")
    c[3].metric("debug_seed", f"{summary.get('n_seed', 0):,}")
    c[4].metric("debug_heldout", f"{summary.get('n_heldout', 0):,}")

    f1, f2, f3, f4 = st.columns([3, 3, 3, 2])
    labels = f1.multiselect("True class", range(len(classes)), format_func=lambda i: classes[i], key="f-true")
    preds = f2.multiselect("Predicted class", range(len(classes)), format_func=lambda i: classes[i], key="f-pred")
    assigned = sorted(fails["value"].dropna().unique()) if "value" in fails else []
    values = f3.multiselect(
        f"Assigned {attribute}",
        assigned,
        key="f-value",
        disabled=not assigned,
        placeholder="choose values" if assigned else "assign on the Backgrounds page",
        help="CLIP's name for what each debug_seed failure shows (Backgrounds page).",
    )
    half = f4.segmented_control(
        "Half",
        ["seed", "heldout"],
        key="f-split",
        help="debug_seed is used to find failure modes; debug_heldout only to score fixes.",
    )

    search_ids = None
    with st.form("f-search", border=False):
        q1, q2 = st.columns([5, 1], vertical_alignment="bottom")
        query = q1.text_input("Search the failures with CLIP", key="f-query", placeholder="a seven on grass")
        q2.form_submit_button("Search", icon=":material/search:")
    if query.strip():
        job = jobs.job_for("search_failures", dataset=spec, model=model, query=query.strip())
        if job.state not in (jobs.DONE, jobs.RUNNING, jobs.FAILED):
            jobs.submit("search_failures", dataset=spec, model=model, query=query.strip())
        status = job_panel(
            "search_failures",
            label=f"CLIP search for {query.strip()!r}",
            key="search",
            start_label="Search",
            dataset=spec,
            model=model,
            query=query.strip(),
        )
        if status["state"] == jobs.DONE:
            search_ids = status["result"]["image_id"]
            st.caption(f"The {len(search_ids)} failures most like {md(query.strip())!s}, best first.")

    map_ids = None
    show_map = st.toggle(
        "Embedding map: a 2-D projection of the model's debug features; select points to filter the gallery",
        key="f-map-on",
    )
    if show_map:
        methods = data.projection_methods()
        method = "pca"
        if len(methods) > 1:
            method = (
                st.segmented_control(
                    "Projection",
                    methods,
                    default="pca",
                    format_func=str.upper,
                    key="f-map-method",
                    help="PCA is quick and exact; UMAP keeps neighbourhoods together and takes longer to compute.",
                )
                or "pca"
            )
        pts = data.embedding_points(summary, classes, method)
        if pts is None:
            job_panel(
                "embedding_map",
                label=f"Project the debug features to 2-D ({method.upper()})",
                key="emap" if method == "pca" else f"emap-{method}",
                start_label="Make the map",
                dataset=spec,
                model=model,
                split=summary["split_config"],
                **({} if method == "pca" else {"method": method}),
            )
        else:
            st.caption(
                f"All {len(pts):,} debug images, coloured and filtered with the map's own controls (Color, the "
                "charts panel). Pan with drag, zoom with the wheel; select with the rectangle or lasso tool."
            )
            predicate = embedding_atlas(pts, key=f"f-atlas-{model}-{method}", text="true class")
            if predicate:
                map_ids = data.map_selection(summary, classes, method, predicate)
                n_fail = int(among(fails["image_id"], map_ids).sum())
                st.caption(f"{len(map_ids):,} points selected on the map, {n_fail:,} of them failures.")

    sel = select_rows(fails, labels=labels, preds=preds, split=half, values=values, ids=map_ids)
    if search_ids is not None:  # keep the search's order: best match first
        present = set(sel["image_id"])
        sel = sel.set_index("image_id").reindex([i for i in search_ids if i in present]).reset_index()
    st.download_button(
        f"Export these {len(sel):,} failures as CSV",
        lambda: export_csv(sel, classes),
        file_name=f"failures-{model}.csv",
        mime="text/csv",
        icon=":material/download:",
    )
    st.download_button(
        "Open as notebook",
        lambda: notebook_bytes(
            "failures",
            spec,
            [model],
            true_classes=[classes[i] for i in labels],
            predicted_classes=[classes[i] for i in preds],
        ),
        file_name=f"failures-{model}.ipynb",
        mime="application/x-ipynb+json",
        icon=":material/code:",
    )

    tab_gallery, tab_table, tab_classes = st.tabs(["Gallery", "Table", "Per class"])
    with tab_gallery:
        if sel.empty:
            st.caption("No failures match these filters.")
        rows = named(sel.iloc[page_slice(len(sel), PER_PAGE, "f-page")], classes)

        def cell(r):
            st.image(data.thumbnail(spec, r.image_id), width="stretch")
            top5 = md(r.top5_names.replace(" | ", ", "))
            value = getattr(r, "value", None)
            assigned_line = f"  \n{md(attribute)}: {md(value)} (p = {r.prob:.2f})" if isinstance(value, str) else ""
            st.caption(
                f"**{md(r.class_name)}** → {md(r.pred_name)} ({r.confidence:.0%})  \n"
                f"top-5: {top5}  \n{md(r.image_id)} · {md(r.split)}{assigned_line}"
            )

        grid(list(rows.itertuples()), cell, columns=6)
    with tab_table:
        st.dataframe(named(sel.head(5000), classes), hide_index=True)
        if len(sel) > 5000:
            st.caption(f"First 5,000 of {len(sel):,} rows; the CSV export has them all.")
    with tab_classes:
        from core.find.failures import per_class_counts

        st.dataframe(per_class_counts(table, classes), hide_index=True)
