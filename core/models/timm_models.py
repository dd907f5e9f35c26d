"""timm as a backbone source: any timm model (optionally ``arch.tag``), features = pooled pre-logits.

Preprocessing is timm's own ``resolve_model_data_config`` for the chosen pretrained tag. Pretrained weights
come from the local Hugging Face / torch.hub cache (downloaded first when online) or from a local file, and
are always read by :mod:`core.weights`.
"""

from __future__ import annotations

import difflib
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

from core.errors import InvalidInputError, UnknownNameError
from core.models.base import Backbone
from core.weights import (
    fit_state_dict,
    hf_file,
    hf_url,
    load_state_dict,
    missing_weights,
    select_prefix,
    url_file,
    weights_id,
)

HF_FILENAMES = ("model.safetensors", "pytorch_model.bin")  # what timm looks for in a hub repo, in order


def check_timm_name(arch: str) -> None:
    """Raise UnknownNameError (with the closest names) unless timm knows ``arch`` (and its tag, if given)."""
    import timm

    base, _, tag = arch.partition(".")
    if not timm.is_model(base):
        close = difflib.get_close_matches(base, timm.list_models(), n=5, cutoff=0.5)
        raise UnknownNameError(
            f"timm has no model {base!r}."
            + (f" Closest: {', '.join(close)}." if close else "")
            + " See timm.list_models() for every name."
        )
    if tag:
        tags = timm.list_pretrained(f"{base}.*")
        if arch not in tags:
            raise UnknownNameError(
                f"timm has no pretrained tag {arch!r}. Tags for {base}: "
                f"{', '.join(tags) or 'none (architecture only)'}."
            )


def timm_downloads(cfg: dict) -> list[str]:
    """What timm would fetch for this pretrained config: the hub file first, the direct URL as alternative."""
    out = []
    if cfg.get("hf_hub_id"):
        fn = cfg.get("hf_hub_filename")
        out.append(f"{hf_url(cfg['hf_hub_id'], fn)}" + ("" if fn else " (model.safetensors or pytorch_model.bin)"))
    if cfg.get("url"):
        out.append(cfg["url"])
    return out


def timm_weights_file(cfg: dict, download: bool = True) -> Path | None:
    if cfg.get("hf_hub_id"):
        names = (cfg["hf_hub_filename"],) if cfg.get("hf_hub_filename") else HF_FILENAMES
        p = hf_file(cfg["hf_hub_id"], names, download=download)
        if p is not None:
            return p
    return url_file(cfg["url"], download=download) if cfg.get("url") else None


def timm_info(arch: str) -> dict:
    """Hub id, downloads and local availability of a timm model's pretrained weights, without building it."""
    from timm.models import get_pretrained_cfg

    check_timm_name(arch)
    pretrained_cfg = get_pretrained_cfg(arch)
    cfg = pretrained_cfg.to_dict() if pretrained_cfg is not None else {}
    path = timm_weights_file(cfg, download=False)
    return {
        "timm": arch if "." in arch else f"{arch}.{cfg.get('tag', '')}".rstrip("."),
        "hub_id": cfg.get("hf_hub_id"),
        "downloads": timm_downloads(cfg),
        "available": path is not None,
        "weights_path": str(path) if path else None,
    }


def pooled_pre_logits(net: Any, x: torch.Tensor) -> torch.Tensor:
    """Pooled pre-logit features of a timm-style model (``forward_features`` then ``forward_head``)."""
    return net.forward_head(net.forward_features(x), pre_logits=True)


def timm_feature_dim(net: Any) -> int:
    return int(getattr(net, "head_hidden_size", None) or net.num_features)


def timm_backbone(
    arch: str,
    *,
    name: str | None = None,
    family: str = "timm",
    source: str = "timm",
    pretrained: bool = True,
    weights: str | None = None,
    seed: int = 0,
    device: str | None = None,
    pretrained_cfg_overlay: dict | None = None,
    model_kwargs: dict | None = None,
    weights_url: str | None = None,
    ignore: tuple[str, ...] = (),
    select: str | None = None,
    how: str = "",
) -> Backbone:
    """A timm architecture as a frozen Backbone.

    ``weights``: a local file (wins over everything). ``pretrained``: the tag's hub weights, or those at
    ``weights_url`` (a checkpoint published outside timm, e.g. DINO/MoCo/SwAV, with ``select`` = the
    key prefix of its backbone and ``ignore`` = prefixes of heads to drop). ``device="meta"`` builds the
    architecture without memory or weights (for config checks of huge models).
    """
    import timm
    from timm.data import resolve_model_data_config
    from timm.models import get_pretrained_cfg

    check_timm_name(arch)
    name = name or arch
    path = None
    if weights is not None:
        path = Path(weights)
    elif pretrained:  # find the weights before building: a missing file should not cost a model build
        if device == "meta":
            raise InvalidInputError("device='meta' builds an architecture only; use pretrained=False with it.")
        if weights_url:
            path = url_file(weights_url)
            if path is None:
                raise missing_weights(name, [weights_url], how)
        else:
            pretrained_cfg = get_pretrained_cfg(arch)
            cfg = pretrained_cfg.to_dict() if pretrained_cfg is not None else {}
            path = timm_weights_file(cfg)
            if path is None:
                raise missing_weights(name, timm_downloads(cfg), how)
    torch.manual_seed(seed)
    with torch.device(device) if device else nullcontext():
        net = timm.create_model(
            arch, pretrained=False, pretrained_cfg_overlay=pretrained_cfg_overlay, **(model_kwargs or {})
        )
    if path is not None:
        sd = load_state_dict(path)
        if select and any(k.startswith(select) for k in sd):  # a full training checkpoint, not just the backbone
            sd = select_prefix(sd, select)
        fit_state_dict(net, sd, source=Path(path).name, ignore=ignore)
        wid = weights_id(path)
    else:
        wid = f"random:{seed}"
    return Backbone(
        net,
        name=name,
        family=family,
        feature_dim=timm_feature_dim(net),
        data_config=resolve_model_data_config(net),
        weights_id=wid,
        source=source,
        forward_fn=pooled_pre_logits,
    )
