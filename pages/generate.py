"""Generate: images for each class's top-k failure modes ("A photo of {class} {value}") and the Random_debugging
baseline as one background job (optionally CLIP-filtered), a preview of the prompts, and a gallery per mode where
images can be deleted and images the filter dropped restored."""

from dataclasses import replace

import pandas as pd
import streamlit as st

from core.config import FilterConfig, GeneratorConfig
from core.fix.experiments import default_generator_name
from core.fix.generators import GENERATORS, list_sets, mode_requests
from core.settings import load_settings, save_settings
from ui import data
from ui.feedback import guard
from ui.gallery import grid
from ui.jobs import job_panel
from ui.nav import within_app
from ui.state import dataset_spec
from ui.text import md

within_app()

PER_MODE_SHOWN = 12
DIFFUSION = ("diffusers", "sd-turbo")

st.title("Generate")
spec = dataset_spec()
ds = data.require_dataset(spec)
runs = data.require_runs(ds)
saved = load_settings(spec)  # what the user chose last time, on this page or another (core.settings)
attributes = ["background", "colour"]

c1, c2 = st.columns(2)
model = c1.selectbox("Failure modes of model", data.model_order(ds, runs), key="gen-model")
attribute = c2.selectbox(
    "Attribute",
    attributes,
    index=attributes.index(saved.attribute) if saved.attribute in attributes else 0,
    key="gen-attr",
)
s1, s2, s3, s4, s5 = st.columns(5)
k = int(s1.number_input("k: failure modes per class", 1, 20, saved.debug.k_modes, key="gen-k"))
per_mode = int(s2.number_input("Images per mode", 1, 500, saved.debug.images_per_mode, key="gen-n"))
lam = s3.number_input(
    "λ: weight of generated images in retraining",
    0.0,
    1.0,
    float(saved.debug.lam),
    step=0.05,
    key="gen-lam",
    help="The Results page retrains with L(original) + λ·L(generated) using this value.",
)
seed = int(
    s4.number_input(
        "Seed",
        0,
        2**31 - 1,
        saved.debug.seed,
        key="gen-seed",
        help="Another seed makes another set of images; the Results page retrains with the set of this seed.",
    )
)
names = sorted(GENERATORS)
default_name = saved.generator.name or default_generator_name(ds)
generator = s5.selectbox(
    "Generator",
    names,
    index=names.index(default_name) if default_name in names else 0,
    key="gen-generator",
    help="world: the offline world's renderer; diffusers / sd-turbo: a Stable Diffusion pipeline (hub id or local "
    "folder); retrieval: the best CLIP matches from a folder of your images; edits: this model's own failures, "
    "edited onto each failure mode's value.",
)
same_gen = saved.generator.name == generator
model_id, options = None, {}
if generator in DIFFUSION:
    d1, d2 = st.columns([3, 1])
    model_id = (
        d1.text_input(
            "Diffusers model (hub id or local folder)",
            value=(saved.generator.model_id or "") if same_gen else "",
            key="gen-model-id",
            placeholder="runwayml/stable-diffusion-v1-5 or /models/sd15",
        ).strip()
        or None
    )
    n_steps = int(
        d2.number_input(
            "Diffusion steps (0: the model's own)",
            0,
            500,
            int(saved.generator.options.get("num_inference_steps", 0)) if same_gen else 0,
            key="gen-steps",
        )
    )
    options = {"num_inference_steps": n_steps} if n_steps else {}
elif generator == "retrieval":
    pool = st.text_input(
        "Retrieve from a folder (unlabelled images; searched with CLIP, indexed once)",
        value=str(saved.generator.options.get("pool", "")) if same_gen else "",
        key="gen-pool",
        placeholder="/data/my_photos",
        help="Each mode gets the folder's best CLIP matches for its prompt; never one of the model's debug or "
        "test images, never the same image for two modes while unused ones remain.",
    ).strip()
    if not pool:
        st.info("Give the folder of images to retrieve from.", icon=":material/folder_open:")
        st.stop()
    options = {"pool": pool}
elif generator == "edits":
    st.caption(f"Edits the debug_seed failures of {md(model)}: the same objects, on each failure mode's value.")

base_filter = saved.clip_filter or FilterConfig()
clip_filter = None
if st.toggle(
    "Filter with CLIP",
    value=saved.clip_filter is not None,
    key="gen-filter",
    help="CLIP scores each image for its class and its value; images below the thresholds are dropped (kept "
    "greyed below, restorable) and Results retrains without them.",
):
    f1, f2, f3 = st.columns(3)
    min_class = f1.number_input(
        "Keep when the class probability is at least", 0.0, 1.0, base_filter.min_class_prob, 0.05, key="gen-f-class"
    )
    min_value = f2.number_input(
        "… and the value probability at least", 0.0, 1.0, base_filter.min_value_prob, 0.05, key="gen-f-value"
    )
    keep = f3.number_input(
        "Or keep this top share of each mode (0: use the thresholds)",
        0.0,
        1.0,
        float(base_filter.keep_fraction or 0.0),
        0.05,
        key="gen-f-keep",
    )
    clip_filter = replace(
        base_filter, min_class_prob=float(min_class), min_value_prob=float(min_value), keep_fraction=keep or None
    )
settings = save_settings(
    spec,
    replace(
        saved,
        attribute=attribute,
        generator=GeneratorConfig(generator, model_id, options),
        debug=replace(saved.debug, k_modes=k, images_per_mode=per_mode, lam=float(lam), seed=seed),
        clip_filter=clip_filter,
    ),
)

modes = None
with guard("Reading the failure modes"):
    modes = data.failure_modes(runs[model], attribute, k)
if modes is None or modes.empty:
    st.info(
        "No failure modes yet for this model: name the values its failures show on the Backgrounds page "
        "(CLIP assignment); the top-k values per class become the modes generated here.",
        icon=":material/landscape:",
    )
    st.page_link("pages/backgrounds.py", label="Go to Backgrounds", icon=":material/landscape:")
    st.stop()

with guard("Preparing the generation"):
    requests = mode_requests(modes, per_mode, attribute=attribute, template=settings.debug.prompt_template, k=k)
    with st.expander(
        f"Preview the {len(requests)} prompts ({len(requests) * per_mode:,} images, and as many for Random_debugging)",
        expanded=True,
    ):
        st.dataframe(
            pd.DataFrame(
                [{"class": r.class_name, "value": r.value, "prompt": r.prompt, "images": r.n_images} for r in requests]
            ),
            hide_index=True,
            height=min(300, 38 + 35 * len(requests)),
        )
    chosen = [{"class_name": r.class_name, "label": int(r.label), "value": r.value} for r in requests]
    job_panel(
        "generate_modes",
        label="Generate images for the failure modes and the baseline",
        key="gen",
        start_label="Generate",
        dataset=spec,
        modes=chosen,
        model=model,
        **settings.generation_args(),
    )

with guard("Showing the generated images"):
    ours_set = data.generated_set_name(spec, settings.generator, attribute, seed, model)
    if ours_set in list_sets():
        st.header("Generated images", divider="gray")
        if made := data.made_by(ds, ("generated", ours_set)):
            st.caption(md(made))
        gs = data.generated_set(ours_set)
        st.dataframe(gs.counts(), hide_index=True)
        filtered = data.filter_report(ours_set)
        if filtered["scored"].sum():
            st.caption(
                f"The CLIP filter dropped {int(filtered['dropped'].sum())} of {int(filtered['scored'].sum())} "
                "images; per mode:"
            )
            st.dataframe(filtered, hide_index=True)
        groups = gs.groups()
        classes_made = [c for c in ds.classes if any(g[0] == c for g in groups)]
        shown_cls = st.selectbox("Show the images of class", classes_made, key="gen-show") if classes_made else None
        for (cls, value), ids in groups.items():
            if cls != shown_cls:
                continue
            st.caption(f"**{md(cls)} · {md(value)}** — {len(ids)} images")
            shown = ids[:PER_MODE_SHOWN]

            def cell(image_id):
                st.image(str(gs.path(image_id)), width="stretch")
                st.checkbox("delete", key=f"del-{image_id}")

            grid(shown, cell, columns=6)
            marked = [i for i in shown if st.session_state.get(f"del-{i}")]
            if st.button(
                f"Delete {len(marked)} marked",
                key=f"del-btn-{cls}-{value}",
                disabled=not marked,
                help="Deleted images are moved to the set's trash and never generated again.",
            ):
                gs.delete(marked)
                st.rerun()
        dropped = data.dropped_by_filter(ours_set)
        dropped = dropped[dropped["class_name"] == shown_cls]
        if len(dropped):
            st.caption(f"Dropped by the CLIP filter ({len(dropped)}; kept in the set's trash, not used for retraining)")

            def dropped_cell(image_id):
                row = dropped.set_index("image_id").loc[image_id]
                st.image(data.greyed(ours_set, image_id), width="stretch", caption=row["reason"])
                if st.button("restore", key=f"restore-{image_id}"):
                    gs.restore([image_id])
                    st.rerun()

            grid(list(dropped["image_id"])[:PER_MODE_SHOWN], dropped_cell, columns=6)
