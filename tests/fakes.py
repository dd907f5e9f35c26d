"""Small in-memory stand-ins for a dataset and a backbone, for testing the generic pipeline pieces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn

from core.datasets.base import ImageDataset
from core.models.base import Backbone


class ColourDataset(ImageDataset):
    """Class k is a flat image whose red channel is ~25*k, plus noise; enough for a linear head to learn."""

    name = "fake-colours"

    def __init__(self, n_per_class: int = 20, n_classes: int = 4, seed: int = 0):
        self.classes = [f"class{k}" for k in range(n_classes)]
        self.n_per_class, self.seed = n_per_class, seed
        rows = [
            (f"{pool}/{k}/{i}", k) for pool in ("train", "val") for k in range(n_classes) for i in range(n_per_class)
        ]
        self._df = pd.DataFrame(rows, columns=["image_id", "label"])
        self._df["pool"] = self._df["image_id"].str.split("/").str[0]
        self.loads = 0

    def pools(self):
        return ["train", "val"]

    def index(self, pool):
        return self._df[self._df["pool"] == pool].drop(columns="pool").reset_index(drop=True)

    def load(self, image_id):
        self.loads += 1
        _, k, i = image_id.split("/")
        rng = np.random.default_rng(int(k) * 1000 + int(i) + self.seed)
        arr = np.full((16, 16, 3), 128, np.uint8)
        arr[..., 0] = 25 * int(k) + rng.integers(0, 10)
        arr[..., 1] = rng.integers(0, 255)
        return Image.fromarray(arr)


def tiny_backbone(seed: int = 0, name: str = "fake-net") -> Backbone:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
    cfg = {
        "input_size": (3, 16, 16),
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "crop_mode": "center",
    }
    return Backbone(
        net, name=name, family="Fake", feature_dim=8, data_config=cfg, weights_id=f"random:{seed}", source="test"
    )
