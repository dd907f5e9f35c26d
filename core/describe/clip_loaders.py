"""CLIPs that are not open_clip hub or file weights, by name: ``load_clip(name)`` in ``core.describe.clip``
asks here first. The offline world registers its own small CLIP as ``"world"`` (``core.world.clip``)."""

from __future__ import annotations

from typing import Any

from core.registry import Registry

CLIP_LOADERS: Registry[Any] = Registry("CLIP", plugins=("core.world.clip",))
