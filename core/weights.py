"""The one way weights files are read (safetensors, or torch.load with weights_only=True) and fitted to a model.

No unsafe fallback: a checkpoint that needs pickled code to load is refused with a message saying how to
convert it. ``fit_state_dict`` loads a state dict into an architecture and reports mismatches as user errors.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from core import store
from core.errors import InvalidInputError, MissingResourceError

# Keys under which training scripts commonly nest the real state dict (timm, DINO, MoCo, SwAV, Lightning).
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module", "teacher", "net")
_PREFIXES = ("module.", "model.", "_orig_mod.")


def load_state_dict(path: str | os.PathLike, *, hint: str = "") -> dict[str, torch.Tensor]:
    """Read a weights file into a flat ``{name: tensor}`` dict on the CPU, unwrapping common containers.

    ``hint``: a sentence for the caller's kind of weights, appended to the error when the file cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingResourceError(
            f"Weights file {str(path)!r} does not exist. Pass the path of a .safetensors, "
            ".pth or .bin file that is on this machine."
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device="cpu")
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # pickle refusing a class, a TorchScript archive, a truncated file...
        raise InvalidInputError(
            f"Could not read {path.name} as plain tensors ({type(e).__name__}: {str(e)[:200]}). Backdrop loads "
            "weights only with safetensors or torch.load(weights_only=True); re-save the checkpoint's state "
            "dict (torch.save(model.state_dict(), 'weights.pth') or safetensors.torch.save_file) and pass that."
            + (f" {hint}" if hint else "")
        ) from e
    return unwrap_state_dict(sd, source=path.name)


def unwrap_state_dict(obj, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Descend into ``{"state_dict": ...}``-style wrappers and strip ``module.``-style prefixes."""
    for _ in range(3):
        if isinstance(obj, Mapping) and not _is_tensor_dict(obj):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping):
        raise InvalidInputError(f"{source} holds a {type(obj).__name__}, not a state dict of tensors.")
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise InvalidInputError(f"{source} holds no tensors; top-level keys: {list(obj)[:10]}.")
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def _is_tensor_dict(obj: Mapping) -> bool:
    return len(obj) > 0 and sum(isinstance(v, torch.Tensor) for v in obj.values()) >= len(obj) / 2


def select_prefix(sd: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Keep only ``prefix*`` keys, with the prefix removed (e.g. MoCo's ``encoder_q.``)."""
    out = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    if not out:
        raise InvalidInputError(f"No weights start with {prefix!r}; first keys are {list(sd)[:5]}.")
    return out


def drop_prefixes(sd: dict[str, torch.Tensor], prefixes: Iterable[str]) -> dict[str, torch.Tensor]:
    prefixes = tuple(prefixes)
    return {k: v for k, v in sd.items() if not (prefixes and k.startswith(prefixes))} if prefixes else dict(sd)


def classifier_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the model's classification layer (timm's ``pretrained_cfg['classifier']``)."""
    names = getattr(model, "pretrained_cfg", {}).get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    return {k for k in model.state_dict() if any(k == f"{n}.weight" or k == f"{n}.bias" for n in names)}


def fit_state_dict(
    model: nn.Module,
    sd: dict[str, torch.Tensor],
    *,
    source: str = "weights",
    ignore: Iterable[str] = (),
    allow_missing_classifier: bool = True,
    classifier: Iterable[str] | None = None,
) -> list[str]:
    """Load ``sd`` into ``model``; return the missing classifier keys (left at init).

    ``classifier``: state-dict keys of the classification layer, when the model has no timm pretrained_cfg.

    Converts with the architecture's own ``checkpoint_filter_fn`` (timm) when the keys do not match as
    they are. Any other missing key, unexpected key (beyond the ``ignore`` prefixes) or shape mismatch is an
    :class:`InvalidInputError` naming a few of them.
    """
    sd = drop_prefixes(sd, ignore)
    own = model.state_dict()
    if set(sd) != set(own):
        filt = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
        if filt is not None:
            with contextlib.suppress(Exception):  # filters assume their own formats; a failure means "not that"
                sd = filt(sd, model)
    head = (
        (set(classifier) if classifier is not None else classifier_keys(model)) if allow_missing_classifier else set()
    )
    missing = [k for k in own if k not in sd and k not in head]
    unexpected = [k for k in sd if k not in own]
    wrong = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}"
        for k in sd
        if k in own and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong:
        parts = [
            f"missing {missing[:5]}" if missing else "",
            f"unexpected {unexpected[:5]}" if unexpected else "",
            f"wrong shapes {wrong[:3]}" if wrong else "",
        ]
        raise InvalidInputError(
            f"{source} does not fit {type(model).__name__}: "
            + "; ".join(p for p in parts if p)
            + ". Check that the file belongs to this model (same architecture and size)."
        )
    model.load_state_dict(sd, strict=False)
    return sorted(k for k in own if k not in sd)


_HASHES: dict[tuple[str, int, int], str] = {}


def weights_id(path: str | os.PathLike) -> str:
    """Content hash of a weights file (memoised by path, size and mtime: large files hash once a session)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = store.file_hash(p)
    return _HASHES[key]


# -- where hub weights live on this machine ---------------------------------------------------------------------
def offline() -> bool:
    """True when downloads must not be tried (``HF_HUB_OFFLINE=1`` or ``BACKDROP_OFFLINE=1``)."""
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "BACKDROP_OFFLINE")
    )


def hf_file(repo_id: str, filenames: Iterable[str], download: bool = True) -> Path | None:
    """The first of ``filenames`` of a Hugging Face repo that is in the local cache, else (online) downloaded."""
    from huggingface_hub import constants, try_to_load_from_cache

    repo_id, _, revision = repo_id.partition("@")
    filenames = list(filenames)
    for f in filenames:
        p = try_to_load_from_cache(repo_id, f, cache_dir=constants.HF_HUB_CACHE, revision=revision or None)
        if isinstance(p, str):
            return Path(p)
    if not download or offline():
        return None
    from huggingface_hub import hf_hub_download

    for f in filenames:
        try:
            return Path(hf_hub_download(repo_id, f, revision=revision or None))
        except Exception:  # not in this repo, or no network: try the next name, then report what is missing
            continue
    return None


def url_file(url: str, download: bool = True) -> Path | None:
    """A URL's file in torch.hub's checkpoint folder, else (online) downloaded there."""
    from urllib.parse import urlparse

    target = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    if target.is_file():
        return target
    if not download or offline():
        return None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(target), progress=False)
        return target
    except Exception:
        return None


def hf_url(repo_id: str, filename: str | None = None) -> str:
    repo_id = repo_id.partition("@")[0]
    return f"https://huggingface.co/{repo_id}" + (f"/resolve/main/{filename}" if filename else "")


def missing_weights(name: str, downloads: list[str], how: str = "") -> MissingResourceError:
    """The error for pretrained weights that are neither cached nor downloadable here."""
    where = "; ".join(downloads) if downloads else "nothing (no public weights are published for it)"
    state = "there is no network here" if offline() else "downloading failed"
    return MissingResourceError(
        f"Pretrained weights for {name!r} are not on this machine and {state}. Would download: {where}. "
        + (how + " " if how else "")
        + f"Download the file where there is network and pass it: create_model({name!r}, weights='/path/to/file') "
        "(.safetensors, .pth or .bin), or use pretrained=False for random weights."
    )
