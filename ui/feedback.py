"""Errors shown as readable messages with what to do, never as tracebacks (tracebacks go to the server log)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st

from core.errors import BackdropError
from ui.text import md

log = logging.getLogger("backdrop.app")


def error_message(exc: BaseException, action: str = "") -> str:
    """One readable line for ``exc``; Backdrop errors already say what to do."""
    if isinstance(exc, BackdropError):
        return str(exc)
    what = f"{action} failed" if action else "Something went wrong"
    return (
        f"{what}: {type(exc).__name__}: {exc}. This is unexpected; the full details are in the app's "
        "console log. Try again, and report it if it persists."
    )


def show_error(exc: BaseException, action: str = "") -> None:
    if not isinstance(exc, BackdropError):
        log.exception("%s", action or "page error", exc_info=exc)
    st.error(md(error_message(exc, action)), icon=":material/error:")


@contextmanager
def guard(action: str = "") -> Iterator[None]:
    """Run a block; any exception becomes a readable st.error. Streamlit's stop/rerun signals pass through."""
    try:
        yield
    except Exception as e:
        show_error(e, action)
