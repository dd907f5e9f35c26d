"""The offline world's "text-to-image model": renders a class on a requested background or colour.

Stands in for Stable Diffusion when there is no network or GPU. A request's attribute picks the renderer
argument ("background" or "colour"); a request without one (the Random_debugging baseline) draws the
attribute from the world's training distribution. The rendered ground truth goes into the manifest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PIL import Image

from core.errors import InvalidInputError
from core.fix.generators.base import Generator, GenSpec
from core.fix.generators.registry import GENERATORS
from core.progress import StopFn, check_stop

# GenSpec.attribute -> keyword of world.render and the world attribute listing renderable values.
ATTRIBUTES = {
    "background": ("background", "backgrounds"),
    "colour": ("colour", "colours"),
    "color": ("colour", "colours"),
}


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    return str(v)


@GENERATORS.register("world", backend="world")
class WorldRenderer(Generator):
    """Wraps ``world.render(label, background=, colour=, seed=)`` of an offline-world dataset."""

    name = "world"
    backend = "world"
    max_batch_size = 32
    image_pixels = 64 * 64

    def __init__(self, dataset: str = "scenes-mnist", world: Any = None, **dataset_kwargs: Any):
        super().__init__()
        self.dataset_name, self.dataset_kwargs = dataset, dict(dataset_kwargs)
        self._world = world
        self._accepted: set[tuple[str, str | None]] = set()
        opts = ",".join(f"{k}={v!r}" for k, v in sorted(self.dataset_kwargs.items()))
        self.model_id = f"{dataset}({opts})"

    @property
    def world(self):
        if self._world is None:
            from core.datasets import create_dataset

            self._world = create_dataset(self.dataset_name, **self.dataset_kwargs)
            if not getattr(self._world, "offline_world", False):
                raise InvalidInputError(
                    f"Dataset {self.dataset_name!r} has no renderer; the world generator needs "
                    "an offline-world dataset such as 'scenes-mnist'."
                )
        return self._world

    def prepare(self) -> None:
        self.world  # noqa: B018 - builds the world now so errors surface before generation starts

    def config(self) -> dict[str, Any]:
        return {"world_key": self.world.key}

    def renderable(self, attribute: str) -> list[str]:
        return list(getattr(self.world, ATTRIBUTES[attribute][1]))

    def validate(self, specs: Sequence[GenSpec]) -> None:
        classes = list(self.world.classes)
        for s in specs:
            if not 0 <= s.label < len(classes) or classes[s.label] != s.class_name:
                raise InvalidInputError(
                    f"The world has no class {s.class_name!r} with label {s.label}; its classes are {classes}."
                )
            if s.attribute is None:
                continue
            if s.attribute not in ATTRIBUTES:
                raise InvalidInputError(
                    f"The world renders backgrounds and colours, not {s.attribute!r}; use "
                    "attribute 'background' or 'colour'."
                )
            if s.value not in self.renderable(s.attribute) and (s.attribute, s.value) not in self._accepted:
                # The world accepts phrasings such as "in the desert"; one render lets it decide and name its values.
                self.world.render(s.label, seed=0, **{ATTRIBUTES[s.attribute][0]: s.value})
                self._accepted.add((s.attribute, s.value))

    def generate_batch(
        self, prompts: list[str], seeds: list[int], specs: Sequence[GenSpec], should_stop: StopFn | None = None
    ) -> list[Image.Image | None]:
        if not (len(prompts) == len(seeds) == len(specs)):
            raise InvalidInputError("The world renderer needs one prompt, seed and request per image.")
        self.validate(specs)
        images, self.last_info = [], []
        for spec, seed in zip(specs, seeds):
            check_stop(should_stop)
            kw = {ATTRIBUTES[spec.attribute][0]: spec.value} if spec.attribute else {}
            img, truth = self.world.render(spec.label, seed=int(seed), **kw)
            images.append(img.convert("RGB"))
            self.last_info.append({k: _jsonable(v) for k, v in dict(truth).items() if k != "dropped_reason"})
        return images
