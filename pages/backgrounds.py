"""Backgrounds: waiting for its core module."""
import streamlit as st

st.title("Backgrounds")
st.info("This page arrives with its core module.")
