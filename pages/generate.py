"""Generate: waiting for its core module."""
import streamlit as st

st.title("Generate")
st.info("This page arrives with its core module.")
