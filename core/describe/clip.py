"""CLIP models for zero-shot assignment: open_clip weights from its hub cache or a local file, or the world CLIP.

Every source returns a :class:`ClipModel` (encode images and texts to L2-normalised float32 arrays, with the
model's own preprocessing and tokenizer, and a ``key`` naming the weights for caches). Weights are read only
through ``core.weights.load_state_dict`` (safetensors, or ``torch.load(weights_only=True)``, no unsafe
fallback).
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from core import store
from core.device import default_device
from core.errors import InvalidInputError, MissingResourceError, UnknownNameError
from core.weights import load_state_dict

CLIP_SCHEMA = 1
LOCAL_CONFIG = "open_clip_config.json"  # open_clip's "local-dir:" folder layout
SAFE_WEIGHTS = "open_clip_model.safetensors"  # open_clip.constants.HF_SAFE_WEIGHTS_NAME
_CLIP_WEIGHTS_HINT = (
    "TorchScript archives such as OpenAI's original ViT-B-32.pt are refused: use the open_clip hub file "
    f"({SAFE_WEIGHTS}) instead."
)
PICKLE_WEIGHTS = "open_clip_pytorch_model.bin"  # open_clip.constants.HF_WEIGHTS_NAME


@dataclass(eq=False)
class ClipModel:
    """A CLIP with its preprocessing and tokenizer; embeddings come back L2-normalised (float32 numpy)."""

    # An open_clip CLIP or the world CLIP: an nn.Module with encode_image, encode_text and logit_scale, which
    # torch's Module typing cannot express (its attributes read as Tensor | Module).
    model: Any = field(repr=False)
    preprocess: Callable[[Image.Image], torch.Tensor] = field(repr=False)
    tokenizer: Callable[[Sequence[str]], torch.Tensor] = field(repr=False)
    name: str  # open_clip architecture name, or "world"
    weights_id: str  # hash of the weights file
    source: str  # "open_clip" or "world"
    preprocess_cfg: dict = field(default_factory=dict)
    device: str = "cpu"
    batch_size: int = 64
    _dim: int | None = field(default=None, repr=False)

    def __post_init__(self):
        self.model = self.model.to(self.device).eval().requires_grad_(False)

    @property
    def key(self) -> str:
        return store.make_key("clip", CLIP_SCHEMA, self.name, self.weights_id, self.source, self.preprocess_cfg)

    @property
    def logit_scale(self) -> float:
        """CLIP's learned temperature (exp of the stored log scale, capped at 100 as CLIP training does)."""
        return float(min(self.model.logit_scale.detach().exp().item(), 100.0))

    @property
    def embed_dim(self) -> int:
        if self._dim is None:
            self._dim = int(self.encode_texts(["a photo"]).shape[1])
        return self._dim

    @torch.inference_mode()
    def encode_images(self, images: Sequence[Image.Image] | torch.Tensor, batch_size: int | None = None) -> np.ndarray:
        """(N, D) normalised embeddings of PIL images, or of an already preprocessed (N, 3, H, W) batch."""
        bs = batch_size or self.batch_size
        out = []
        for start in range(0, len(images), bs):
            chunk = images[start : start + bs]
            x = (
                chunk
                if isinstance(chunk, torch.Tensor)
                else torch.stack([self.preprocess(im.convert("RGB")) for im in chunk])
            )
            out.append(self.model.encode_image(x.to(self.device), normalize=True).float().cpu().numpy())
        return self._stack(out)

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """(N, D) normalised embeddings of texts."""
        bs = batch_size or 4 * self.batch_size
        out = [
            self.model.encode_text(self.tokenizer(list(texts[s : s + bs])).to(self.device), normalize=True)
            .float()
            .cpu()
            .numpy()
            for s in range(0, len(texts), bs)
        ]
        return self._stack(out)

    def _stack(self, parts: list[np.ndarray]) -> np.ndarray:
        if not parts:
            return np.zeros((0, self.embed_dim), np.float32)
        out = np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)
        self._dim = out.shape[1]
        return out


def load_clip(
    name: str = "ViT-B-32",
    pretrained: str | None = "openai",
    weights: str | Path | None = None,
    dataset=None,
    device: str | None = None,
) -> ClipModel:
    """A CLIP for zero-shot assignment.

    - ``name="world"`` with ``dataset=<offline world>``: the small CLIP the project trained on that world.
    - ``weights=<file>``: open_clip architecture ``name`` with weights from a local ``.safetensors``/``.bin``/``.pt``
      state dict; ``weights=<folder>`` holding ``open_clip_config.json`` + weights (open_clip's local-dir layout)
      brings its own architecture and preprocessing.
    - otherwise open_clip ``name`` + ``pretrained`` tag from the Hugging Face hub cache (never downloads here).
    """
    device = device or default_device()
    from core.describe.clip_loaders import CLIP_LOADERS

    if name in CLIP_LOADERS:
        return CLIP_LOADERS.create(name, dataset=dataset, device=device)
    if weights is not None:
        weights = Path(weights).expanduser()
        if weights.is_dir():
            return load_local_dir(weights, device=device)
        if not weights.is_file():
            raise MissingResourceError(
                f"CLIP weights file {weights} does not exist. Pass the path of a "
                f".safetensors/.bin/.pt state dict, or a folder with {LOCAL_CONFIG}."
            )
        _check_arch(name)
        return _build(name, weights, store.file_hash(weights), source="open_clip", device=device)
    return _load_hub(name, pretrained, device)


def load_local_dir(
    folder: str | Path, *, device: str | None = None, source: str = "open_clip", name: str | None = None
) -> ClipModel:
    """A CLIP saved in open_clip's local-dir layout: ``open_clip_config.json`` (model_cfg, preprocess_cfg) + weights."""
    folder = Path(folder)
    if not (folder / LOCAL_CONFIG).is_file():
        raise MissingResourceError(
            f"{folder} has no {LOCAL_CONFIG}; it is not an open_clip model folder. "
            f"Pass a weights file together with the architecture name instead."
        )
    ckpt = _first_existing(
        folder / SAFE_WEIGHTS,
        *sorted(folder.glob("*.safetensors")),
        folder / PICKLE_WEIGHTS,
        *sorted(folder.glob("*.bin")),
        *sorted(folder.glob("*.pt")),
        *sorted(folder.glob("*.pth")),
    )
    if ckpt is None:
        raise MissingResourceError(
            f"{folder} holds {LOCAL_CONFIG} but no weights file ({SAFE_WEIGHTS} or "
            f"{PICKLE_WEIGHTS}); copy the weights next to the config."
        )
    from core.describe.clip_loaders import CLIP_LOADERS

    CLIP_LOADERS.names()  # its plugins register the image towers they save (the world CLIP's timm names)
    return _build(
        f"local-dir:{folder}",
        ckpt,
        store.file_hash(ckpt),
        source=source,
        device=device or default_device(),
        display_name=name or folder.name,
    )


def _first_existing(*paths: Path) -> Path | None:
    return next((p for p in paths if p.is_file()), None)


def _check_arch(name: str) -> None:
    import open_clip

    if name.startswith(("hf-hub:", "local-dir:")):
        raise InvalidInputError(
            f"{name!r}: download that repository to a folder and pass it as weights=<folder>; "
            f"weights are never fetched from a hub here."
        )
    if name.replace("/", "-") not in open_clip.list_models():
        known = open_clip.list_models()
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.4)
        raise UnknownNameError(
            f"Unknown open_clip architecture {name!r}."
            + (f" Closest: {', '.join(close)}." if close else "")
            + " Register a custom config with open_clip.add_model_config(<json>) or pass a "
            f"folder with {LOCAL_CONFIG} as weights."
        )


def _load_hub(name: str, pretrained: str | None, device: str) -> ClipModel:
    import open_clip

    _check_arch(name)
    if not pretrained:
        raise InvalidInputError(
            f"No weights for CLIP {name!r}: give pretrained=<open_clip tag> "
            f"(one of {open_clip.list_pretrained_tags_by_model(name)}) or weights=<local file>."
        )
    cfg = open_clip.get_pretrained_cfg(name, pretrained)
    if not cfg:
        if Path(pretrained).expanduser().is_file():
            return load_clip(name, weights=pretrained, device=device)
        raise UnknownNameError(
            f"open_clip has no pretrained tag {pretrained!r} for {name!r}; known tags: "
            f"{', '.join(open_clip.list_pretrained_tags_by_model(name)) or 'none'}."
        )
    ckpt, where = _hub_cached_file(cfg)
    if ckpt is None:
        fetch = (
            f"download {where} and convert it to a state dict"
            if where.startswith("http")
            else f"run `huggingface-cli download {where}` and copy the cache (~/.cache/huggingface) here"
        )
        raise MissingResourceError(
            f"CLIP weights {name}/{pretrained} are not in the local Hugging Face cache and cannot be downloaded here "
            f"(no network). Would download: {where}. On a machine with network {fetch}, "
            f"or pass the file directly: load_clip({name!r}, weights='/path/to/{SAFE_WEIGHTS}')."
        )
    overrides = {
        "force_quick_gelu": bool(cfg.get("quick_gelu", False)),
        "image_mean": cfg.get("mean"),
        "image_std": cfg.get("std"),
        "image_interpolation": cfg.get("interpolation"),
        "image_resize_mode": cfg.get("resize_mode"),
    }
    return _build(
        name,
        Path(ckpt),
        store.make_key(where, store.file_hash(ckpt)),
        source="open_clip",
        device=device,
        overrides=overrides,
    )


def _hub_cached_file(cfg: dict) -> tuple[str | None, str]:
    """The tag's weights from the hub cache (safetensors preferred), never fetching; and what a download would be."""
    from huggingface_hub import try_to_load_from_cache

    hub = cfg.get("hf_hub", "")
    if not hub:
        return None, cfg.get("url", "(no hub location known)")
    repo, filename = hub.rstrip("/"), PICKLE_WEIGHTS
    if not hub.endswith("/"):
        repo, filename = hub.rsplit("/", 1)
    candidates = (
        ([SAFE_WEIGHTS] if filename == PICKLE_WEIGHTS else [])
        + ([filename[:-4] + ".safetensors"] if filename.endswith((".bin", ".pth")) else [])
        + [filename]
    )
    for fn in candidates:
        found = try_to_load_from_cache(repo, fn)
        if isinstance(found, str):
            return found, f"{repo} {fn}"
    return None, f"{repo} {candidates[0]}"


def _build(
    arch: str,
    ckpt: Path,
    weights_id: str,
    *,
    source: str,
    device: str,
    overrides: dict | None = None,
    display_name: str | None = None,
) -> ClipModel:
    import open_clip

    # open_clip only builds the architecture (and preprocessing); weights go through load_state_dict below, so
    # its "No pretrained weights loaded ... initialized randomly" warning would be false: silence it here.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=None, load_weights=False, device="cpu", **{k: v for k, v in (overrides or {}).items() if v}
        )
    finally:
        root.setLevel(level)
    state = _adapt(model, load_state_dict(ckpt, hint=_CLIP_WEIGHTS_HINT))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise InvalidInputError(
            f"CLIP weights {ckpt} do not fit architecture {display_name or arch}: "
            f"{str(e)[:400]}. Check that the architecture name matches the weights."
        ) from e
    try:
        tokenizer = open_clip.get_tokenizer(arch)
    except OSError as e:  # HF tokenizers need their files from the hub
        raise MissingResourceError(
            f"The tokenizer of CLIP {arch} is not available offline ({e}). Use a CLIP with "
            f"open_clip's built-in tokenizer (e.g. ViT-B-32)."
        ) from e
    pcfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in open_clip.get_model_preprocess_cfg(model).items()}
    return ClipModel(
        model,
        preprocess,
        tokenizer,
        name=display_name or arch,
        weights_id=weights_id,
        source=source,
        preprocess_cfg=json.loads(json.dumps(pcfg, default=str)),
        device=device,
    )


def _adapt(model, state: dict) -> dict:
    """The format fixes open_clip's own ``load_checkpoint`` applies, on a state dict we read safely ourselves."""
    from open_clip.convert import convert_state_dict
    from open_clip.model import convert_to_custom_text_state_dict, resize_pos_embed, resize_text_pos_embed

    state = convert_state_dict(model, state)
    if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
        state = convert_to_custom_text_state_dict(state)
    for k in ("logit_scale", "logit_bias"):
        if k in state and getattr(model, k, None) is not None and state[k].ndim != getattr(model, k).ndim:
            state[k] = state[k].reshape(getattr(model, k).shape)
    resize_pos_embed(state, model)
    resize_text_pos_embed(state, model)
    return state
