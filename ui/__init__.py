"""Shared pieces of the Streamlit app: escaping, error display, session state, cached loaders, job panels, galleries.

Pages import from here so that they stay thin (read widgets, call core, render). Nothing here implements an
algorithm or reads artifact files: it calls core (wrapped in ``st.cache_*``) and starts core's background jobs.
"""
