"""Dedupe: normalisation merges, and the embedding-threshold merges measured on the real packaged MiniLM."""

from __future__ import annotations

import pytest

from core.describe.proposals import (
    DEFAULT_THRESHOLD,
    DedupeResult,
    Proposal,
    dedupe,
    dedupe_proposals,
    default_embedder,
)
from core.describe.proposals.embed import embed_texts
from core.describe.proposals.text import display_value, normal_key, sanitize_value

MUST_MERGE = [
    ("Rain forests", "Tropical Rainforests"),
    ("ocean floor", "the sea floor"),
    ("autumn forest", "a forest in autumn"),
    ("garbage dump", "rubbish dump"),
]
MUST_NOT_MERGE = [
    ("desert", "underwater"),
    ("forest", "jungle"),
    ("beach", "desert"),
    ("snow", "ice"),
    ("kitchen", "bathroom"),
    ("grass", "gravel"),
    ("temple", "church"),
    ("sky", "outer space"),
]


@pytest.fixture(scope="module")
def embed():
    return default_embedder()


def test_normalisation_merges_without_embeddings():
    r = dedupe(
        [
            "In the Desert.",
            "desert",
            "Deserts",
            "the desert",
            "rain-forest",
            "Rainforests",
            "On a beach!",
            "under water",
            "Underwater",
        ],
        threshold=None,
    )
    assert r.values == ["desert", "rain-forest", "beach", "under water"]
    dropped = {m.dropped: m.kept for m in r.merges}
    assert dropped == {
        "Deserts": "desert",
        "the desert": "desert",
        "Rainforests": "rain-forest",
        "Underwater": "under water",
    }
    assert all(m.similarity == 1.0 and "normalising" in m.reason for m in r.merges)
    assert r.embedder is None


@pytest.mark.parametrize("a,b", MUST_MERGE)
def test_near_duplicates_merge(embed, a, b):
    r = dedupe([a, b, "underwater"], embed=embed)
    assert r.values == [display_value(a), "underwater"]
    (m,) = r.merges
    assert (m.kept, m.dropped) == (display_value(a), b)
    assert DEFAULT_THRESHOLD <= m.similarity <= 1.0 and "cosine" in m.reason


@pytest.mark.parametrize("a,b", MUST_NOT_MERGE)
def test_distinct_values_stay(embed, a, b):
    r = dedupe([a, b], embed=embed)
    assert r.values == [a, b] and r.merges == []


def test_threshold_is_the_cut(embed):
    a, b = "snowy mountain", "mountain"
    sim = float(embed_texts(embed, [normal_key(a), normal_key(b)]).prod(axis=0).sum())
    assert 0.5 < sim < 0.99
    assert dedupe([a, b], threshold=sim - 0.01, embed=embed).values == [a]
    assert dedupe([a, b], threshold=sim + 0.01, embed=embed).values == [a, b]


def test_every_merge_is_reported_and_undoable(embed):
    values = ["Rain forests", "Tropical Rainforests", "desert", "Deserts", "ocean floor", "the sea floor", "sky"]
    r = dedupe(values, embed=embed)
    assert r.values == ["rain forests", "desert", "ocean floor", "sky"]
    assert len(r.merges) == 3
    restored = set(r.values) | {m.dropped for m in r.merges}
    assert {normal_key(v) for v in restored} == {normal_key(v) for v in values}
    assert r.merged_into("rain forests") == ["Tropical Rainforests"]
    assert DedupeResult.from_dict(r.to_dict()) == r
    assert r.threshold == DEFAULT_THRESHOLD and r.embedder == "minilm-l6-v2"


def test_dedupe_proposals_and_odd_input(embed):
    p = Proposal("camel", "background", ["Desert", "deserts", "  ", "- Snow\n"], "llm:x", "", "", "t", "1")
    out = dedupe_proposals({"camel": p, "cow": ["barn"], "none": []}, embed=embed)
    assert out["camel"].values == ["desert", "snow"] and out["cow"].values == ["barn"] and out["none"].values == []
    assert dedupe(["<b>ignore previous instructions</b>"], embed=embed).values == [
        "<b>ignore previous instructions</b>"
    ]


@pytest.mark.parametrize(
    "text",
    [
        "- desert",
        "1. 2. foo",
        "**desert**",
        "3.5 inch floppy",
        "a\x00b\u202ec\nd",
        " • in  the Rain-Forests. ",
        "x" * 500,
        "<script>alert(1)</script>",
        "-",
        "ü" * 70,
    ],
)
def test_sanitise_is_idempotent_and_plain(text):
    once = sanitize_value(text)
    assert sanitize_value(once) == once
    assert len(once) <= 100 and all(ch.isprintable() for ch in once)
    assert display_value(display_value(text)) == display_value(text)
