"""Shared pieces of the Streamlit app: escaping, error display, session state, cached loaders, job panels, galleries.

Pages import from here so that they stay thin (read widgets, call core, render). Nothing here computes results;
it reads what core has cached and starts core's background jobs.
"""
