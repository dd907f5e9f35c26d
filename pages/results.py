"""Results: waiting for its core module."""
import streamlit as st

st.title("Results")
st.info("This page arrives with its core module.")
