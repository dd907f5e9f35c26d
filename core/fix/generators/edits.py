"""The ``edits`` generator: the model's own failures, edited onto a failure mode's value (counterfactuals).

For a request "{class} {value}" each image is one of that class's debug_seed failures with its ``attribute``
set to ``value`` — the same object, another background or colour (as LANCE and ALIA edit real images rather
than paint new ones). Slot i of a mode edits the class's i-th failure (cycling when there are fewer failures
than images); failures that do not already show the value come first. A request without a value (the
Random_debugging baseline) edits the same failures onto values drawn from the training distribution.

- Offline world: exact. The renderer knows each image's digit, its mask and placement; an edit keeps them and
  paints the digit on a fresh crop of the new background (or in the new colour) — see
  :func:`core.world.generator.edit_world_image`.
- Real tier: a diffusers image-to-image pipeline (``AutoPipelineForImage2Image``, from the same text-to-image
  checkpoints the ``diffusers`` generator loads) prompted "A photo of {class} {value}" at ``strength``.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
from PIL import Image

from core import store
from core.datasets.registry import is_offline_world
from core.errors import Cancelled, InvalidInputError
from core.fix.generators.base import Generator, GenSpec
from core.fix.generators.registry import GENERATORS
from core.progress import StopFn, check_stop

if TYPE_CHECKING:
    from core.fix.generators.diffusers_gen import DiffusersGenerator


def seed_failures(run) -> pd.DataFrame:
    """A finished model run's debug_seed failures (image_id, label): what the edits generator edits."""
    t = run.table
    return t[(~t["correct"]) & (t["split"] == "seed")][["image_id", "label"]].reset_index(drop=True)


@GENERATORS.register("edits", backend="edits")
class FailureEditor(Generator):
    """``create_generator("edits", dataset=..., sources=seed_failures(run))``; real tier: ``model_id`` of a
    diffusers checkpoint (hub id or saved folder), ``strength`` of the image-to-image edit."""

    name = "edits"
    backend = "edits"

    def __init__(
        self,
        dataset: Any = None,
        sources: pd.DataFrame | None = None,
        model_id: str | None = None,
        strength: float = 0.6,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        size: int | None = None,
        device: str | None = None,
        batch_size: int = 4,
    ):
        super().__init__()
        if dataset is None or sources is None:
            raise InvalidInputError(
                "The edits generator needs the dataset and the images to edit (a model's debug_seed failures): "
                "create_generator('edits', dataset=..., sources=seed_failures(run))."
            )
        missing = {"image_id", "label"} - set(sources.columns)
        if missing:
            raise InvalidInputError(f"Images to edit need columns image_id and label; missing {sorted(missing)}.")
        if not 0.0 < strength <= 1.0:
            raise InvalidInputError(f"Edit strength must lie in (0, 1]; got {strength!r}.")
        self.dataset = dataset
        self.sources = sources[["image_id", "label"]].sort_values("image_id").reset_index(drop=True)
        self.world = is_offline_world(dataset)
        self.strength, self.size = float(strength), size
        self._diffusers: DiffusersGenerator | None = None  # real tier only
        if self.world:
            self.model_id, self.max_batch_size = f"world-edit:{dataset.key}", 32
        else:
            from core.fix.generators.diffusers_gen import DEFAULT_MODEL, DiffusersGenerator

            # The text-to-image generator settles the checkpoint, its presets, device and dtype.
            self._diffusers = DiffusersGenerator(
                model_id or DEFAULT_MODEL,
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                device=device,
                batch_size=batch_size,
            )
            self.model_id, self.max_batch_size = self._diffusers.model_id, batch_size
        self.pipe: Any = None  # the diffusers image-to-image pipeline, loaded by prepare()

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"sources": store.make_key(list(self.sources["image_id"]), n=12)}
        if self._diffusers is not None:
            out |= {**self._diffusers.config(), "strength": self.strength, "size": self.size}
        return out

    def _class_sources(self, spec: GenSpec) -> list[str]:
        ids = list(self.sources.loc[self.sources["label"] == spec.label, "image_id"])
        if self.world and spec.attribute and spec.value is not None and ids:  # GenSpec: both or neither
            from core.world.generator import ATTRIBUTES, world_value

            col = ATTRIBUTES[spec.attribute][0]
            value = world_value(self.dataset, spec.attribute, spec.value)
            shows = self.dataset.index("val").set_index("image_id")[col]
            ids = sorted(ids, key=lambda i: shows.get(i) == value)  # stable: other values first
        return ids

    def validate(self, specs: Sequence[GenSpec]) -> None:
        for s in specs:
            if not (self.sources["label"] == s.label).any():
                raise InvalidInputError(
                    f"No debug_seed failure of {s.class_name!r} to edit; this mode needs another generator."
                )
            if self.world and s.attribute is not None and s.value is not None:  # GenSpec: both or neither
                from core.world.generator import ATTRIBUTES, world_value

                if s.attribute not in ATTRIBUTES:
                    raise InvalidInputError(
                        f"The world edits backgrounds and colours, not {s.attribute!r}; use 'background' or 'colour'."
                    )
                world_value(self.dataset, s.attribute, s.value)  # raises for a value the world cannot paint

    def prepare(self) -> None:
        if self._diffusers is not None and self.pipe is None:
            from diffusers import AutoPipelineForImage2Image

            self._diffusers.prepare()
            pipe = AutoPipelineForImage2Image.from_pipe(self._diffusers.pipe)
            pipe.set_progress_bar_config(disable=True)
            self.pipe = pipe

    def begin(self, slots: Sequence[tuple[GenSpec, int, int]], existing: pd.DataFrame) -> None:
        self._slot = {(spec.class_name, spec.value, seed): i for spec, i, seed in slots}
        self._order = {spec.mode: self._class_sources(spec) for spec, _, _ in slots}

    def _source(self, spec: GenSpec, seed: int) -> str:
        if (spec.class_name, spec.value, seed) not in getattr(self, "_slot", {}):
            raise InvalidInputError("The edits generator assigns failures to slots per set; run it via generate_set.")
        ids = self._order[spec.mode]
        return ids[self._slot[(spec.class_name, spec.value, seed)] % len(ids)]

    def generate_batch(
        self, prompts: list[str], seeds: list[int], specs: Sequence[GenSpec], should_stop: StopFn | None = None
    ) -> list[Image.Image | None]:
        sources = [self._source(sp, int(s)) for sp, s in zip(specs, seeds)]
        if self.world:
            return self._edit_world(specs, seeds, sources, should_stop)
        return self._edit_diffusers(prompts, seeds, sources, should_stop)

    def _edit_world(self, specs, seeds, sources, should_stop) -> list[Image.Image | None]:
        from core.world.generator import ATTRIBUTES, edit_world_image

        images: list[Image.Image | None] = []
        self.last_info = []
        for spec, seed, src in zip(specs, seeds, sources):
            check_stop(should_stop)
            if spec.attribute is None:  # Random_debugging: values as the training distribution has them
                _, drawn = self.dataset.render(spec.label, seed=int(seed))
                kw = {"background": drawn["background"], "colour": drawn["colour"]}
            else:
                kw = {ATTRIBUTES[spec.attribute][0]: spec.value}
            img, truth = edit_world_image(self.dataset, src, seed=int(seed), **kw)
            images.append(img.convert("RGB"))
            self.last_info.append(truth)
        return images

    def _edit_diffusers(self, prompts, seeds, sources, should_stop) -> list[Image.Image | None]:
        import torch

        diffusers = self._diffusers
        if diffusers is None:
            raise RuntimeError("Image-to-image edits are the real tier's; the offline world edits exactly.")
        self.prepare()
        pipe, stopped = self.pipe, False
        if pipe is None:
            raise RuntimeError(f"The image-to-image pipeline for {self.model_id!r} did not load.")
        side = self.size or int(pipe.unet.config.sample_size) * int(getattr(pipe, "vae_scale_factor", 8))
        inits = [self.dataset.load(s).convert("RGB").resize((side, side), Image.Resampling.BICUBIC) for s in sources]

        def on_step_end(p, i, t, tensors):
            nonlocal stopped
            if should_stop is not None and should_stop():
                stopped = True
                p._interrupt = True
            return tensors

        kw: dict[str, Any] = {
            "strength": self.strength,
            "num_inference_steps": diffusers.steps,
            "guidance_scale": diffusers.guidance,
            "generator": [torch.Generator("cpu").manual_seed(int(s)) for s in seeds],
        }
        if "callback_on_step_end" in inspect.signature(pipe.__call__).parameters:
            kw["callback_on_step_end"] = on_step_end
        with torch.inference_mode():
            out = pipe(prompt=list(prompts), image=inits, **kw)
        if stopped:
            raise Cancelled("Stopped by request; the unfinished batch is discarded and the run resumes from it.")
        flags = getattr(out, "nsfw_content_detected", None) or [False] * len(out.images)
        images: list[Image.Image | None] = []
        self.last_info = []
        for img, flagged, src in zip(out.images, flags, sources):
            if flagged:
                images.append(None)
                self.last_info.append({"dropped_reason": "safety checker flagged the image", "source_id": src})
            else:
                images.append(img.convert("RGB"))
                self.last_info.append({"source_id": src})
        return images
