"""Driving the Streamlit app in tests: AppTest on any page, with the tiny offline world as the app's dataset."""

from __future__ import annotations

import json
import os
from pathlib import Path

from streamlit.testing.v1 import AppTest

from ui.nav import PAGE_FILES

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "app.py"
TINY = {"name": "scenes-mnist", "size": "tiny", "seed": 0}
PAGES = list(PAGE_FILES)


def open_page(page: str = "pages/setup.py", spec: dict = TINY, timeout: float = 120) -> AppTest:
    """The app at ``page`` after a first full run, working on ``spec``."""
    os.environ["BACKDROP_APP_DATASET"] = json.dumps(spec)
    at = AppTest.from_file(str(APP), default_timeout=timeout)
    at.run()
    if page != "pages/setup.py":
        at.switch_page(page)
        at.run()
    return at


def problems(at: AppTest) -> list[str]:
    """Uncaught exceptions and error boxes on the page (a healthy page has none)."""
    return [e.value for e in at.exception] + [e.value for e in at.error]


def texts(at: AppTest) -> str:
    """All the text a reader sees: markdown, captions, info/success/warning boxes, metrics, subheaders."""
    parts = []
    for kind in ("markdown", "caption", "info", "success", "warning", "error", "subheader", "header", "title"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [f"{m.label} {m.value}" for m in at.metric]
    return "\n".join(parts)
