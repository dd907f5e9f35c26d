"""Dataset registry: ``create_dataset(name, **kw)`` builds any registered :class:`ImageDataset`.

Registered: ``scenes-mnist`` (the offline world), ``cifar10``, ``cifar100`` (torchvision's on-disk format),
``imagenet`` (ImageFolder layout with human class names) and ``imagefolder`` (any folder of class folders).
"""
from __future__ import annotations

from core.datasets.base import ImageDataset, TorchView
from core.datasets.folders import ImageFolderDataset, ImageNet
from core.datasets.torchvision_sets import Cifar10, Cifar100
from core.datasets.world import ScenesMnist
from core.registry import Registry

DATASETS: Registry[ImageDataset] = Registry("dataset")
DATASETS.add("scenes-mnist", ScenesMnist, offline=True, ground_truth=True)
DATASETS.add("cifar10", Cifar10, offline=False, ground_truth=False)
DATASETS.add("cifar100", Cifar100, offline=False, ground_truth=False)
DATASETS.add("imagenet", ImageNet, offline=False, ground_truth=False)
DATASETS.add("imagefolder", ImageFolderDataset, offline=False, ground_truth=False)


def create_dataset(name: str, **kw) -> ImageDataset:
    """Build the dataset registered as ``name``; an unknown name raises UnknownNameError with the closest."""
    return DATASETS.create(name, **kw)


def list_datasets() -> list[str]:
    return sorted(DATASETS)


__all__ = ["DATASETS", "ImageDataset", "TorchView", "create_dataset", "list_datasets"]
