"""Text-to-image generation with any diffusers pipeline (the paper's Stable Diffusion v1-5 by default).

The pipeline comes from ``AutoPipelineForText2Image.from_pretrained`` (a hub id in the local Hugging Face
cache, or a folder written by ``save_pretrained``). One CPU ``torch.Generator`` per image seed makes images
reproducible and independent of batch composition; ``callback_on_step_end`` polls ``should_stop`` between
denoising steps.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core import validate
from core.device import default_device
from core.errors import Cancelled, InvalidInputError, MissingResourceError
from core.fix.generators.base import Generator, GenSpec
from core.fix.generators.registry import GENERATORS
from core.progress import StopFn

DEFAULT_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"  # (paper: "Stable Diffusion V1-5")

# Sampling settings each known model was made for; anything else gets diffusers' Stable Diffusion defaults.
PRESETS: dict[str, dict[str, Any]] = {
    "stable-diffusion-v1-5/stable-diffusion-v1-5": {"steps": 50, "guidance": 7.5},
    "runwayml/stable-diffusion-v1-5": {"steps": 50, "guidance": 7.5},
    "stabilityai/sd-turbo": {"steps": 1, "guidance": 0.0, "height": 512, "width": 512},
    "stabilityai/sdxl-turbo": {"steps": 1, "guidance": 0.0, "height": 512, "width": 512},
}
FALLBACK = {"steps": 50, "guidance": 7.5}


def _offline() -> bool:
    from huggingface_hub import constants

    env = any(
        os.environ.get(k, "").upper() in {"1", "ON", "YES", "TRUE"} for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
    return env or constants.is_offline_mode()


def _is_hub_id(model_id: str) -> bool:
    return (
        not model_id.startswith((".", "/", "~"))
        and model_id.count("/") == 1
        and not Path(model_id).expanduser().exists()
    )


def _dtype_kwarg() -> str:
    # diffusers renamed torch_dtype to dtype; the old name still works but warns.
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_TORCH_DTYPE_DEPRECATION_MESSAGE") else "torch_dtype"


def load_pipeline(model_id: str, device: str, dtype: Any):
    """A diffusers text-to-image pipeline on ``device``; MissingResourceError when it is not on this machine."""
    from diffusers import AutoPipelineForText2Image

    kwargs: dict[str, Any] = {_dtype_kwarg(): dtype}
    if _is_hub_id(model_id):
        offline = _offline()
        if offline:
            from huggingface_hub import try_to_load_from_cache

            if not isinstance(try_to_load_from_cache(model_id, "model_index.json"), str):
                raise MissingResourceError(
                    _missing_message(
                        model_id, "it is not in the local Hugging Face cache and downloads are off (HF_HUB_OFFLINE=1)"
                    )
                )
        try:
            pipe = AutoPipelineForText2Image.from_pretrained(model_id, local_files_only=offline, **kwargs)
        except Exception as e:
            raise MissingResourceError(_missing_message(model_id, f"loading failed ({type(e).__name__}: {e})")) from e
    else:
        folder = Path(model_id).expanduser()
        if not (folder / "model_index.json").is_file():
            raise InvalidInputError(
                f"{folder} is not a diffusers pipeline folder (no model_index.json). Point at a "
                "folder written by pipeline.save_pretrained(folder), or at a hub id such as "
                f"{DEFAULT_MODEL!r}."
            )
        try:
            pipe = AutoPipelineForText2Image.from_pretrained(str(folder), local_files_only=True, **kwargs)
        except Exception as e:
            raise InvalidInputError(
                f"Could not load the diffusers pipeline in {folder}: {type(e).__name__}: {e}. "
                "Re-save it with pipeline.save_pretrained(folder)."
            ) from e
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _missing_message(model_id: str, why: str) -> str:
    return (
        f"Text-to-image model {model_id!r} cannot be loaded: {why}. It would download the diffusers pipeline "
        f"https://huggingface.co/{model_id} (Stable Diffusion v1-5 is about 5 GB). Either download it once on a "
        f"machine with network (`hf download {model_id}`, then copy the Hugging Face cache), or save a pipeline "
        "with pipeline.save_pretrained('/path/to/folder') and pass that folder as the model id."
    )


@GENERATORS.register("diffusers", backend="diffusers")
class DiffusersGenerator(Generator):
    """Images from a diffusers text-to-image pipeline; float16 on CUDA, float32 elsewhere."""

    name = "diffusers"
    backend = "diffusers"

    def __init__(
        self,
        model_id: str = DEFAULT_MODEL,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        height: int | None = None,
        width: int | None = None,
        negative_prompt: str | None = None,
        device: str | None = None,
        batch_size: int = 4,
    ):
        super().__init__()
        import torch

        if not isinstance(model_id, str) or not model_id.strip():
            raise InvalidInputError("Give the diffusers model as a hub id or a local pipeline folder.")
        self.model_id = str(Path(model_id).expanduser().resolve()) if not _is_hub_id(model_id) else model_id
        preset = PRESETS.get(model_id, FALLBACK)
        steps = num_inference_steps if num_inference_steps is not None else preset["steps"]
        self.guidance = float(guidance_scale if guidance_scale is not None else preset["guidance"])
        self.steps = validate.whole("Diffusion steps", steps, 1, validate.MAX_STEPS)
        height = height if height is not None else preset.get("height")
        width = width if width is not None else preset.get("width")
        for side, v in (("height", height), ("width", width)):
            if v is not None and (v <= 0 or v % 8):
                raise InvalidInputError(f"Image {side} must be a positive multiple of 8; got {v}.")
        self.height, self.width, self.negative_prompt = height, width, negative_prompt
        self.image_pixels = (height or 512) * (width or 512)
        self.device = device or default_device()
        self.dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        self.max_batch_size = validate.whole("batch_size", batch_size, 1, validate.MAX_BATCH)
        self.pipe: Any = None  # the diffusers pipeline, loaded by prepare()
        self.steps_run = 0  # denoising steps finished, across batches (for progress and tests)

    def config(self) -> dict[str, Any]:
        return {
            "num_inference_steps": self.steps,
            "guidance_scale": self.guidance,
            "height": self.height,
            "width": self.width,
            "negative_prompt": self.negative_prompt,
        }

    def prepare(self) -> None:
        if self.pipe is None:
            self.pipe = load_pipeline(self.model_id, self.device, self.dtype)

    def generate_batch(
        self, prompts: list[str], seeds: list[int], specs: Sequence[GenSpec] = (), should_stop: StopFn | None = None
    ) -> list[Image.Image | None]:
        import torch

        if len(prompts) != len(seeds):
            raise InvalidInputError(f"{len(prompts)} prompts but {len(seeds)} seeds; give one seed per image.")
        self.prepare()
        pipe = self.pipe
        stopped = False

        def on_step_end(p, i, t, tensors):
            nonlocal stopped
            self.steps_run += 1
            # After the last step only decoding is left: finish the batch rather than throw it away.
            last = i >= getattr(p, "num_timesteps", self.steps) - 1
            if not last and should_stop is not None and should_stop():
                stopped = True
                p._interrupt = True  # diffusers skips the remaining steps
            return tensors

        kw: dict[str, Any] = {
            "num_inference_steps": self.steps,
            "guidance_scale": self.guidance,
            "generator": [torch.Generator("cpu").manual_seed(int(s)) for s in seeds],
        }
        if self.height:
            kw["height"] = self.height
        if self.width:
            kw["width"] = self.width
        if self.negative_prompt:
            kw["negative_prompt"] = [self.negative_prompt] * len(prompts)
        if "callback_on_step_end" in inspect.signature(pipe.__call__).parameters:
            kw["callback_on_step_end"] = on_step_end
        with torch.inference_mode():
            out = pipe(prompt=list(prompts), **kw)
        if stopped:
            raise Cancelled(
                "Stopped by request between denoising steps; the unfinished batch is discarded, "
                "finished images are kept and the run resumes where it stopped."
            )
        flags = getattr(out, "nsfw_content_detected", None) or [False] * len(out.images)
        images: list[Image.Image | None] = []
        self.last_info = []
        for img, flagged in zip(out.images, flags):
            if flagged:
                images.append(None)
                self.last_info.append({"dropped_reason": "safety checker flagged the image (blacked out)"})
            elif np.asarray(img).max() == 0:
                images.append(None)
                self.last_info.append({"dropped_reason": "blank (all-black) image"})
            else:
                images.append(img.convert("RGB"))
                self.last_info.append({})
        return images


@GENERATORS.register("sd-turbo", backend="diffusers")
def sd_turbo(**kw: Any) -> Generator:
    """SD-Turbo with its model card's settings: one step, no guidance, 512 px."""
    return DiffusersGenerator(**{"model_id": "stabilityai/sd-turbo", **kw})
