"""Edits of the failures themselves: exact on the tiny world, image-to-image on a tiny random diffusers pipeline."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.errors import InvalidInputError
from core.fix.generators import GenSpec, create_generator, generate_set, render_prompt
from core.world.generator import edit_world_image
from core.world.render import mnist


def mode(world, cls, value, n, attribute="background"):
    lab = world.classes.index(cls)
    return GenSpec(cls, lab, attribute, value, render_prompt("A photo of {class_name} {value}", cls, value), n)


def test_naming_an_images_own_values_gives_back_its_pixels(tiny_world):
    val = tiny_world.pixels("val")
    for j in range(0, len(val), 37):
        img, _ = edit_world_image(tiny_world, f"val/{j:05d}")
        assert np.array_equal(np.asarray(img), val[j]), j


def test_an_edit_keeps_the_digit_and_changes_only_the_background(tiny_world):
    src_id = "val/00010"
    row = tiny_world.index("val").iloc[10]
    new_bg = next(b for b in tiny_world.backgrounds if b != row["background"])
    img, info = edit_world_image(tiny_world, src_id, background=new_bg)
    assert (info["label"], info["digit_index"], info["colour"]) == (row["label"], row["digit_index"], row["colour"])
    assert info["background"] == new_bg and info["from_background"] == row["background"]
    orig = tiny_world.pixels("val")[10].astype(int)
    other = next(c for c in tiny_world.colours if c != row["colour"])
    recoloured, _ = edit_world_image(tiny_world, src_id, colour=other)
    digit = (np.asarray(recoloured).astype(int) != orig).any(-1)  # where the digit is drawn
    assert 100 <= digit.sum() <= 0.6 * digit.size
    both, _ = edit_world_image(tiny_world, src_id, background=new_bg, colour=other)
    # on the new background the digit sits in the same pixels (faint edge pixels may round alike)
    moved = (np.asarray(both).astype(int) != np.asarray(img).astype(int)).any(-1)
    assert (moved & digit).sum() / (moved | digit).sum() >= 0.9
    assert (np.asarray(img).astype(int) != orig).any(-1)[~digit].mean() > 0.5  # the background did change
    back, _ = edit_world_image(tiny_world, src_id, background=row["background"])
    assert np.array_equal(np.asarray(back), tiny_world.pixels("val")[10])
    assert mnist()[1][info["digit_index"]] == info["label"]


def seed_failures_of(world, n_per_class=3):
    """Stand-in for a model's debug_seed failures: the first val images of each class."""
    df = world.index("val")
    return df.groupby("label").head(n_per_class)[["image_id", "label"]].reset_index(drop=True)


def test_edits_put_each_classs_failures_on_the_requested_value(fresh_cache, tiny_world):
    sources = seed_failures_of(tiny_world)
    gen = create_generator("edits", dataset=tiny_world, sources=sources)
    reqs = [mode(tiny_world, "three", "grass", 5), mode(tiny_world, "seven", "pink", 4, attribute="colour")]
    gset = generate_set(gen, reqs, "edits")
    man = gset.manifest()
    assert man["file"].notna().all() and len(man) == 9
    val = tiny_world.index("val").set_index("image_id")
    for row, info in zip(man.itertuples(), map(json.loads, man["info"])):
        src = info["source_id"]
        assert src in set(sources[sources["label"] == row.label]["image_id"])
        assert info["digit_index"] == val.loc[src, "digit_index"]
        attr = "background" if row.value == "grass" else "colour"
        assert info[attr] == row.value
    three = [json.loads(i)["source_id"] for i in man[man["class_name"] == "three"]["info"]]
    assert len(set(three[:3])) == 3  # every failure of the class is used before one repeats
    # failures that do not already show the value come first
    shows = [val.loc[s, "background"] == "grass" for s in three[:3]]
    assert shows == sorted(shows)


def test_edits_random_baseline_uses_training_values(fresh_cache, tiny_world):
    gen = create_generator("edits", dataset=tiny_world, sources=seed_failures_of(tiny_world))
    req = GenSpec("two", 2, None, None, "A photo of two", 20)
    man = generate_set(gen, [req], "edits-random").manifest()
    common = np.mean([json.loads(i)["common_background"] for i in man["info"]])
    assert common >= 0.75  # the training distribution shows the common background 95% of the time


def test_edits_refuse_a_class_without_failures_and_a_value_the_world_cannot_paint(tiny_world):
    sources = seed_failures_of(tiny_world)
    gen = create_generator("edits", dataset=tiny_world, sources=sources[sources["label"] != 4])
    with pytest.raises(InvalidInputError, match="No debug_seed failure"):
        gen.validate([mode(tiny_world, "four", "grass", 2)])
    with pytest.raises(InvalidInputError, match="cannot render"):
        gen.validate([mode(tiny_world, "three", "desert", 2)])
    with pytest.raises(InvalidInputError, match="images to edit"):
        create_generator("edits", dataset=tiny_world)


def real_tier_failures():
    from tests.fakes import ColourDataset

    ds = ColourDataset(n_per_class=3, n_classes=2)
    return ds, pd.DataFrame({"image_id": ["val/0/0", "val/0/1", "val/1/0"], "label": [0, 0, 1]})


@pytest.fixture(scope="module")
def tiny_pipe(tmp_path_factory):
    from tests.tiny_diffusers import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("diffusers") / "tiny-sd")


def test_real_tier_edits_run_image_to_image_and_reproduce_from_seeds(fresh_cache, tiny_pipe):
    from core.threads import single_thread
    from tests.tiny_diffusers import TINY_SIZE, TINY_STEPS

    ds, sources = real_tier_failures()
    reqs = [
        GenSpec("class0", 0, "background", "beach", "A photo of class0 beach", 3),
        GenSpec("class1", 1, "background", "snow", "A photo of class1 snow", 2),
    ]

    def make():
        return create_generator(
            "edits", dataset=ds, sources=sources, model_id=str(tiny_pipe), num_inference_steps=TINY_STEPS, strength=0.5
        )

    with single_thread():
        a = generate_set(make(), reqs, "img2img-a", seed=3)
        b = generate_set(make(), reqs, "img2img-b", seed=3)
    man = a.manifest()
    assert man["file"].notna().all() and len(man) == 5
    srcs = [json.loads(i)["source_id"] for i in man["info"]]
    assert srcs == ["val/0/0", "val/0/1", "val/0/0", "val/1/0", "val/1/0"]  # each class's failures in turn
    for i in man["image_id"]:
        x, y = np.asarray(a.load(i)), np.asarray(b.load(i))
        assert x.shape == (TINY_SIZE, TINY_SIZE, 3) and np.array_equal(x, y)
