"""The app's navigation: its pages in the paper's steps, and the hand-over of a page that Streamlit ran on its own.

Streamlit runs the entry script (app.py) for every request once ``st.navigation`` has been called in the server
process. Before that (a bookmarked deep link such as ``/overlap`` is the first request a freshly started server
gets) it still knows the ``pages/`` folder from its older multipage scheme and runs ``pages/overlap.py`` by itself:
app.py's layout, sidebar and grouped navigation are missing. ``within_app`` notices that and hands the request to
app.py, which then renders the same page (pages are matched by their URL path).
"""

from __future__ import annotations

import streamlit as st

_APP_RAN = "backdrop-app-navigation"


SECTIONS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "Prepare": (("pages/setup.py", "Setup", ":material/settings:"),),
    "Find": (
        ("pages/failures.py", "Failures", ":material/broken_image:"),
        ("pages/overlap.py", "Overlap", ":material/join_inner:"),
    ),
    "Describe": (("pages/backgrounds.py", "Backgrounds", ":material/landscape:"),),
    "Fix": (
        ("pages/generate.py", "Generate", ":material/auto_awesome:"),
        ("pages/results.py", "Results", ":material/insights:"),
    ),
}
"""The pages, grouped by the paper's steps: (file, title, icon); the first page is the default."""
PAGE_FILES: tuple[str, ...] = tuple(path for pages in SECTIONS.values() for path, _, _ in pages)
"""Every page file, in navigation order (tests and benchmarks render each)."""


def app_pages() -> dict[str, list]:
    """The pages as ``st.Page`` objects, grouped by the paper's steps; URL paths are the file names (``/overlap``)."""
    return {
        section: [st.Page(path, title=title, icon=icon, default=path == PAGE_FILES[0]) for path, title, icon in pages]
        for section, pages in SECTIONS.items()
    }


def navigation():
    """app.py's ``st.navigation``; marks the session so its pages know they run inside the app."""
    page = st.navigation(app_pages())
    st.session_state[_APP_RAN] = True
    return page


def within_app() -> None:
    """First call of every page: when Streamlit ran the page without app.py, switch it to app.py's navigation
    (``st.navigation`` is what turns the ``pages/`` folder scheme off) and rerun, so app.py renders this page."""
    if st.session_state.get(_APP_RAN):
        return
    st.navigation(app_pages(), position="hidden")
    st.session_state[_APP_RAN] = True
    st.rerun()
