"""Escaping of user-controlled text (class names, LLM output, edited values) before Streamlit renders it."""

from __future__ import annotations

import re

from core.display import html_text  # noqa: F401  (one escaping for reports, notebooks and the app)

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=&])")


def md(text: object) -> str:
    """``text`` as literal Markdown: every Markdown/HTML metacharacter backslash-escaped, newlines kept as spaces."""
    s = " ".join(str(text).split())
    return _MD_SPECIAL.sub(r"\\\1", s)
