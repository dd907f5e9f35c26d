"""Backgrounds: per class the proposed list of uncommon values and its source, edited in place, versioned,
imported/exported; then which values the failures show (CLIP assignment) as failure modes with examples."""

import pandas as pd
import streamlit as st

from core.describe.curation import CuratedLists, empty_list_warning
from core.describe.proposals import BUILTIN, LLMConfig
from ui import data
from ui.feedback import guard
from ui.gallery import grid
from ui.jobs import job_panel
from ui.nav import within_app
from ui.state import dataset_spec
from ui.text import md

within_app()

st.title("Backgrounds")
spec = dataset_spec()
ds = data.require_dataset(spec)

c1, c2, c3 = st.columns([1, 1, 2])
attribute = c1.selectbox("Attribute", list(BUILTIN), key="bg-attr")
proposer = c2.selectbox(
    "Proposer",
    ["offline", "llm"],
    key="bg-proposer",
    help="llm asks an OpenAI(-compatible) chat model as in the paper (set OPENAI_API_KEY before "
    "starting the app); offline ranks a built-in vocabulary and says so.",
)
l1, l2 = st.columns([2, 1])
base_url = l1.text_input(
    "LLM base URL",
    key="bg-base-url",
    placeholder="default: OpenAI (or $OPENAI_BASE_URL)",
    help="An OpenAI-compatible server, e.g. http://localhost:8000/v1. Used by the llm proposer only.",
).strip()
llm_model = l2.text_input(
    "LLM model", key="bg-llm-model", placeholder=f"default: {LLMConfig.model}", help="Used by the llm proposer only."
).strip()
lists = CuratedLists(ds, attribute)
if made := data.made_by(ds, ("lists", lists.current_version_id())):
    st.caption(md(made))

with c3:
    st.caption(f"Propose uncommon {md(attribute)} values for every class. Lists you have edited are kept as they are.")
    if proposer == "offline":
        kw = {}  # core picks the vocabulary and list size the dataset calls for
        if base_url or llm_model:
            st.warning(
                "The LLM base URL and model apply to the llm proposer only; the offline proposer ignores them. "
                "Choose the llm proposer, or clear the fields.",
                icon=":material/info:",
            )
    else:
        kw = {k: v for k, v in (("base_url", base_url), ("model", llm_model)) if v}
    status = job_panel(
        "propose_values",
        label=f"Propose {attribute} values ({proposer})",
        key="propose",
        start_label="Propose values",
        dataset=spec,
        attribute=attribute,
        proposer=proposer,
        **kw,
    )
    if (status.get("result") or {}).get("notice"):
        st.caption(md(status["result"]["notice"]))

current = lists.as_dict()
if not current:
    st.info(
        "No lists yet: propose values above, import a CSV/JSON file below, or add values to a class by hand.",
        icon=":material/list:",
    )

st.header("Lists", divider="gray")
empty = empty_list_warning(current, ds.classes) if current else None
if empty:
    st.warning(md(empty), icon=":material/warning:")
overview = pd.DataFrame(
    [
        {
            "class": c,
            "values": len(current.get(c, [])),
            "source": (lists.get(c).source if c in current else ""),
            "edited": (lists.get(c).edited if c in current else False),
            "list": ", ".join(current.get(c, [])),
        }
        for c in ds.classes
    ]
)
st.dataframe(overview, hide_index=True, height=min(400, 38 + 35 * len(overview)))

cls = st.selectbox("Edit the list of class", ds.classes, key="bg-class")
cur = lists.get(cls)
values = list(cur.values) if cur else []
with guard("Editing the list"):
    if cur:
        st.caption(
            f"Version {cur.version} · source {md(cur.source)} · "
            + ("edited by a person" if cur.edited else "as proposed")
        )
    e1, e2 = st.columns(2)
    with e1.form("bg-add", clear_on_submit=True, border=False):
        new = st.text_input("Add a value", placeholder="e.g. desert", key="bg-new")
        if st.form_submit_button("Add", icon=":material/add:") and new.strip():
            lists.add(cls, new)
            st.rerun()
    with e2.form("bg-rename", border=False):
        old = st.selectbox("Rename", values, key="bg-old", disabled=not values)
        renamed = st.text_input("to", key="bg-renamed")
        if st.form_submit_button("Rename", disabled=not values) and renamed.strip():
            lists.rename(cls, old, renamed)
            st.rerun()
    e3, e4 = st.columns(2)
    with e3.form("bg-remove", border=False):
        gone = st.multiselect("Remove values", values, key="bg-gone")
        if st.form_submit_button("Remove", disabled=not values) and gone:
            for v in gone:
                lists.remove(cls, v)
            st.rerun()
    with e4.form("bg-merge", border=False):
        merged = st.multiselect("Merge values", values, key="bg-merged")
        into = st.selectbox("into", values, key="bg-into", disabled=not values)
        if st.form_submit_button("Merge", disabled=len(values) < 2) and merged:
            lists.merge(cls, [v for v in merged if v != into], into)
            st.rerun()
    if values:
        st.write("Current list: " + " · ".join(md(v) for v in values))
    if cur and len(cur.history) > 1:
        with st.expander(f"History ({len(cur.history)} versions): restore one"):
            hist = pd.DataFrame(
                [
                    {
                        "version": v.version,
                        "action": v.action,
                        "who": v.who,
                        "when": v.when,
                        "values": ", ".join(v.values),
                    }
                    for v in reversed(cur.history)
                ]
            )
            st.dataframe(hist, hide_index=True)
            back = st.selectbox("Version", [v.version for v in cur.history[:-1]], key="bg-version")
            if st.button("Restore this version", key="bg-restore"):
                lists.restore(cls, int(back))
                st.rerun()

st.header("Import and export", divider="gray")
with guard("Importing or exporting lists"):
    x1, x2 = st.columns(2)
    with x1:
        csv_bytes = lists.export_csv_bytes() if current else b""
        json_bytes = lists.export_json_bytes() if current else b""
        st.download_button(
            "Export CSV",
            csv_bytes,
            file_name=f"{attribute}-lists.csv",
            mime="text/csv",
            disabled=not current,
            icon=":material/download:",
        )
        st.download_button(
            "Export JSON",
            json_bytes,
            file_name=f"{attribute}-lists.json",
            mime="application/json",
            disabled=not current,
            icon=":material/download:",
        )
    with x2:
        imported = st.session_state.pop("bg-imported", None)
        if imported:
            st.success("Imported: " + ", ".join(f"{md(c)} {md(r)}" for c, r in imported.items()))
        up = st.file_uploader("Import a CSV (class_name,value) or JSON file", type=["csv", "json"], key="bg-upload")
        if up is not None:
            preview = lists.import_bytes(up.getvalue(), up.name, dry_run=True)
            st.caption(f"What importing {md(up.name)} would change (nothing is written until you click Import):")
            st.dataframe(
                pd.DataFrame({"class": list(preview), "import would": list(preview.values())}),
                hide_index=True,
            )
            changes = any(r != "unchanged" for r in preview.values())
            if st.button("Import", key="bg-import", type="primary", disabled=not changes):
                st.session_state["bg-imported"] = lists.import_bytes(up.getvalue(), up.name)
                st.rerun()

st.header("Failure modes", divider="gray")
runs = data.latest_runs(ds)
if not runs:
    data.empty_state("Failure modes come from a model's failures: run a model on the Setup page first.")
    st.stop()
m1, m2 = st.columns([2, 1])
model = m1.selectbox("Failures of model", data.model_order(ds, runs), key="bg-model")
k = int(m2.number_input("k: modes per class", 1, 20, 3, key="bg-k"))
with guard("Assigning failures to values"):
    job_panel(
        "textualize",
        label=f"CLIP names the {attribute} of each debug_seed failure of {model}",
        key="assign",
        start_label="Assign failures",
        dataset=spec,
        model=model,
        attribute=attribute,
        k=k,
    )
    if empty:
        st.warning(md(empty), icon=":material/warning:")
    got = data.assignments(runs[model], attribute)
    if got is not None:
        assigned, prov = got
        if made := data.made_by(ds, ("assign", runs[model]["folder"])):
            st.caption(md(made))
        if prov.get("list_version") != lists.current_version_id():
            st.warning(
                "The lists changed since this assignment: assign again to use the edited lists.",
                icon=":material/update:",
            )
        modes = data.failure_modes(runs[model], attribute, k)
        st.caption(
            f"{len(assigned):,} debug_seed failures assigned · CLIP {md(prov.get('clip', ''))} · prompt "
            f"{md(prov.get('template', ''))}"
        )
        st.dataframe(modes.drop(columns=["example_ids"]), hide_index=True, height=min(400, 38 + 35 * len(modes)))
        if scored := data.discovery(ds, runs[model], attribute, k):
            st.caption(f"Scored against the world's ground truth — {md(scored)}")
        shown_cls = st.selectbox("Examples of the failure modes of class", ds.classes, key="bg-examples")
        for mode in modes[modes["class_name"] == shown_cls].itertuples():
            st.caption(
                f"**{md(mode.class_name)} · {md(mode.value)}** — {mode.count} failures "
                f"({mode.share:.0%} of the class's assigned failures)"
            )
            grid(
                [data.thumbnail(spec, i) for i in list(mode.example_ids)[:6]],
                lambda img: st.image(img, width="stretch"),
                columns=6,
            )
