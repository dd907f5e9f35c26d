"""Results: before/after accuracy of retraining with generated images, ours versus Random_debugging."""
import streamlit as st

from ui import data
from ui.state import dataset_spec

st.title("Results")
spec = dataset_spec()
ds = data.require_dataset(spec)
runs = data.require_runs(ds)
st.info("Retraining with generated images arrives with core's mitigation module.", icon=":material/hourglass:")
