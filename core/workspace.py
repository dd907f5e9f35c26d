"""Datasets named by JSON-able specs ({"name": ..., **options}), opened once per process."""

from __future__ import annotations

from core import store
from core.datasets.base import ImageDataset

DEFAULT_WORLD = {"name": "scenes-mnist", "size": "default", "seed": 0}
_OPEN: dict[str, ImageDataset] = {}


def canonical_spec(spec: dict | str) -> dict:
    """The spec with the offline world's defaults filled in, so the command line and the app name the same
    dataset the same way (and so share its jobs, whose ids hash the spec)."""
    from core.datasets import is_offline_world

    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    return {**DEFAULT_WORLD, **spec} if is_offline_world(spec) else spec


def open_dataset(spec: dict | str) -> ImageDataset:
    from core.datasets import create_dataset

    spec = canonical_spec(spec)
    k = store.stable_json(spec)
    if k not in _OPEN:
        name = spec.pop("name")
        _OPEN[k] = create_dataset(name, **spec)
    return _OPEN[k]
