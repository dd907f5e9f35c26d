"""What every step shares: the dataset argument, and the typed results' JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from core.datasets.base import ImageDataset

DatasetLike = ImageDataset | dict | str


def open_ds(dataset: DatasetLike) -> ImageDataset:
    """An opened dataset from a spec (opened once per process) or the dataset itself."""
    from core.workspace import open_dataset

    return dataset if isinstance(dataset, ImageDataset) else open_dataset(dataset)


@dataclass
class StepResult:
    """Base of the step results: ``to_json()`` keeps the fields a job records (tables stay in memory)."""

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("json", True)}


def _in_memory(**kw: Any) -> Any:
    """A result field for callers in this process (tables, models), left out of ``to_json``."""
    return field(metadata={"json": False}, **kw)
