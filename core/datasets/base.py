"""What every dataset provides: named pools of images, each an index table, plus a loader by image id.

Pools are the dataset's native partitions: ``train`` (heads train on a per-class subset of it) and ``val``
(split into debug and test). The offline world adds ``backbone_train`` (the biased split its backbones learn
from). Index tables are pandas DataFrames with at least ``image_id`` (str, unique within the dataset) and
``label`` (int index into ``classes``); datasets with ground truth add attribute columns such as
``background`` and ``colour``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import pandas as pd
import torch
from PIL import Image

from core import store


class ImageDataset(ABC):
    name: str = ""
    classes: list[str] = []
    attributes: tuple[str, ...] = ()  # ground-truth attribute columns present in index tables
    offline_world: bool = False  # renders any class on any value and knows each image's ground truth

    @abstractmethod
    def pools(self) -> list[str]:
        """Native pool names, e.g. ["train", "val"]."""

    @abstractmethod
    def index(self, pool: str) -> pd.DataFrame:
        """Index table of a pool: image_id, label, [attribute columns]. Stable across runs."""

    @abstractmethod
    def load(self, image_id: str) -> Image.Image:
        """The image as RGB PIL."""

    @property
    def key(self) -> str:
        """Identifies the dataset's content (name, options, files) for cache keys."""
        return store.make_key(self.name, self.classes)

    def manifest_hash(self, df: pd.DataFrame) -> str:
        return store.make_key(self.key, list(df["image_id"]), list(map(int, df["label"])))


class TorchView(torch.utils.data.Dataset):
    """A torch dataset over rows of an index table: item -> (transform(image), label)."""

    def __init__(self, dataset: ImageDataset, df: pd.DataFrame, transform: Callable | None = None):
        self.dataset, self.ids, self.labels, self.transform = (
            dataset,
            list(df["image_id"]),
            list(df["label"]),
            transform,
        )

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        img = self.dataset.load(self.ids[i])
        return (self.transform(img) if self.transform else img), int(self.labels[i])
