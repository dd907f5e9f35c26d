"""Generate: images for each class's top-k failure modes ("A photo of {class} {value}") as a background job,
the Random_debugging baseline beside them, and a gallery per mode where images can be deleted."""
import re

import pandas as pd
import streamlit as st

from core.config import DebugConfig
from core.generate import GENERATORS, GeneratedSet, list_sets, mode_requests
from ui import data
from ui.feedback import guard
from ui.gallery import grid
from ui.jobs import job_panel
from ui.state import dataset_spec
from ui.text import md

DEFAULTS = DebugConfig()
PER_MODE_SHOWN = 12

st.title("Generate")
spec = dataset_spec()
ds = data.require_dataset(spec)
runs = data.require_runs(ds)
world = spec.get("name") == "scenes-mnist"

c1, c2 = st.columns(2)
model = c1.selectbox("Failures of model", sorted(runs), key="gen-model")
attribute = c2.selectbox("Attribute", ["background", "colour"], key="gen-attr")
s1, s2, s3, s4 = st.columns(4)
k = s1.number_input("k: failure modes per class", 1, 20, DEFAULTS.k_modes, key="gen-k")
per_mode = s2.number_input("Images per mode", 1, 500, DEFAULTS.images_per_mode, key="gen-n")
s3.number_input("λ (weight of generated images when retraining)", 0.0, 10.0, DEFAULTS.lam, step=0.1, key="gen-lam",
                help="Used by the retraining step on the Results page; stored with the run.")
names = sorted(GENERATORS)
generator = s4.selectbox("Generator", names, index=names.index("world") if world and "world" in names else 0,
                         key="gen-generator")
gen_kwargs = {k_: v for k_, v in spec.items() if k_ != "name"} if generator == "world" else {}
if generator == "diffusers":
    model_id = st.text_input("Diffusers model (hub id or local folder)", key="gen-model-id",
                             placeholder="stabilityai/stable-diffusion-2-1-base or /models/sd")
    if model_id.strip():
        gen_kwargs["model_id"] = model_id.strip()

modes = None
with guard("Finding the failure modes"):
    modes = data.failure_modes(runs[model], attribute, int(k))
if modes is None or modes.empty:
    st.info("No failure modes yet: assign the failures to values on the Backgrounds page first; the top-k values "
            "per class become the modes generated here.", icon=":material/landscape:")
    st.page_link("pages/backgrounds.py", label="Go to Backgrounds", icon=":material/landscape:")
    st.stop()

with guard("Preparing the requests"):
    requests = mode_requests(modes, int(per_mode), attribute=attribute, k=int(k))
    with st.expander(f"Preview the {len(requests)} prompts ({len(requests) * int(per_mode):,} images)"):
        st.dataframe(pd.DataFrame([{"class": r.class_name, "value": r.value, "prompt": r.prompt,
                                    "images": r.n_images} for r in requests]), hide_index=True)
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{ds.name}-{ds.key[:8]}-{model}-{attribute}-{generator}")[:90]
    job_args = dict(generator=generator, generator_kwargs=gen_kwargs, attribute=attribute,
                    modes=[{"class_name": r.class_name, "label": r.label, "value": r.value} for r in requests],
                    images_per_mode=int(per_mode))
    g1, g2 = st.columns(2)
    with g1:
        st.subheader("Failure modes")
        job_panel("generate_images", label="Generate images for the failure modes", key="gen",
                  start_label="Generate", set_name=base, **job_args)
    with g2:
        st.subheader("Random_debugging baseline")
        job_panel("generate_images", label="Same number of images per class, class name only", key="gen-random",
                  start_label="Generate baseline", set_name=f"{base}-random", baseline=True, **job_args)

if base in list_sets():
    st.header("Generated images", divider="gray")
    with guard("Showing the generated images"):
        gs = GeneratedSet(base)
        counts = gs.counts()
        st.dataframe(counts, hide_index=True)
        groups = gs.groups()
        for (cls, value), ids in groups.items():
            with st.expander(f"{md(cls)} · {md(value)} — {len(ids)} images"):
                shown = ids[:PER_MODE_SHOWN]

                def cell(image_id):
                    st.image(str(gs.path(image_id)), width="stretch")
                    st.checkbox("delete", key=f"del-{image_id}")

                grid(shown, cell, columns=6)
                marked = [i for i in shown if st.session_state.get(f"del-{i}")]
                if st.button(f"Delete {len(marked)} marked", key=f"del-btn-{cls}-{value}", disabled=not marked):
                    gs.delete(marked)
                    st.rerun()
