"""Merging redundant proposed values ("remove redundancies", paper 4.2), reporting every merge so it can be undone.

Two stages: values equal after normalising (case, spacing, hyphens, articles, leading in/on/at/inside,
trailing punctuation, plurals, compound spelling) merge outright; the rest merge when their text embeddings'
cosine similarity reaches ``threshold``. The first-seen value of a group is kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np

from core.describe.proposals.embed import Embedder, default_embedder, embed_texts, embedder_id
from core.describe.proposals.text import compact_key, display_value, normal_key, sanitize_value

# Measured on the packaged MiniLM (tests/test_dedupe.py): rephrasings such as "rainforest"/"tropical rainforest",
# "ocean floor"/"sea floor", "garbage dump"/"rubbish dump" score >= 0.87; distinct places such as "desert"/
# "underwater", "forest"/"jungle", "snow"/"ice" <= 0.65; narrower variants ("snowy mountain"/"mountain" 0.83,
# "brick wall"/"wall" 0.80) stay separate.
DEFAULT_THRESHOLD = 0.85


@dataclass(frozen=True)
class Merge:
    kept: str  # value that stays in the list (display form)
    dropped: str  # value merged into it, as the proposer wrote it (sanitised); re-add it to undo
    reason: str
    similarity: float  # 1.0 for normalisation merges, else the embedding cosine


@dataclass
class DedupeResult:
    values: list[str]
    merges: list[Merge] = field(default_factory=list)
    threshold: float | None = None
    embedder: str | None = None

    def merged_into(self, kept: str) -> list[str]:
        return [m.dropped for m in self.merges if m.kept == kept]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DedupeResult:
        return cls(
            values=list(d["values"]),
            merges=[Merge(**m) for m in d.get("merges", [])],
            threshold=d.get("threshold"),
            embedder=d.get("embedder"),
        )


def _join_compounds(keys: list[str]) -> list[str]:
    """Spell 'rain forest' as 'rainforest' when another value uses that word, so embeddings see one word."""
    words = {w for k in keys for w in k.split(" ")}
    out = []
    for key in keys:
        parts = key.split(" ")
        i, joined = 0, []
        while i < len(parts):
            if i + 1 < len(parts) and parts[i] + parts[i + 1] in words:
                joined.append(parts[i] + parts[i + 1])
                i += 2
            else:
                joined.append(parts[i])
                i += 1
        out.append(" ".join(joined))
    return out


def dedupe(
    values: Iterable[str], threshold: float | None = DEFAULT_THRESHOLD, embed: Embedder | None = None
) -> DedupeResult:
    """Distinct values (display form, first-seen order) and every merge made. ``threshold=None`` skips the
    embedding stage; ``embed`` defaults to the packaged MiniLM."""
    kept: list[tuple[str, str, str]] = []  # (display, normal key, compact key)
    said_of: list[str] = []  # each kept value's text as given (sanitised)
    merges: list[Merge] = []
    for value in values:
        said, shown, key, compact = sanitize_value(value), display_value(value), normal_key(value), compact_key(value)
        if not shown or not key:
            continue
        same = next((k for k in kept if k[1] == key or k[2] == compact), None)
        if same is None:
            kept.append((shown, key, compact))
            said_of.append(said)
        elif said != same[0]:
            merges.append(Merge(same[0], said, "same after normalising case, articles, plurals and spelling", 1.0))
    if threshold is None or len(kept) < 2:
        return DedupeResult([k[0] for k in kept], merges, threshold, None)

    embed = embed or default_embedder()
    emb = embed_texts(embed, _join_compounds([k[1] for k in kept]))
    survivors: list[int] = []
    for i in range(len(kept)):
        if survivors:
            sims = emb[survivors] @ emb[i]
            best = int(np.argmax(sims))
            if sims[best] >= threshold:
                keep = kept[survivors[best]][0]
                merges.append(
                    Merge(
                        keep,
                        said_of[i],
                        f"similar meaning (cosine {sims[best]:.2f} >= {threshold:.2f})",
                        round(float(sims[best]), 4),
                    )
                )
                continue
        survivors.append(i)
    return DedupeResult([kept[i][0] for i in survivors], merges, threshold, embedder_id(embed))


def dedupe_proposals(
    proposals: dict, threshold: float | None = DEFAULT_THRESHOLD, embed: Embedder | None = None
) -> dict[str, DedupeResult]:
    """``dedupe`` per class of a ``propose`` result (or of a plain {class: [values]} mapping)."""
    return {c: dedupe(getattr(p, "values", p), threshold, embed) for c, p in proposals.items()}
