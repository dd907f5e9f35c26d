"""The offline world's "text-to-image model": renders a class on a requested background or colour.

Stands in for Stable Diffusion when there is no network or GPU. A request's attribute picks the renderer
argument ("background" or "colour"); a request without one (the Random_debugging baseline) draws the
attribute from the world's training distribution. The rendered ground truth goes into the manifest.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from core import store
from core.errors import InvalidInputError
from core.fix.generators.base import Generator, GenSpec
from core.fix.generators.registry import GENERATORS
from core.progress import StopFn, check_stop
from core.world.render import compose, draw_geometry, mnist

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


# ---- an unlabelled image pool and exact edits, for the retrieval and edit generators -------------------

POOL_SEED_BASE = 2**31  # pool renders use seeds above every generated-set seed (those are below 2**31)


def write_world_pool(world: Any, folder: str | Path, images_per_class: int = 20, seed: int = 0) -> pd.DataFrame:
    """Write an unlabelled image pool for retrieval: the world's ``gen`` digits on backgrounds and colours drawn
    uniformly, as ``folder/<n>.png`` in shuffled order (file names say nothing of the content).

    Returns the ground truth (file, label, background, colour, digit_index) for evaluation; it is not written
    into the pool. Files already there are left alone; the folder must hold nothing else.
    """
    if not isinstance(images_per_class, int) or images_per_class <= 0:
        raise InvalidInputError(f"Images per class must be a positive whole number; got {images_per_class!r}.")
    folder = Path(folder).expanduser()
    rng = np.random.default_rng([int(seed), 7])
    n = len(world.classes) * images_per_class
    labels = np.repeat(np.arange(len(world.classes)), images_per_class)
    bgs = rng.integers(0, len(world.backgrounds), n)
    cols = rng.integers(0, len(world.colours), n)
    order = rng.permutation(n)
    rows = []
    folder.mkdir(parents=True, exist_ok=True)
    for k, j in enumerate(order):
        img, truth = world.render(
            int(labels[j]),
            background=world.backgrounds[bgs[j]],
            colour=world.colours[cols[j]],
            seed=POOL_SEED_BASE + int(seed) * 1_000_000 + int(j),
        )
        name = f"{k:06d}.png"
        if not (folder / name).is_file():
            buf = io.BytesIO()
            img.convert("RGB").save(buf, format="PNG")
            store.atomic_write_bytes(folder / name, buf.getvalue())
        rows.append({"file": name, **{c: truth[c] for c in ("label", "background", "colour", "digit_index")}})
    return pd.DataFrame(rows)


def edit_world_image(
    world: Any, image_id: str, *, background: str | None = None, colour: str | None = None, seed: int | None = None
) -> tuple[Image.Image, dict]:
    """The world image ``image_id`` with its background and/or colour replaced, exactly: the same MNIST digit at
    the same size and place. ``seed=None`` keeps the crop position of the background too (so naming the image's
    own values gives back its pixels); a seed draws a fresh crop of the new background."""
    pool, _, row = str(image_id).partition("/")
    df = world.index(pool)
    if not row.isdigit() or int(row) >= len(df):
        raise InvalidInputError(f"{world.name} has no image {image_id!r}; ids look like 'val/00042'.")
    j = int(row)
    rec = df.iloc[j]
    geom = draw_geometry(np.random.default_rng([world.seed, 2, list(world.pools()).index(pool)]), len(df))
    geom = {k: v[j : j + 1].copy() for k, v in geom.items()}
    if seed is not None:
        fresh = draw_geometry(np.random.default_rng([world.seed, _EDIT_STREAM, int(seed)]), 1)
        for k in ("crop_scale", "crop_x", "crop_y", "flip"):
            geom[k] = fresh[k]
    bg = rec["background"] if background is None else world_value(world, "background", background)
    col = rec["colour"] if colour is None else world_value(world, "colour", colour)
    img = compose(bg, col, mnist()[0][int(rec["digit_index"])], geom, 0)
    label = int(rec["label"])
    return img, {
        "source_id": str(image_id),
        "label": label,
        "class_name": world.classes[label],
        "background": bg,
        "colour": col,
        "digit_index": int(rec["digit_index"]),
        "common_background": bg == world.common_background(label),
        "common_colour": col == world.common_colour(label),
        "from_background": rec["background"],
        "from_colour": rec["colour"],
    }


_EDIT_STREAM = 2_000_003


def world_value(world: Any, attribute: str, value: str) -> str:
    """``value`` as the world names it (accepting phrasings such as "in the desert" the way render does)."""
    _, info = world.render(0, seed=0, **{ATTRIBUTES[attribute][0]: value})
    return info[ATTRIBUTES[attribute][0]]
