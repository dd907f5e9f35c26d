"""Image generators (diffusers text-to-image, offline-world renderer) and the generated sets they fill.

``create_generator("diffusers", model_id=...)`` or ``create_generator("world", size="tiny")`` builds one;
``generate_set(generator, requests, set_name)`` makes the images, resumably, under cache/generated/.
"""

from __future__ import annotations

from core.fix.generators.base import (
    PROMPT_TEMPLATE,
    RANDOM_TEMPLATE,
    Generator,
    GenRequest,
    GenSpec,
    baseline_for,
    mode_requests,
    random_requests,
    render_prompt,
)
from core.fix.generators.generated_set import (
    GeneratedSet,
    GenerationError,
    generate_set,
    image_seed,
    list_sets,
    read_manifest,
    slot_id,
)
from core.fix.generators.registry import GENERATORS, create_generator

__all__ = [
    "GENERATORS",
    "create_generator",
    "Generator",
    "GenSpec",
    "GenRequest",
    "GeneratedSet",
    "GenerationError",
    "generate_set",
    "mode_requests",
    "random_requests",
    "baseline_for",
    "render_prompt",
    "image_seed",
    "slot_id",
    "list_sets",
    "read_manifest",
    "PROMPT_TEMPLATE",
    "RANDOM_TEMPLATE",
]
