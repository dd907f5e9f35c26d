"""The sidebar every page shares: which dataset the app works on, and the background jobs running now."""

from __future__ import annotations

import json

import streamlit as st

from core.errors import InvalidInputError
from core.workspace import DEFAULT_WORLD
from ui.jobs import any_running
from ui.state import TINY_WORLD, dataset_spec, parse_spec, set_dataset_spec, spec_label
from ui.text import md

_CHOICES = {"Offline world": DEFAULT_WORLD, "Offline world (tiny, for a quick look)": TINY_WORLD}
_OTHER = "Another dataset (JSON spec)"


def sidebar() -> None:
    with st.sidebar:
        spec = dataset_spec()
        labels = list(_CHOICES) + [_OTHER]
        current = next((k for k, v in _CHOICES.items() if v == spec), _OTHER)
        choice = st.selectbox("Dataset", labels, index=labels.index(current), key="sidebar-dataset")
        if choice != _OTHER and _CHOICES[choice] != spec:
            set_dataset_spec(_CHOICES[choice])
            st.rerun()
        if choice == _OTHER:
            text = st.text_input(
                "Dataset spec",
                value="" if current != _OTHER else json.dumps(spec),
                placeholder='{"name": "cifar10", "root": "/data/cifar10"}',
                help="Registered names: scenes-mnist, scenes-mnist-open, cifar10, cifar100, imagenet, imagefolder.",
            )
            if st.button("Use this dataset", disabled=not text.strip()):
                try:
                    set_dataset_spec(parse_spec(text))
                    st.rerun()
                except InvalidInputError as e:
                    st.error(md(str(e)))
        st.caption(f"Working on: {md(spec_label(dataset_spec()))}")
        running = any_running()
        if running:
            st.caption(
                f":material/sync: {len(running)} background job(s) running: "
                + ", ".join(md(j.kind) for j, _ in running[:5])
            )
