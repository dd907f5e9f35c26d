"""The dataset registry: ``create_dataset(name, **kw)`` builds any registered :class:`ImageDataset`.

Registered: ``scenes-mnist`` and ``scenes-mnist-open`` (the offline worlds, ``core.world.dataset``), ``cifar10``,
``cifar100`` (torchvision's on-disk format), ``imagenet`` (ImageFolder layout with human class names) and
``imagefolder`` (any folder of class folders).
"""

from __future__ import annotations

from core.datasets.base import ImageDataset
from core.registry import Registry

DATASETS: Registry[ImageDataset] = Registry(
    "dataset", plugins=("core.world.dataset", "core.datasets.torchvision_sets", "core.datasets.folders")
)


def create_dataset(name: str, **kw) -> ImageDataset:
    """Build the dataset registered as ``name``; an unknown name raises UnknownNameError with the closest."""
    return DATASETS.create(name, **kw)


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def is_offline_world(dataset: ImageDataset | dict | str) -> bool:
    """Whether a dataset (or a spec naming one) is the offline world: it renders any class on any attribute
    value and knows every image's ground truth. The one place this question is answered."""
    if isinstance(dataset, ImageDataset):
        return dataset.offline_world
    name = dataset if isinstance(dataset, str) else dataset.get("name", "")
    return name in DATASETS and bool(DATASETS.entry(name).meta.get("offline_world"))
