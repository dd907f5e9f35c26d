"""Backdrop's Streamlit app: page navigation and the shared sidebar only; every page lives in pages/ and calls core."""

import streamlit as st

from ui.sidebar import sidebar

st.set_page_config(page_title="Backdrop", page_icon=":material/image_search:", layout="wide")

PAGES = {
    "Prepare": [st.Page("pages/setup.py", title="Setup", icon=":material/settings:", default=True)],
    "Find": [
        st.Page("pages/failures.py", title="Failures", icon=":material/broken_image:"),
        st.Page("pages/overlap.py", title="Overlap", icon=":material/join_inner:"),
    ],
    "Describe": [st.Page("pages/backgrounds.py", title="Backgrounds", icon=":material/landscape:")],
    "Fix": [
        st.Page("pages/generate.py", title="Generate", icon=":material/auto_awesome:"),
        st.Page("pages/results.py", title="Results", icon=":material/insights:"),
    ],
}

page = st.navigation(PAGES)
sidebar()
page.run()
