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


# An open-vocabulary world's lists: of its renderable values, the OPEN_WORLD_SEEN_N least like the class (two
# thirds of the 30 uncommon for a class, so some true ones are missing), plus the OPEN_WORLD_OTHER_N least like
# it of the rest of the packaged vocabulary (values the world cannot render): 30 candidates per class.
OPEN_WORLD_SEEN_N = 20
OPEN_WORLD_OTHER_N = 10


def offline_options(dataset: Any) -> dict[str, Any]:
    """The offline proposer's options for ``dataset``.

    The closed offline world (``scenes-mnist``): its own values (``vocab="world"``). An open-vocabulary world
    (``open_vocabulary`` true, e.g. ``scenes-mnist-open``): the packaged vocabulary merged with the world's
    renderable values, all ranked by the same embedding; a class's list is the ``OPEN_WORLD_SEEN_N`` best
    ranked of the world's values (``seen``: values the data shows) and the ``OPEN_WORLD_OTHER_N`` best ranked
    of the rest, so it holds values the world cannot render, values that cause no failures, and not every
    value that does. Any other dataset: the packaged vocabulary.
    """
    from core.datasets.registry import is_offline_world

    if not is_offline_world(dataset):
        return {"vocab": "builtin"}
    if not getattr(dataset, "open_vocabulary", False):
        return {"vocab": "world"}
    base = builtin_vocab()
    vocab = {
        a: _merge_unique(base.get(a, []), _names(getattr(dataset, holders[0], None)))
        for a, holders in _WORLD_NAMES.items()
    }
    seen = {a: _names(getattr(dataset, holders[0], None)) for a, holders in _WORLD_NAMES.items()}
    return {"vocab": vocab, "top_n": OPEN_WORLD_OTHER_N, "seen": seen, "seen_n": OPEN_WORLD_SEEN_N}


@PROPOSERS.register("offline", offline=True)
class OfflineProposer(Proposer):
    """Keeps the ``top_n`` values least similar to ``class_template`` (cosine of unit embeddings).

    ``seen`` (attribute -> values known to occur in the data, such as an open-vocabulary world's renderable
    ones) with ``seen_n`` > 0: the ``seen_n`` least similar of those are kept as well, the ``top_n`` then
    counting the other values only; the list stays in rank order.
    """

    def __init__(
        self,
        top_n: int = 10,
        embed: Embedder | None = None,
        vocab: str | Sequence[str] | Mapping[str, Sequence[str]] = "builtin",
        class_template: str = "a photo of a {class_name}",
        value_template: str = "{value}",
        seen: Mapping[str, Sequence[str]] | None = None,
        seen_n: int = 0,
    ):
        if top_n < 1:
            raise ProposalError("top_n must be at least 1.")
        if seen_n < 0 or (seen_n and not seen):
            raise ProposalError("seen_n must be 0, or positive with the seen values given (seen={attribute: [...]}).")
        self.top_n, self.seen_n = top_n, seen_n
        self.seen = {str(a): {case_key(v) for v in _merge_unique(vs)} for a, vs in (seen or {}).items()}
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
            **(
                {"seen": store.make_key(sorted((a, sorted(v)) for a, v in self.seen.items())), "seen_n": self.seen_n}
                if self.seen_n
                else {}
            ),
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

    def shortlist(self, attribute: Attribute, ranked: list[tuple[str, float]]) -> list[tuple[str, float]]:
        """The ``top_n`` best ranked (and, with ``seen_n``, the ``seen_n`` best ranked seen values), in rank order."""
        seen = self.seen.get(attribute.name, set()) if self.seen_n else set()
        is_seen = [case_key(v) in seen for v, _ in ranked]
        keep_seen = set([i for i, s in enumerate(is_seen) if s][: self.seen_n])
        keep_other = set([i for i, s in enumerate(is_seen) if not s][: self.top_n])
        return [r for i, r in enumerate(ranked) if i in keep_seen | keep_other]

    def propose_one(self, attribute: Attribute, class_name: str) -> Proposal:
        ranked = self.shortlist(attribute, self.rank(attribute, sanitize_class_name(class_name)))
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
