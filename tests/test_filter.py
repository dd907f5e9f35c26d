"""CLIP filtering of generated sets on the tiny world: wrong images dropped (kept in trash, restorable), scores in
the manifest, and mitigation using only the kept images."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.config import DebugConfig, FilterConfig
from core.errors import InvalidInputError
from core.fix.generators import GenSpec, generate_set, render_prompt
from core.fix.generators.clip_filter import dropped_by_filter, filter_report, filter_set, match_counts
from core.fix.mitigate import select_images
from core.world.generator import WorldRenderer

# The world CLIP reads backgrounds (98% zero-shot on the tiny world's val, measured) better than digits (65%,
# chance 10%): its class test at 0.5 would keep only 61% of val images showing the intended digit (and drop 97%
# of those showing another), so on the world the filter is judged on values: its class test is switched off.
WORLD = FilterConfig(min_class_prob=0.0)


class HalfWrong(WorldRenderer):
    """The world renderer, except that every odd slot shows another class on another background (a generator
    that sometimes ignores its prompt); the truth says which."""

    name = "half-wrong"

    def generate_batch(self, prompts, seeds, specs, should_stop=None):
        images, info = [], []
        for spec, seed in zip(specs, seeds):
            wrong = seed % 2 == 1
            label = (spec.label + 5) % 10 if wrong else spec.label
            bg = spec.value
            if wrong and bg is not None:
                bg = self.world.backgrounds[(self.world.backgrounds.index(bg) + 3) % 10]
            img, truth = self.world.render(label, background=bg, seed=int(seed))
            images.append(img)
            info.append({"wrong": wrong, "label_shown": truth["label"], "background": bg})
        self.last_info = info
        return images


def mode(world, cls, value, n):
    lab = world.classes.index(cls)
    return GenSpec(cls, lab, "background", value, render_prompt("A photo of {class_name} {value}", cls, value), n)


@pytest.fixture
def half_wrong_set(fresh_cache, tiny_world):
    reqs = [mode(tiny_world, c, v, 10) for c, v in (("three", "grass"), ("seven", "flowers"), ("one", "temple"))]
    return generate_set(HalfWrong(world=tiny_world), reqs, "half-wrong"), reqs


def truth(gset) -> dict[str, bool]:
    return {i: json.loads(x)["wrong"] for i, x in zip(gset.manifest()["image_id"], gset.manifest()["info"])}


def test_filter_drops_the_images_that_show_something_else(half_wrong_set, tiny_world, world_clip):
    gset, _ = half_wrong_set
    wrong = truth(gset)
    assert 8 <= sum(wrong.values()) <= 22  # the fixture makes wrong images (seed parity)
    report = filter_set(gset, world_clip, WORLD, classes=tiny_world.classes, values=tiny_world.backgrounds)
    dropped = set(dropped_by_filter(gset)["image_id"])
    n_wrong = sum(wrong.values())
    caught = sum(wrong[i] for i in dropped) / n_wrong
    false_drop = sum(not wrong[i] for i in dropped) / (len(wrong) - n_wrong)
    assert caught >= 0.8 and false_drop <= 0.3, (caught, false_drop)
    assert report["dropped"].sum() == len(dropped) and report["scored"].sum() == 30
    assert (report["kept"] + report["dropped"] == 10).all()
    # dropped images stay in the set, deleted (file in trash/), with scores and a reason in the manifest
    man = gset.manifest().set_index("image_id")
    for i in dropped:
        rec = json.loads(man.loc[i, "info"])["clip_filter"]
        assert man.loc[i, "deleted"] and not rec["kept"] and rec["reason"].startswith("CLIP filter:")
        assert (gset.root / "trash" / f"{i}.png").is_file()
    kept = set(gset.index()["image_id"])
    assert not kept & dropped and all("class_prob" in json.loads(man.loc[i, "info"])["clip_filter"] for i in kept)


def test_restored_images_are_never_dropped_again(half_wrong_set, tiny_world, world_clip):
    gset, _ = half_wrong_set
    filter_set(gset, world_clip, WORLD, classes=tiny_world.classes, values=tiny_world.backgrounds)
    dropped = list(dropped_by_filter(gset)["image_id"])
    assert dropped
    gset.restore(dropped[:2])
    report = filter_set(
        gset, world_clip, FilterConfig(min_class_prob=0.0, min_value_prob=0.9), classes=tiny_world.classes
    )
    assert set(dropped[:2]) <= set(gset.index()["image_id"])
    assert filter_report(gset)["restored"].sum() == 2 == report["restored"].sum()


def test_user_deleted_images_are_left_alone(half_wrong_set, tiny_world, world_clip):
    gset, _ = half_wrong_set
    first = gset.manifest()["image_id"].iloc[0]
    gset.delete([first])
    filter_set(gset, world_clip, classes=tiny_world.classes)
    info = gset.manifest().set_index("image_id").loc[first, "info"]
    assert "clip_filter" not in json.loads(info) and first not in set(gset.index()["image_id"])


def test_keep_fraction_keeps_the_top_share_of_each_mode(half_wrong_set, tiny_world, world_clip):
    gset, _ = half_wrong_set
    report = filter_set(gset, world_clip, FilterConfig(keep_fraction=0.7), classes=tiny_world.classes)
    assert (report["kept"] == 7).all() and (report["dropped"] == 3).all()
    man = gset.manifest()
    for _, g in man.groupby("class_name"):
        recs = [json.loads(x)["clip_filter"] for x in g["info"]]
        kept = [r["score"] for r in recs if r["kept"]]
        gone = [r["score"] for r in recs if not r["kept"]]
        assert min(kept) >= max(gone)


def test_a_looser_rerun_brings_back_what_it_dropped(half_wrong_set, tiny_world, world_clip):
    gset, _ = half_wrong_set
    filter_set(gset, world_clip, FilterConfig(keep_fraction=0.5), classes=tiny_world.classes)
    assert len(gset.index()) == 15
    filter_set(gset, world_clip, FilterConfig(keep_fraction=1.0), classes=tiny_world.classes)
    assert len(gset.index()) == 30


def test_mitigation_uses_only_kept_images_with_matched_counts(half_wrong_set, tiny_world, world_clip):
    gset, reqs = half_wrong_set
    filter_set(gset, world_clip, WORLD, classes=tiny_world.classes, values=tiny_world.backgrounds)
    ours = select_images(gset, reqs)
    assert not set(ours["image_id"]) & set(dropped_by_filter(gset)["image_id"])
    rand_reqs = [
        GenSpec(r.class_name, r.label, None, None, render_prompt("A photo of {class_name}", r.class_name), 10)
        for r in reqs
    ]
    rand = select_images(generate_set(WorldRenderer(world=tiny_world), rand_reqs, "rand"), rand_reqs)
    a, b = match_counts(ours, rand)
    assert a.groupby("label").size().equals(b.groupby("label").size())
    assert len(a) == len(ours) < len(rand)


def test_generate_for_modes_filters_both_sets(fresh_cache, tiny_world, world_clip):
    import pandas as pd

    from core.fix.mitigate import generate_for_modes

    modes = pd.DataFrame({"class_name": ["three", "seven"], "label": [3, 7], "value": ["grass", "flowers"]})
    cfg = DebugConfig(k_modes=1, images_per_mode=6)
    gen = HalfWrong(world=tiny_world)
    ours, rand = generate_for_modes(tiny_world, modes, gen, cfg, clip_filter=WORLD, clip=world_clip)
    assert ours.groupby("label").size().equals(rand.groupby("label").size())
    assert sum(r["dropped"] for r in ours.attrs["filtered"]) > 0
    shown = {i: json.loads(x)["wrong"] for s in ours["set"].unique() for i, x in _infos(s)}
    assert np.mean([shown[i] for i in ours["image_id"]]) < 0.25  # half were wrong before filtering


def _infos(set_name):
    from core.fix.generators import GeneratedSet

    man = GeneratedSet(set_name).manifest()
    return zip(man["image_id"], man["info"])


def test_bad_filter_settings_say_what_is_wrong(half_wrong_set, world_clip):
    gset, _ = half_wrong_set
    with pytest.raises(InvalidInputError, match="keep fraction"):
        filter_set(gset, world_clip, FilterConfig(keep_fraction=0.0))
    with pytest.raises(InvalidInputError, match="min class prob"):
        filter_set(gset, world_clip, FilterConfig(min_class_prob=1.5))


def test_a_set_with_every_image_dropped_selects_none(half_wrong_set):
    gset, reqs = half_wrong_set
    gset.delete(list(gset.manifest()["image_id"]))  # as a filter that drops everything leaves it
    rows = select_images(gset, reqs)
    assert rows.empty and {"image_id", "label", "set"} <= set(rows.columns)
