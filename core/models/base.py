"""A frozen feature extractor with the metadata caching and heads need.

Every model source (timm, open_clip, packaged weights, world-trained) returns a :class:`Backbone`:
``forward(x)`` maps a preprocessed batch (B, 3, H, W) to features (B, D). Preprocessing comes from the
model's own ``data_config`` (timm's resolve_model_data_config shape) and is part of every cache key.
"""

from __future__ import annotations

import torch
from torch import nn

from core import store


class Backbone(nn.Module):
    def __init__(
        self,
        net: nn.Module,
        *,
        name: str,
        family: str,
        feature_dim: int,
        data_config: dict,
        weights_id: str,
        source: str,
        forward_fn=None,
    ):
        super().__init__()
        self.net = net
        self.name = name  # registry name, e.g. "resnet18" or "world-resnet-s"
        self.family = family  # e.g. "ResNet", "EfficientNet", "CLIP"
        self.feature_dim = feature_dim
        self.data_config = dict(data_config)  # input_size, mean, std, interpolation, crop_pct, crop_mode
        self.weights_id = weights_id  # hash of the weights file, or "random:<seed>"
        self.source = source  # "timm", "open_clip", "packaged", "world"
        self._forward_fn = forward_fn
        # run in channels_last (NHWC) on CPU during extraction: set where benchmarks/features.py measured it
        # faster with equal features (core.find.features.forward_layout)
        self.channels_last = False
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._forward_fn(self.net, x) if self._forward_fn else self.net(x)
        return out.flatten(1).float()

    def transform(self):
        """PIL -> normalised tensor, built by timm from this model's data config."""
        from timm.data import create_transform

        cfg = {
            k: self.data_config[k]
            for k in ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
            if k in self.data_config
        }
        return create_transform(**cfg, is_training=False)

    @property
    def key(self) -> str:
        return store.make_key(self.name, self.weights_id, self.data_config, self.source)
