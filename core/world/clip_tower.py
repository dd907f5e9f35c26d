"""The world backbones as timm model names (``world_resnet_s`` …), so open_clip can build a world CLIP whose image
tower is a world backbone: its ``open_clip_config.json`` names the tower as ``timm_model_name`` and open_clip's
``TimmModel`` creates it through ``timm.create_model``. Importing this module registers the names."""

from __future__ import annotations

from timm.models import register_model

from core.world.backbones import ARCHS, WorldNet, build_world_net

__all__: list[str] = []


def timm_name(world_model: str) -> str:
    """The timm name of a world backbone: ``world-resnet-s`` -> ``world_resnet_s``."""
    return world_model.replace("-", "_")


def _entrypoint(world_model: str):
    def create(pretrained: bool = False, num_classes: int = 10, **kwargs) -> WorldNet:
        # kwargs: timm.create_model's pretrained_cfg and cache options, meaningless here (weights come from the
        # world CLIP's own safetensors file)
        net = build_world_net(ARCHS[world_model], num_classes)
        net.pretrained_cfg = net.default_cfg = {"architecture": timm_name(world_model)}  # type: ignore[assignment]
        return net

    create.__name__ = create.__qualname__ = timm_name(world_model)
    create.__module__ = __name__
    return register_model(create)


for _name in ARCHS:
    _entrypoint(_name)
