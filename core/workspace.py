"""Datasets named by JSON-able specs ({"name": ..., **options}), opened once per process."""

from __future__ import annotations

from core import store
from core.datasets.base import ImageDataset

DEFAULT_WORLD = {"name": "scenes-mnist", "size": "default", "seed": 0}
_OPEN: dict[str, ImageDataset] = {}


def open_dataset(spec: dict | str) -> ImageDataset:
    from core.datasets import create_dataset

    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    k = store.stable_json(spec)
    if k not in _OPEN:
        name = spec.pop("name")
        _OPEN[k] = create_dataset(name, **spec)
    return _OPEN[k]
