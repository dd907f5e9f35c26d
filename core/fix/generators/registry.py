"""The generator registry: ``create_generator(name, **kw)`` builds a registered :class:`Generator`
(diffusers pipelines in ``core.fix.generators.diffusers_gen``, the offline world's renderer in
``core.world.generator``, pool retrieval in ``core.fix.generators.retrieval``,
edits of real images in ``core.fix.generators.edits``)."""

from __future__ import annotations

from typing import Any

from core.fix.generators.base import Generator
from core.registry import Registry

GENERATORS: Registry[Generator] = Registry(
    "generator",
    plugins=(
        "core.fix.generators.diffusers_gen",
        "core.world.generator",
        "core.fix.generators.retrieval",
        "core.fix.generators.edits",
    ),
)


def create_generator(name: str, **kwargs: Any) -> Generator:
    """Build a registered generator; unknown names raise UnknownNameError naming the closest ones."""
    return GENERATORS.create(name, **kwargs)
