"""What every image generator provides, and the generation requests built from failure modes.

A :class:`GenSpec` asks for ``n_images`` of one class on one attribute value (a failure mode, "sea lion" ·
"desert") or of the class alone (``value=None``: the paper's Random_debugging baseline). A
:class:`Generator` turns a batch of prompts and per-image seeds into images; everything about files,
manifests and resuming lives in :mod:`core.fix.generators.generated_set`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from PIL import Image

from core import validate
from core.config import DebugConfig
from core.errors import InvalidInputError
from core.progress import StopFn

PROMPT_TEMPLATE = DebugConfig.prompt_template  # "A photo of {class_name} {value}" (paper)
RANDOM_TEMPLATE = DebugConfig.random_template  # "A photo of {class_name}" (Random_debugging, paper)


@dataclass(frozen=True)
class GenSpec:
    """n_images of ``class_name`` showing ``attribute`` = ``value`` (``value`` None: the class alone)."""

    class_name: str
    label: int  # index into the dataset's classes
    attribute: str | None  # "background", "colour", ... ; None for the random baseline
    value: str | None  # e.g. "desert"; None for the random baseline
    prompt: str
    n_images: int

    def __post_init__(self) -> None:
        where = f"({self.class_name!r} · {self.value!r})"
        n = validate.whole("Images per request", self.n_images, 1, validate.MAX_IMAGES_PER_MODE, where)
        object.__setattr__(self, "n_images", n)
        if not str(self.class_name).strip():
            raise InvalidInputError("A generation request needs a class name.")
        if (self.value is None) != (self.attribute is None):
            raise InvalidInputError(
                f"Request for {self.class_name!r}: give both attribute and value, or neither "
                f"(the random baseline); got attribute={self.attribute!r}, value={self.value!r}."
            )

    @property
    def mode(self) -> tuple[str, str | None]:
        return (self.class_name, self.value)


GenRequest = GenSpec


def _positive(name: str, n: Any) -> int:
    return validate.whole(name, n, 1, validate.MAX_IMAGES_PER_MODE)


def render_prompt(template: str, class_name: str, value: str | None = None) -> str:
    try:
        return template.format(class_name=class_name, value=value if value is not None else "").strip()
    except (KeyError, IndexError, ValueError) as e:
        raise InvalidInputError(
            f"Prompt template {template!r} is not usable ({e}); it may only use the fields "
            "{class_name} and {value}."
        ) from None


def mode_requests(
    modes: pd.DataFrame | Iterable[tuple[str, int, str]],
    images_per_mode: int,
    *,
    attribute: str = "background",
    template: str = PROMPT_TEMPLATE,
    k: int | None = None,
) -> list[GenSpec]:
    """One request per failure mode: ``images_per_mode`` images prompted "A photo of {class_name} {value}".

    ``modes`` is a table with columns class_name, label, value (an ``attribute`` column overrides the
    argument per row) or (class_name, label, value) tuples, ranked best first within each class; ``k``
    keeps the first k modes per class.
    """
    _positive("Images per failure mode", images_per_mode)
    if k is not None:
        validate.whole("k (failure modes per class)", k, 1, validate.MAX_K_MODES)
    if isinstance(modes, pd.DataFrame):
        missing = {"class_name", "label", "value"} - set(modes.columns)
        if missing:
            raise InvalidInputError(
                f"Failure-mode table lacks columns {sorted(missing)}; it needs class_name, label and value."
            )
        rows = [
            (r["class_name"], r["label"], r["value"], r.get("attribute", attribute)) for r in modes.to_dict("records")
        ]
    else:
        rows = [(c, lab, v, attribute) for c, lab, v in modes]
    taken: dict[str, int] = {}
    out, seen = [], set()
    for class_name, label, value, attr in rows:
        if value is None or pd.isna(value) or not str(value).strip():
            raise InvalidInputError(
                f"Failure mode of {class_name!r} has no value; drop it or name the {attr} it stands for."
            )
        if (class_name, value) in seen:
            continue
        if k is not None and taken.get(class_name, 0) >= k:
            continue
        seen.add((class_name, value))
        taken[class_name] = taken.get(class_name, 0) + 1
        out.append(
            GenSpec(
                str(class_name),
                int(label),
                str(attr),
                str(value),
                render_prompt(template, class_name, value),
                images_per_mode,
            )
        )
    return out


def random_requests(
    classes: Sequence[tuple[str, int]], images_per_class: int, *, template: str = RANDOM_TEMPLATE
) -> list[GenSpec]:
    """The Random_debugging baseline: ``images_per_class`` images per (class_name, label), class name only."""
    _positive("Images per class", images_per_class)
    return [GenSpec(str(c), int(lab), None, None, render_prompt(template, c), images_per_class) for c, lab in classes]


def baseline_for(requests: Sequence[GenSpec], *, template: str = RANDOM_TEMPLATE) -> list[GenSpec]:
    """Random_debugging requests with as many images per class as ``requests`` make for that class."""
    per_class: dict[tuple[str, int], int] = {}
    for r in requests:
        per_class[(r.class_name, r.label)] = per_class.get((r.class_name, r.label), 0) + r.n_images
    return [GenSpec(c, lab, None, None, render_prompt(template, c), n) for (c, lab), n in per_class.items()]


class Generator(ABC):
    """Makes images from prompts, one seed per image; the same seed gives the same image."""

    name: str = ""  # registry name, e.g. "diffusers", "world"
    model_id: str = ""  # what makes the images: hub id, folder, world key
    backend: str = ""  # family: "diffusers", "world"
    max_batch_size: int = 8
    image_pixels: int = 512 * 512  # pixels of one generated image, for memory estimates before large work

    def __init__(self) -> None:
        # Per image of the latest batch: {"dropped_reason": ...} for a None image, ground truth etc. otherwise.
        self.last_info: list[dict[str, Any]] = []

    def config(self) -> dict[str, Any]:
        """Everything besides model_id that changes the images (steps, guidance, size); fixed per set."""
        return {}

    def validate(self, specs: Sequence[GenSpec]) -> None:  # noqa: B027 (optional hook; the default accepts all)
        """Raise InvalidInputError for requests this generator cannot make, before any work starts."""

    def prepare(self) -> None:  # noqa: B027 (optional hook; the default needs nothing loaded)
        """Load weights or worlds; raises MissingResourceError when they are not available here."""

    def begin(self, slots: Sequence[tuple[GenSpec, int, int]], existing: pd.DataFrame) -> None:  # noqa: B027
        """Called once per run after :meth:`prepare`, with every slot still to make as (request, index, seed)
        and the set's manifest so far; generators that share a resource across slots (a retrieval pool) plan here."""

    @abstractmethod
    def generate_batch(
        self, prompts: list[str], seeds: list[int], specs: list[GenSpec], should_stop: StopFn | None = None
    ) -> list[Image.Image | None]:
        """One image per prompt (None where it was dropped, reason in ``last_info``); Cancelled if stopped."""
