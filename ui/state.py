"""Which dataset the app works on, kept in the session (the offline world unless the user picks another).
Settings that cross pages are not kept here but in core.settings (persisted per dataset).

``BACKDROP_APP_DATASET`` (a JSON spec) changes the default, e.g. ``{"name": "scenes-mnist", "size": "tiny"}``
for demos and the browser test.
"""

from __future__ import annotations

import json
import os

import streamlit as st

from core.errors import InvalidInputError
from core.workspace import DEFAULT_WORLD, canonical_spec

_KEY = "backdrop_dataset_spec"
TINY_WORLD = {"name": "scenes-mnist", "size": "tiny", "seed": 0}


def default_spec() -> dict:
    raw = os.environ.get("BACKDROP_APP_DATASET")
    if raw:
        try:
            return parse_spec(raw)
        except InvalidInputError:
            pass
    return dict(DEFAULT_WORLD)


def parse_spec(text: str) -> dict:
    """A dataset spec from JSON text; says what a valid one looks like when it is not."""
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidInputError(
            f"The dataset spec is not valid JSON ({e.msg}). Write it like "
            '{"name": "cifar10", "root": "/data/cifar10"}.'
        ) from None
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise InvalidInputError(
            'A dataset spec is a JSON object with a "name", e.g. {"name": "cifar10", "root": "/data"}.'
        )
    return spec


def dataset_spec() -> dict:
    if _KEY not in st.session_state:
        st.session_state[_KEY] = default_spec()
    return dict(st.session_state[_KEY])


def set_dataset_spec(spec: dict) -> None:
    st.session_state[_KEY] = canonical_spec(spec)


def spec_label(spec: dict) -> str:
    if spec.get("name") == "scenes-mnist":
        return f"Offline world ({spec.get('size', 'default')}, seed {spec.get('seed', 0)})"
    rest = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "name")
    return f"{spec['name']} ({rest})" if rest else str(spec["name"])
