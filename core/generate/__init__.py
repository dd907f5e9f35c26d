"""Image generators (diffusers text-to-image, offline-world renderer) and the generated sets they fill.

``create_generator("diffusers", model_id=...)`` or ``create_generator("world", size="tiny")`` builds one;
``generate_set(generator, requests, set_name)`` makes the images, resumably, under cache/generated/.
"""
from __future__ import annotations

from typing import Any

from core.generate.base import (PROMPT_TEMPLATE, RANDOM_TEMPLATE, GenRequest, GenSpec, Generator, baseline_for,
                                mode_requests, random_requests, render_prompt)
from core.generate.generated_set import (GeneratedSet, GenerationError, generate_set, image_seed, list_sets,
                                         read_manifest, slot_id)
from core.registry import Registry

GENERATORS: Registry[Generator] = Registry("generator")


@GENERATORS.register("diffusers", backend="diffusers")
def _diffusers(**kw: Any) -> Generator:
    from core.generate.diffusers_gen import DiffusersGenerator

    return DiffusersGenerator(**kw)


@GENERATORS.register("sd-turbo", backend="diffusers")
def _sd_turbo(**kw: Any) -> Generator:
    """SD-Turbo with its model card's settings: one step, no guidance, 512 px."""
    from core.generate.diffusers_gen import DiffusersGenerator

    return DiffusersGenerator(**{"model_id": "stabilityai/sd-turbo", **kw})


@GENERATORS.register("world", backend="world")
def _world(**kw: Any) -> Generator:
    from core.generate.world_renderer import WorldRenderer

    return WorldRenderer(**kw)


def create_generator(name: str, **kwargs: Any) -> Generator:
    """Build a registered generator; unknown names raise UnknownNameError naming the closest ones."""
    return GENERATORS.create(name, **kwargs)


__all__ = ["GENERATORS", "create_generator", "Generator", "GenSpec", "GenRequest", "GeneratedSet",
           "GenerationError", "generate_set", "mode_requests", "random_requests", "baseline_for", "render_prompt",
           "image_seed", "slot_id", "list_sets", "read_manifest", "PROMPT_TEMPLATE", "RANDOM_TEMPLATE"]
