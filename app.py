"""Backdrop's Streamlit app: page navigation and the shared sidebar only; every page lives in pages/ and calls core."""

import streamlit as st

from ui.nav import navigation
from ui.sidebar import sidebar

st.set_page_config(page_title="Backdrop", page_icon=":material/image_search:", layout="wide")

page = navigation()
sidebar()
page.run()
