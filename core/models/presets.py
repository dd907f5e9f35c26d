"""The paper's 40 models (Table 5, data in ``presets.json``), registered and built from their real sources.

timm and open_clip presets go through those sources. torch.hub/URL presets (SwAV, MoCo v2, DINO ResNet-50)
name the checkpoint their hub entry would download; Backdrop never runs hub code: the checkpoint (from
torch.hub's cache, a download when online, or ``weights=<file>``) is loaded into a timm architecture, or for
SwAV's wide ResNets into one built here from torchvision's blocks.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from core.models.base import Backbone
from core.models.registry import MODELS

if TYPE_CHECKING:
    from torchvision.models.resnet import ResNet

PRESETS: dict[str, dict] = json.loads(Path(__file__).with_name("presets.json").read_text())["models"]
_DATA_KEYS = ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")


def _hub_how(spec: dict) -> str:
    hub = spec.get("hub")
    if spec["source"] == "torch.hub" and hub:
        return (
            f"torch.hub.load({hub['repo']!r}, {hub['entry']!r}) downloads that file; Backdrop never runs "
            "hub code and loads the file itself."
        )
    return ""


def swav_wide_resnet50(widen: int) -> ResNet:
    """SwAV's RN50wN: torchvision's ResNet-50 with every width, the stem's included, times ``widen``.

    (SwAV pads by 1 and then convolves with padding 2; that equals torchvision's padding 3.)
    """
    from torchvision.models.resnet import Bottleneck, ResNet

    with torch.device("meta"):  # the stock stem and stages are replaced below; don't allocate them
        net = ResNet(Bottleneck, [3, 4, 6, 3])
    w = 64 * widen
    net.inplanes, net.dilation = w, 1
    net.conv1, net.bn1 = nn.Conv2d(3, w, 7, 2, 3, bias=False), nn.BatchNorm2d(w)
    for i, (blocks, stride) in enumerate(zip((3, 4, 6, 3), (1, 2, 2, 2))):
        setattr(net, f"layer{i + 1}", net._make_layer(Bottleneck, w * 2**i, blocks, stride=stride))
    net.fc = nn.Linear(w * 8 * Bottleneck.expansion, 1000)
    return net


def _resnet_pooled(net: ResNet, x: torch.Tensor) -> torch.Tensor:
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
    return torch.flatten(net.avgpool(x), 1)


def _wide_backbone(
    name: str, spec: dict, *, pretrained: bool, weights: str | None, seed: int, device: str | None
) -> Backbone:
    from core.weights import fit_state_dict, load_state_dict, missing_weights, url_file, weights_id

    path = Path(weights) if weights is not None else None
    if path is None and pretrained:
        path = url_file(spec["url"])
        if path is None:
            raise missing_weights(name, [spec["url"]], _hub_how(spec))
    torch.manual_seed(seed)
    with torch.device(device) if device else nullcontext():
        net = swav_wide_resnet50(int(spec["arch"]["widen"]))
    if path is not None:
        fit_state_dict(
            net,
            load_state_dict(path),
            source=path.name,
            ignore=tuple(spec.get("ignore", ())),
            classifier=("fc.weight", "fc.bias"),
        )
    return Backbone(
        net,
        name=name,
        family=spec["family"],
        feature_dim=net.fc.in_features,
        data_config={k: tuple(v) if isinstance(v, list) else v for k, v in spec["data_config"].items()},
        weights_id=weights_id(path) if path else f"random:{seed}",
        source=spec["source"],
        forward_fn=_resnet_pooled,
    )


def build_preset(
    name: str, *, pretrained: bool = True, weights: str | None = None, seed: int = 0, device: str | None = None
) -> Backbone:
    """The preset ``name`` as a Backbone (``device="meta"``: architecture only, for config checks)."""
    from core.weights import missing_weights

    spec = PRESETS[name]
    if spec["source"] == "open_clip":
        from core.models.clip_models import open_clip_backbone

        arch, tag = spec["open_clip"]
        return open_clip_backbone(
            arch,
            tag,
            name=name,
            family=spec["family"],
            pretrained=pretrained,
            weights=weights,
            seed=seed,
            device=device,
        )
    if pretrained and weights is None and spec.get("pretrained") is False:
        raise missing_weights(name, [], spec.get("note", ""))
    if "arch" in spec:
        return _wide_backbone(name, spec, pretrained=pretrained, weights=weights, seed=seed, device=device)
    from core.models.timm_models import timm_backbone

    overlay = None
    if "data_config" in spec:  # the checkpoint publisher's preprocessing replaces timm's tag defaults
        overlay = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["data_config"].items() if k in _DATA_KEYS}
    return timm_backbone(
        spec["timm"],
        name=name,
        family=spec["family"],
        source=spec["source"],
        pretrained=pretrained,
        weights=weights,
        seed=seed,
        device=device,
        pretrained_cfg_overlay=overlay,
        weights_url=spec.get("url"),
        ignore=tuple(spec.get("ignore", ())),
        select=spec.get("select"),
        how=_hub_how(spec),
    )


def preset_info(name: str) -> dict:
    """Where the preset's weights come from and whether they are on this machine (no model is built)."""
    spec = PRESETS[name]
    base = {k: spec[k] for k in ("timm", "open_clip", "hub", "url", "note") if k in spec}
    if spec["source"] == "open_clip":
        from core.models.clip_models import open_clip_info

        return {**open_clip_info(*spec["open_clip"]), **base}
    if "url" in spec:
        from core.weights import url_file

        path = url_file(spec["url"], download=False)
        hub = spec.get("hub")
        return {
            **base,
            "hub_id": f"{hub['repo']} {hub['entry']}" if hub else None,
            "downloads": [spec["url"]],
            "available": path is not None,
            "weights_path": str(path) if path else None,
        }
    if spec.get("pretrained") is False:
        return {**base, "hub_id": None, "downloads": [], "available": False, "weights_path": None}
    from core.models.timm_models import timm_info

    return {**timm_info(spec["timm"]), **base}


for _name, _spec in PRESETS.items():
    MODELS.register(
        _name,
        family=_spec["family"],
        source=_spec["source"],
        paper_name=_spec["paper_name"],
        info=partial(preset_info, _name),
    )(partial(build_preset, _name))
