"""Setup: the dataset and the models, what is cached and what is missing, and the jobs that fill the cache."""

import pandas as pd
import streamlit as st

from core import jobs
from core.config import SetupConfig
from core.datasets import is_offline_world
from ui import data
from ui.cli import cli
from ui.feedback import guard
from ui.jobs import job_panel
from ui.nav import within_app
from ui.state import dataset_spec, spec_label
from ui.text import md

within_app()

st.title("Setup")
spec = dataset_spec()

st.header("Dataset", divider="gray")
st.write(f"**{md(spec_label(spec))}**")
with guard("Checking the dataset"):
    ds = data.get_dataset(spec)
    if is_offline_world(spec):
        if ds is None:
            st.info(
                "The offline world is not built on this machine yet. It composes real MNIST digits onto real "
                "photos and textures that ship with the installed packages, so it needs no network. One click "
                "renders its images, trains and runs the default world model first (its failures show within "
                "minutes), then the other world models, trains its CLIP, names the failures with CLIP, generates "
                "images for the failure modes and runs a before/after experiment for the default world model; the "
                "EfficientNet-Lite family runs last. The pages fill in as each step finishes.",
                icon=":material/rocket_launch:",
            )
        lite_px = SetupConfig.lite_input_size
        lite = st.checkbox(
            "Also run the EfficientNet-Lite family (ImageNet models; about a minute each on a CPU, run last)",
            value=True,
            key="setup-lite",
            help="Unticked, the build stops after the world's own models; tick it and build again to add them. "
            f"On the world's 64 px images they run at {lite_px} px (as efficientnet-liteN@{lite_px}) rather than "
            "their native 224-260 px: several times faster, with heads as accurate within a few points "
            "(benchmarks/features.py --input-sizes).",
        )
        job_panel(
            "setup_world",
            label="Build the offline world (world models first, then the EfficientNet-Lite family)"
            if lite
            else "Build the offline world (world models only)",
            key="world",
            start_label="Build the offline world" if ds is None else "Complete the world setup",
            dataset=spec,
            **({} if lite else {"setup": {"lite": False}}),
        )
        if ds is not None and (built := data.setup_steps(ds)) is not None:
            st.dataframe(
                built, hide_index=True, column_config={"seconds": st.column_config.NumberColumn(format="%.0f")}
            )
            if (left := data.setup_left(ds)) and lite:
                st.caption(f"{md(left)}: Complete the world setup runs it; the finished steps are kept.")
        st.caption("Command line equivalent (the same step, core.steps.setup_world)")
        st.code(cli("setup", spec, *([] if lite else ["--skip-lite"])), language="bash")
    elif ds is None:
        st.info(
            "This dataset has not been opened yet. Check it: files that are missing are named, with where to put them.",
            icon=":material/folder_open:",
        )
        job_panel(
            data.PREPARE, label="Open and check the dataset", key="prepare", start_label="Check dataset", dataset=spec
        )
        st.code(cli("prepare", spec), language="bash")
    if ds is not None:
        sizes = pd.DataFrame([{"pool": p, "images": len(ds.index(p))} for p in ds.pools()])
        c1, c2 = st.columns([1, 2])
        c1.metric("Classes", len(ds.classes))
        c1.dataframe(sizes, hide_index=True)
        with c2:
            st.caption("Classes")
            st.write(", ".join(md(c) for c in ds.classes[:200]) + (" …" if len(ds.classes) > 200 else ""))
            if hasattr(ds, "describe"):
                d = ds.describe()
                st.caption("How the world is made")
                st.write(md(d.get("correlation", "")))
                if d.get("backgrounds"):
                    st.dataframe(pd.DataFrame(d["backgrounds"]), hide_index=True, height=180)

if ds is not None:
    st.header("Models", divider="gray")
    with guard("Listing models"):
        from core.models import families
        from core.models.availability import availability_table

        table = availability_table(dataset=ds)
        st.dataframe(
            table,
            hide_index=True,
            height=min(420, 38 + 35 * len(table)),
            column_config={
                "test acc": st.column_config.NumberColumn(format="percent"),
                "debug acc": st.column_config.NumberColumn(format="percent"),
            },
        )
        missing = table[~table["weights here"]]["model"].tolist() if len(table) else []
        if missing:
            st.caption(
                f"{len(missing)} model(s) have no weights on this machine: the last column says how to get "
                "them (hub downloads need a networked machine; copy the file into the cache it names)."
            )
        fams = families()
        c1, c2 = st.columns(2)
        picked_fams = c1.multiselect("Families", sorted(fams), key="setup-families")
        usable = table[table["weights here"]]["model"].tolist() if len(table) else []
        default = []
        if is_offline_world(spec):
            from core.world.backbones import world_model_names

            default = [m for m in world_model_names(ds) if m in usable]
        picked = c2.multiselect(
            "Models", table["model"].tolist() if len(table) else [], default=default, key="setup-models"
        )
        other = st.text_input(
            "Any other timm or open_clip model, or a model at another input size",
            key="setup-other",
            placeholder="timm:convnext_tiny.fb_in1k or open_clip:ViT-B-32/openai",
            help="Names starting with timm: or open_clip: reach every model those libraries know; any name ending "
            "in @<pixels> (efficientnet-lite0@96) runs that model at that input size.",
        )
        extra = [o.strip() for o in other.split(",") if o.strip()]
        chosen = sorted(set(picked) | {m for f in picked_fams for m in fams[f]} | set(extra))
        if chosen:
            job_panel(
                "run_models",
                label=f"Features, heads and failures for {len(chosen)} model(s)",
                key="run",
                start_label="Run models",
                dataset=spec,
                models=chosen,
            )
            st.code(cli("run", spec, "--models", *chosen), language="bash")
        else:
            st.caption("Pick models or families to compute their features, linear heads and debug failures.")

st.header("Background jobs", divider="gray")
with guard("Listing jobs"):
    rows = [
        {
            "kind": j.kind,
            "state": s["state"],
            "progress": f"{s.get('done', 0)}/{s.get('total', 0)}",
            "message": s.get("error") or s.get("message", ""),
            "id": j.id,
        }
        for j, s in jobs.list_jobs()[:50]
    ]
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    else:
        st.caption("No jobs have run yet.")
