"""Paginated image grids: a page of images with escaped Markdown captions, responsive at any collection size."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st


def page_slice(n_items: int, per_page: int, key: str) -> slice:
    """A page chooser (shown only when there is more than one page); returns the rows of the current page."""
    n_pages = max(1, -(-n_items // per_page))
    page = 1
    if n_pages > 1:
        page = st.pagination(n_pages, key=key, max_visible_pages=9)
        page = min(max(1, int(page or 1)), n_pages)
    start = (page - 1) * per_page
    return slice(start, min(n_items, start + per_page))


def grid(items: Sequence[Any], render: Callable[[Any], None], columns: int = 6) -> None:
    """Lay ``items`` out row by row in ``columns`` columns; ``render(item)`` draws one cell."""
    for row in range(0, len(items), columns):
        cols = st.columns(columns)
        for col, item in zip(cols, items[row : row + columns]):
            with col:
                render(item)
