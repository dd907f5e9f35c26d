"""Offline proposer: packaged vocabulary, the world's values, MiniLM ranking without network, pluggable embedders."""

from __future__ import annotations

import socket
import sys
import types

import numpy as np
import pytest

from core import store
from core.describe.proposals import (
    BACKGROUND,
    COLOUR,
    PROPOSERS,
    MiniLMEmbedder,
    OfflineProposer,
    ProposalError,
    builtin_vocab,
    choose_proposer,
    custom_attribute,
    offline_vocab,
    open_clip_text_embedder,
    propose,
    world_values,
)
from core.describe.proposals.embed import embed_texts
from core.errors import InvalidInputError, UnknownNameError

WORLD_BACKGROUNDS = [
    "grass",
    "gravel",
    "brick wall",
    "temple",
    "flowers",
    "coffee",
    "outer space",
    "sky",
    "moon surface",
    "coins",
    "cat fur",
]
WORLD_COLOURS = [
    "red",
    "green",
    "blue",
    "yellow",
    "white",
    "orange",
    "purple",
    "cyan",
    "pink",
    "magenta",
    "black",
    "brown",
    "grey",
]


@pytest.fixture(scope="module")
def minilm():
    """A MiniLM loaded and run while every non-loopback connection raises: it must never need the network."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"network access attempted: {address!r}")
        return real_connect(self, address)

    socket.socket.connect = guarded
    try:
        embed = MiniLMEmbedder()
        embed(["warm up"])
    finally:
        socket.socket.connect = real_connect
    return embed


class CountingEmbedder:
    """A deterministic bag-of-characters embedder that counts the texts it is asked to embed."""

    embedder_id = "char-counts"

    def __init__(self):
        self.seen = 0

    def __call__(self, texts):
        self.seen += len(texts)
        out = np.zeros((len(texts), 64), np.float32)
        for i, t in enumerate(texts):
            for ch in t.lower():
                out[i, ord(ch) % 64] += 1
        return out + 1e-3


def test_vocabulary_is_large_and_holds_the_world_names():
    vocab = builtin_vocab()
    assert len(vocab["background"]) >= 150 and len(set(vocab["background"])) == len(vocab["background"])
    assert set(WORLD_BACKGROUNDS) <= set(vocab["background"])
    assert set(WORLD_COLOURS) <= set(vocab["colour"])


def test_world_values_are_read_from_the_world_module(monkeypatch):
    class Bg:
        def __init__(self, name):
            self.name = name

    fake = types.ModuleType("core.world.dataset")
    fake.BACKGROUNDS = [Bg("lava lamp"), Bg("grass")]
    fake.COLOURS = {"chartreuse": (1, 2, 3), "red": (4, 5, 6)}
    monkeypatch.setitem(sys.modules, "core.world.dataset", fake)
    assert world_values("background") == ["lava lamp", "grass"]
    assert world_values("colour") == ["chartreuse", "red"]
    merged = offline_vocab()
    assert "lava lamp" in merged["background"] and "chartreuse" in merged["colour"]
    assert merged["background"].count("grass") == 1
    assert offline_vocab("world") == {"background": ["lava lamp", "grass"], "colour": ["chartreuse", "red"]}


def test_ranks_least_related_values_first(minilm, fresh_cache):
    proposer = OfflineProposer(embed=minilm)
    out = propose(BACKGROUND, ["goldfish", "camel", "cow", "penguin"], proposer=proposer)
    for cls, common in [("goldfish", "aquarium"), ("camel", "desert"), ("cow", "farm"), ("penguin", "iceberg")]:
        ranked = [v for v, _ in proposer.rank(BACKGROUND, cls)]
        assert common not in out[cls].values
        assert ranked.index(common) > 0.9 * len(ranked)  # a typical setting is among the most related
        assert out[cls].values == ranked[:10]
        sims = [s for _, s in proposer.rank(BACKGROUND, cls)]
        assert sims == sorted(sims)
    assert len({tuple(p.values) for p in out.values()}) == 4  # each class gets its own list
    p = out["camel"]
    assert p.source == "offline:minilm-l6-v2" and "No LLM" in p.notice
    assert len(p.values) == 10 and set(p.values) <= set(offline_vocab()["background"])


def test_top_n_colour_and_custom_vocabulary(minilm, fresh_cache):
    colours = propose(COLOUR, ["banana"], proposer=OfflineProposer(top_n=3, embed=minilm))["banana"].values
    assert len(colours) == 3 and set(colours) <= set(offline_vocab()["colour"]) and "yellow" not in colours
    texture = custom_attribute("texture", "Which unusual textures can a {class_name} have?")
    with pytest.raises(ProposalError, match="no vocabulary"):
        propose(texture, ["banana"], proposer=OfflineProposer(embed=minilm))
    got = propose(texture, ["banana"], proposer=OfflineProposer(embed=minilm, vocab=["furry", "glass", "peel"]))
    assert sorted(got["banana"].values) == ["furry", "glass", "peel"]


def test_pluggable_embedder_and_vocab_embedding_cache(fresh_cache):
    embed = CountingEmbedder()
    proposer = OfflineProposer(embed=embed, top_n=5)
    propose(BACKGROUND, ["cat"], proposer=proposer)
    n_vocab = len(offline_vocab()["background"])
    assert embed.seen == n_vocab + 1
    out = propose(BACKGROUND, ["dog", "horse"], proposer=proposer)
    assert embed.seen == n_vocab + 3  # vocabulary embeddings came from the cache
    assert out["dog"].source == "offline:char-counts"
    assert list((store.cache_root() / "embeddings").glob("char-counts-*/*.npy"))


def test_clip_text_tower_as_embedder(fresh_cache):
    open_clip = pytest.importorskip("open_clip")
    import torch

    torch.manual_seed(0)
    model = open_clip.CLIP(
        embed_dim=16,
        vision_cfg=dict(layers=1, width=32, head_width=16, patch_size=16, image_size=32),
        text_cfg=dict(context_length=16, vocab_size=49408, width=32, heads=2, layers=1),
    ).eval()
    embed = open_clip_text_embedder(model, open_clip.SimpleTokenizer(context_length=16), "tiny-clip")
    vectors = embed_texts(embed, ["a photo of a cat", "sky"])
    assert vectors.shape == (2, 16) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    out = propose(BACKGROUND, ["cat"], proposer=OfflineProposer(embed=embed, top_n=4))
    assert out["cat"].source == "offline:tiny-clip" and len(out["cat"].values) == 4


def test_registry_and_choice(monkeypatch):
    assert {"llm", "offline"} <= set(PROPOSERS)
    with pytest.raises(UnknownNameError, match="offline"):
        PROPOSERS.create("ofline")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert choose_proposer() == "offline" and choose_proposer("sk-x") == "llm"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-y")
    assert choose_proposer() == "llm"


def test_no_key_means_offline_with_a_notice(monkeypatch, fresh_cache):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    p = propose("background", ["cat"], embed=CountingEmbedder())["cat"]
    assert p.source.startswith("offline:") and p.notice


def test_attribute_validation():
    with pytest.raises(InvalidInputError, match="class_name"):
        custom_attribute("texture", "What textures are unusual?")
    with pytest.raises(InvalidInputError, match="placeholder"):
        custom_attribute("texture", "What {kind} can a {class_name} have?")
    with pytest.raises(InvalidInputError):
        custom_attribute("Bad Name!", "What can a {class_name} be?")
    with pytest.raises(InvalidInputError):
        propose("smell", ["cat"], proposer=OfflineProposer(embed=CountingEmbedder()))
    with pytest.raises(InvalidInputError, match="empty"):
        propose(BACKGROUND, ["cat", "  "], proposer=OfflineProposer(embed=CountingEmbedder()))
