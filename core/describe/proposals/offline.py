"""Offline proposer: ranks a built-in vocabulary (plus the offline world's values) by how unrelated each value is
to the class, using text embeddings (packaged MiniLM by default, or any embedder such as a CLIP text tower).

Used when no LLM is configured; its proposals say so (``source`` "offline:<embedder>" and a ``notice``).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core import store
from core.describe.proposals.attributes import Attribute
from core.describe.proposals.embed import Embedder, cached_embeddings, default_embedder, embed_texts, embedder_id
from core.describe.proposals.proposal import PROPOSERS, Proposal, ProposalError, Proposer, now_iso
from core.describe.proposals.text import MAX_VALUE_CHARS, case_key, sanitize_class_name, sanitize_value

VOCAB_FILE = Path(__file__).with_name("vocab.json")
PROMPT_VERSION = "offline-1"
NOTICE = (
    "No LLM was used: these values come from Backdrop's built-in vocabulary, ranked by how unrelated each is "
    "to the class (text-embedding similarity). Set an OpenAI API key or a local OpenAI-compatible base_url to "
    "ask an LLM as in the paper, and review the list either way."
)

# Names the offline world may use for its value lists, module-level or as dataset class attributes.
_WORLD_NAMES = {
    "background": ("backgrounds", "BACKGROUNDS", "background_names", "BACKGROUND_NAMES"),
    "colour": ("colours", "COLOURS", "colors", "COLORS", "colour_names", "COLOUR_NAMES"),
}


def builtin_vocab() -> dict[str, list[str]]:
    """The packaged vocabulary: attribute name -> values."""
    return {k: list(v) for k, v in json.loads(VOCAB_FILE.read_text()).items()}


def _names(obj: Any) -> list[str]:
    if isinstance(obj, Mapping):
        obj = list(obj)
    if not isinstance(obj, (list, tuple)):
        return []
    out = []
    for item in obj:
        name = item if isinstance(item, str) else getattr(item, "name", None)
        if isinstance(name, str):
            out.append(name)
    return out


def world_values(attribute_name: str) -> list[str]:
    """The offline world's values for an attribute, read from ``core.world.dataset`` when it is importable."""
    try:
        world = importlib.import_module("core.world.dataset")
    except ImportError:
        return []
    holders = [world] + [v for v in vars(world).values() if isinstance(v, type) and v.__module__ == world.__name__]
    for holder in holders:
        for name in _WORLD_NAMES.get(attribute_name, ()):
            found = _names(getattr(holder, name, None))
            if found:
                return found
    return []


def _merge_unique(*lists: Sequence[str]) -> list[str]:
    out, seen = [], set()
    for values in lists:
        for v in values:
            v = sanitize_value(v, MAX_VALUE_CHARS)
            if v and case_key(v) not in seen:
                seen.add(case_key(v))
                out.append(v)
    return out


def offline_vocab(vocab: str | Sequence[str] | Mapping[str, Sequence[str]] = "builtin") -> dict[str, list[str]]:
    """attribute -> candidate values. "builtin": packaged vocabulary plus the world's values; "world": only the
    world's values; a list applies to every attribute; a mapping gives lists per attribute."""
    if isinstance(vocab, str):
        if vocab not in ("builtin", "world"):
            raise ProposalError(f"Unknown offline vocabulary {vocab!r}: use 'builtin', 'world', a list or a mapping.")
        base = builtin_vocab() if vocab == "builtin" else {}
        return {a: _merge_unique(base.get(a, []), world_values(a)) for a in set(base) | set(_WORLD_NAMES)}
    if isinstance(vocab, Mapping):
        return {str(a): _merge_unique(v) for a, v in vocab.items()}
    return {"*": _merge_unique(vocab)}


@PROPOSERS.register("offline", offline=True)
class OfflineProposer(Proposer):
    """Keeps the ``top_n`` values least similar to ``class_template`` (cosine of unit embeddings)."""

    def __init__(
        self,
        top_n: int = 10,
        embed: Embedder | None = None,
        vocab: str | Sequence[str] | Mapping[str, Sequence[str]] = "builtin",
        class_template: str = "a photo of a {class_name}",
        value_template: str = "{value}",
    ):
        if top_n < 1:
            raise ProposalError("top_n must be at least 1.")
        self.top_n = top_n
        self.embed = embed or default_embedder()
        self.vocab = offline_vocab(vocab)
        self.class_template, self.value_template = class_template, value_template
        self.source = f"offline:{embedder_id(self.embed)}"
        self.notice = NOTICE

    def __repr__(self) -> str:
        return f"OfflineProposer(top_n={self.top_n}, embedder={embedder_id(self.embed)!r})"

    def cache_id(self) -> dict[str, Any]:
        return {
            "kind": "offline",
            "prompt": PROMPT_VERSION,
            "embedder": embedder_id(self.embed),
            "top_n": self.top_n,
            "vocab": store.make_key(self.vocab),
            "templates": [self.class_template, self.value_template],
        }

    def values_for(self, attribute: Attribute) -> list[str]:
        values = self.vocab.get(attribute.name) or self.vocab.get("*")
        if not values:
            raise ProposalError(
                f"The offline proposer has no vocabulary for attribute {attribute.name!r}. Pass vocab=[...] (or "
                "{attribute: [...]}) to OfflineProposer, configure an LLM, or write the list by hand."
            )
        return values

    def rank(self, attribute: Attribute, class_name: str) -> list[tuple[str, float]]:
        """Every candidate value with its similarity to the class, least similar (most uncommon) first."""
        values = self.values_for(attribute)
        value_emb = cached_embeddings(self.embed, [self.value_template.format(value=v) for v in values])
        class_emb = embed_texts(self.embed, [self.class_template.format(class_name=class_name)])[0]
        sims = value_emb @ class_emb
        order = np.argsort(sims, kind="stable")
        return [(values[i], float(sims[i])) for i in order]

    def propose_one(self, attribute: Attribute, class_name: str) -> Proposal:
        ranked = self.rank(attribute, sanitize_class_name(class_name))[: self.top_n]
        return Proposal(
            class_name=class_name,
            attribute=attribute.name,
            values=[v for v, _ in ranked],
            source=self.source,
            raw=json.dumps([{"value": v, "similarity": round(s, 4)} for v, s in ranked]),
            prompt=(
                f"{len(self.values_for(attribute))} candidate {attribute.name} values ranked by low similarity "
                f"to {self.class_template.format(class_name=sanitize_class_name(class_name))!r}"
            ),
            timestamp=now_iso(),
            prompt_version=f"{attribute.prompt_version}/{PROMPT_VERSION}",
            notice=self.notice,
        )
