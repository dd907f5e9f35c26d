"""open_clip image towers as backbones: features = ``encode_image`` (unnormalised), for linear-head classifiers.

Pretrained weights go through :func:`core.describe.clip.load_clip` (the hub cache or a local file, read safely);
preprocessing is open_clip's own config for the model and tag, expressed as a timm-style ``data_config``.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from core.models.base import Backbone

# open_clip resize modes -> timm crop modes (both resize then crop/pad to the model's size)
_CROP_MODE = {"shortest": "center", "squash": "squash", "longest": "border"}


def _tag_cfg(arch: str, tag: str | None) -> dict:
    import open_clip

    from core.describe.clip import _check_arch

    _check_arch(arch)
    if not tag:
        return {}
    cfg = open_clip.get_pretrained_cfg(arch, tag)
    if not cfg:
        from core.errors import UnknownNameError

        raise UnknownNameError(
            f"open_clip has no pretrained tag {tag!r} for {arch!r}; known tags: "
            f"{', '.join(open_clip.list_pretrained_tags_by_model(arch)) or 'none'}."
        )
    return cfg


def clip_data_config(pcfg: dict) -> dict:
    """open_clip's preprocess config as timm's data_config (resize + center crop at crop_pct 1.0)."""
    size = pcfg["size"]
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    return {
        "input_size": (3, int(h), int(w)),
        "mean": tuple(pcfg["mean"]),
        "std": tuple(pcfg["std"]),
        "interpolation": pcfg.get("interpolation", "bicubic"),
        "crop_pct": 1.0,
        "crop_mode": _CROP_MODE.get(pcfg.get("resize_mode", "shortest"), "center"),
    }


def clip_downloads(cfg: dict) -> list[str]:
    from core.describe.clip import _hub_cached_file
    from core.weights import hf_url

    out = []
    if cfg.get("hf_hub"):
        where = _hub_cached_file(cfg)[1]
        repo, _, fn = where.partition(" ")
        out.append(hf_url(repo, fn))
    if cfg.get("url"):
        out.append(cfg["url"] + " (TorchScript; not loadable here, use the hub file)")
    return out


def open_clip_info(arch: str, tag: str | None) -> dict:
    from core.describe.clip import _hub_cached_file

    cfg = _tag_cfg(arch, tag)
    path = _hub_cached_file(cfg)[0] if cfg else None
    return {
        "open_clip": [arch, tag],
        "hub_id": (cfg.get("hf_hub") or "").rstrip("/") or None,
        "downloads": clip_downloads(cfg),
        "available": path is not None,
        "weights_path": path,
    }


def _encode_image(visual: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = visual(x)
    return out[0] if isinstance(out, tuple) else out


def open_clip_backbone(
    arch: str,
    tag: str | None = "openai",
    *,
    name: str | None = None,
    family: str = "CLIP",
    pretrained: bool = True,
    weights: str | None = None,
    seed: int = 0,
    device: str | None = None,
) -> Backbone:
    """The image tower of open_clip ``arch`` (weights of ``tag`` or a local file; random with pretrained=False)."""
    import open_clip

    from core.describe.clip import load_clip
    from core.weights import missing_weights, weights_id

    name = name or f"open_clip:{arch}/{tag}"
    cfg = _tag_cfg(arch, tag)
    if weights is not None or pretrained:
        if not tag and weights is None:
            from core.errors import InvalidInputError

            raise InvalidInputError(f"{name}: give a pretrained tag (open_clip:{arch}/<tag>) or weights=<file>.")
        try:
            clip = load_clip(arch, pretrained=tag, weights=weights, device="cpu")
        except Exception as e:
            from core.errors import MissingResourceError

            if isinstance(e, MissingResourceError) and weights is None:
                raise missing_weights(name, clip_downloads(cfg)) from None
            raise
        model, pcfg = clip.model, clip.preprocess_cfg
        wid = weights_id(weights) if weights is not None else clip.weights_id
    else:
        force = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if cfg.get(k)}
        torch.manual_seed(seed)
        with torch.device(device) if device else nullcontext():
            model = open_clip.create_model(
                arch,
                pretrained=None,
                force_quick_gelu=bool(cfg.get("quick_gelu")),
                force_preprocess_cfg=force,
                device=device or "cpu",
            )
        pcfg, wid = open_clip.get_model_preprocess_cfg(model), f"random:{seed}"
    visual = model.visual  # open_clip's image tower (an nn.Module with output_dim)
    return Backbone(
        visual,
        name=name,
        family=family,
        feature_dim=int(visual.output_dim),
        data_config=clip_data_config(pcfg),
        weights_id=wid,
        source="open_clip",
        forward_fn=_encode_image,
    )
