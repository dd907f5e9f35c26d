"""Datasets of the real tier (CIFAR-10/100, ImageNet, any image folder) and the one registry every dataset,
the offline world's included, is built through (``core.datasets.registry``)."""

from core.datasets.base import ImageDataset, TorchView
from core.datasets.registry import DATASETS, create_dataset, is_offline_world, list_datasets

__all__ = ["DATASETS", "ImageDataset", "TorchView", "create_dataset", "is_offline_world", "list_datasets"]
