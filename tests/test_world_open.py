"""The open-vocabulary world (``scenes-mnist-open``): many distinct backgrounds, candidate lists that are not its
truth, CLIP assignment over those lists scored against ground truth, and unrenderable modes skipped."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from core.config import DebugConfig
from core.datasets import create_dataset, is_offline_world
from core.describe.assign import assign, score_assignments
from core.describe.proposals.offline import OPEN_WORLD_OTHER_N, OPEN_WORLD_SEEN_N
from core.fix.experiments import default_generator
from core.fix.mitigate import generate_for_modes
from core.world.render import BACKGROUNDS


def _statistics(px: np.ndarray) -> np.ndarray:
    """Per image: mean and spread of each channel and its mean horizontal and vertical change (texture)."""
    x = px.astype(np.float32) / 255
    grad_x = np.abs(np.diff(x, axis=2)).mean((1, 2))
    grad_y = np.abs(np.diff(x, axis=1)).mean((1, 2))
    return np.concatenate([x.mean((1, 2)), x.std((1, 2)), grad_x, grad_y], 1)


def test_open_world_is_an_offline_world_sharing_the_closed_worlds_first_ten(open_world, tiny_world):
    world, _, _ = open_world
    assert is_offline_world(world) and is_offline_world("scenes-mnist-open")
    assert tiny_world.backgrounds == [b.name for b in BACKGROUNDS] and len(tiny_world.backgrounds) == 10
    assert world.backgrounds[:10] == tiny_world.backgrounds, "class k's common background is the same in both"
    assert [world.common_background(k) for k in range(10)] == tiny_world.backgrounds
    assert world.key != tiny_world.key and world.folder != tiny_world.folder
    assert create_dataset("scenes-mnist-open", size="tiny", seed=0).key == world.key  # reopened from its cache


def test_open_world_renders_at_least_24_measurably_distinct_backgrounds(open_world):
    """A nearest-centroid classifier on 12 colour/texture statistics, fitted on half of val and scored on the
    other half, tells the backgrounds apart (chance is 1/31), each of them well above chance."""
    world, _, _ = open_world
    df = world.index("val")
    assert len(world.backgrounds) == len(set(world.backgrounds)) >= 24
    assert set(df["background"]) == set(world.backgrounds), "val shows every background"
    f = _statistics(np.asarray(world.pixels("val")))
    f = (f - f.mean(0)) / f.std(0)
    bg = df["background"].to_numpy()
    fit = np.random.default_rng(0).random(len(df)) < 0.5
    centroids = np.stack([f[fit & (bg == b)].mean(0) for b in world.backgrounds])
    dist = ((f[~fit][:, None, :] - centroids[None]) ** 2).sum(-1)
    right = np.array(world.backgrounds)[dist.argmin(1)] == bg[~fit]
    per_background = pd.Series(right).groupby(bg[~fit]).mean()
    assert right.mean() >= 0.75, right.mean()  # measured 0.88
    assert per_background.min() >= 0.35, per_background.sort_values().head()  # chance 0.03; measured ≥ 0.5


def test_uncommon_images_spread_over_every_other_background(open_world):
    world, _, _ = open_world
    df = world.index("backbone_train")
    rare = df[~df["common_background"]]
    per_class = rare.groupby("label")["background"].nunique()
    assert (per_class == len(world.backgrounds) - 1).all(), per_class


def test_offline_lists_hold_25_or_more_candidates_and_are_not_the_worlds_values(open_world):
    world, lists, _ = open_world
    renderable = set(world.backgrounds)
    assert set(lists) == set(world.classes)
    for cls, values in lists.items():
        assert len(values) >= 25 and len(values) == OPEN_WORLD_SEEN_N + OPEN_WORLD_OTHER_N, (cls, values)
        unrenderable = [v for v in values if v not in renderable]
        assert len(unrenderable) == OPEN_WORLD_OTHER_N, (cls, unrenderable)
        assert set(values) != renderable and not renderable <= set(values), "some renderable values are left out"
    assert len({tuple(v) for v in lists.values()}) > 1, "lists are ranked per class"


def test_assignment_over_the_open_lists_is_scored_against_ground_truth(open_world):
    """CLIP names val images' backgrounds over each class's 30 candidates. Images whose true background is in the
    list are named right far above chance; the others can only be wrong, so accuracy is bounded by coverage."""
    world, lists, clip = open_world
    val = world.index("val").sample(300, random_state=0)
    out = assign(val, world, lists, clip)
    score = score_assignments(out, world)
    assert all(len(json.loads(p)) >= 25 for p in out["probs"])
    covered = np.array(
        [t in json.loads(p) for t, p in zip(val.set_index("image_id").loc[out["image_id"], "background"], out["probs"])]
    )
    right = (out["value"] == val.set_index("image_id").loc[out["image_id"], "background"].to_numpy()).to_numpy()
    assert 0.3 < score["coverage"] < 0.95, score  # lists hold some true values, not all
    assert right[covered].mean() >= 0.6, right[covered].mean()  # chance 1/30; measured 0.83
    assert score["accuracy"] >= 10 * score["chance"], score
    assert not right[~covered].any(), "a value that is not a candidate cannot be assigned"


def test_world_generator_skips_unrenderable_modes_with_a_message(open_world, fresh_cache):
    world, lists, _ = open_world
    rows = []
    for label in (0, 1):
        cls = world.classes[label]
        off = next(v for v in lists[cls] if v not in world.backgrounds)
        on = next(v for v in lists[cls] if v in world.backgrounds and v != world.common_background(label))
        rows += [(cls, label, off, 1), (cls, label, on, 2)]
    modes = pd.DataFrame(rows, columns=["class_name", "label", "value", "rank"])
    ours, random = generate_for_modes(world, modes, default_generator(world), DebugConfig(k_modes=2, images_per_mode=2))
    skipped = ours.attrs["skipped"]
    assert [(s["class_name"], s["value"]) for s in skipped] == [(c, v) for c, _, v, r in rows if r == 1]
    assert all("cannot render" in s["reason"] and "striped wallpaper" in s["reason"] for s in skipped), skipped
    assert set(zip(ours["class_name"], ours["value"])) == {(c, v) for c, _, v, r in rows if r == 2}
    assert len(ours) == len(random) == 4
