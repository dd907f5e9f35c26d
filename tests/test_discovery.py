"""Discovery scored against ground truth: true failure slices, precision@k / recall@k of the modes found.

The unit tests plant slices in a small synthetic debug set; the world test scores a world model's textualization.
"""

from __future__ import annotations

import pandas as pd
import pytest

from core.describe.discovery import (
    failure_slices,
    norm_value,
    score_discovery,
    worst_slices,
)
from core.errors import InvalidInputError

VALUES = ["grass", "sand", "snow", "brick wall"]


class FakeWorld:
    """Two classes, four backgrounds, 20 debug images per (class, background)."""

    name = "fake-world"
    classes = ["zero", "one"]
    attributes = ("background",)

    def __init__(self, n_per_cell: int = 20):
        rows = [(f"{c}-{v}-{i}", c, v) for c in range(2) for v in VALUES for i in range(n_per_cell)]
        self.df = pd.DataFrame(rows, columns=["image_id", "label", "background"])

    def pools(self):
        return ["val"]

    def index(self, pool):
        return self.df.copy()


def debug_table(world: FakeWorld, fail_rate: dict) -> pd.DataFrame:
    """Each (class, background) cell fails on round(rate · n) of its images (default rate 0.1)."""
    t = world.df.copy()
    t["correct"] = True
    for (lab, v), g in t.groupby(["label", "background"]):
        n_fail = int(round(fail_rate.get((lab, v), 0.1) * len(g)))
        t.loc[g.index[:n_fail], "correct"] = False
    return t


def modes(pairs) -> pd.DataFrame:
    rows = [(FakeWorld.classes[lab], lab, v, rank) for lab, vals in pairs.items() for rank, v in enumerate(vals, 1)]
    return pd.DataFrame(rows, columns=["class_name", "label", "value", "rank"])


def test_planted_slices_are_found_and_nothing_else():
    w = FakeWorld()
    t = debug_table(w, {(0, "snow"): 0.8, (1, "sand"): 0.7, (1, "grass"): 0.75})
    s = failure_slices(t, w)
    true = set(zip(s.loc[s["true"], "label"], s.loc[s["true"], "value"]))
    assert true == {(0, "snow"), (1, "sand"), (1, "grass")}
    assert len(s) == 8 and s["p_adjusted"].ge(s["p_value"]).all()
    # per class worst first
    assert list(s[s["label"] == 1]["value"][:2]) == ["grass", "sand"]


def test_uniform_failures_give_no_slices():
    w = FakeWorld()
    s = failure_slices(debug_table(w, {}), w)  # every cell fails 10%: nothing stands out
    assert not s["true"].any()


def test_cells_under_the_minimum_size_are_not_tested():
    w = FakeWorld(n_per_cell=3)
    t = debug_table(w, {(0, "snow"): 1.0})  # 3 of 3 fail, but the cell is too small to call
    s = failure_slices(t, w, min_cell=5)
    assert s["p_value"].isna().all() and not s["true"].any()
    assert failure_slices(t, w, min_cell=3)["p_value"].notna().all()


def test_precision_and_recall_at_k():
    w = FakeWorld()
    s = failure_slices(debug_table(w, {(0, "snow"): 0.8, (1, "sand"): 0.7, (1, "grass"): 0.75}), w)
    # found: class 0 snow (hit), grass (miss); class 1 "the sand" (hit, the world's phrasing), brick wall (miss)
    found = modes({0: ["snow", "grass"], 1: ["the sand", "Brick  Wall"]})
    sc = score_discovery(found, s, k=2)
    assert (sc["hits"], sc["n_found"], sc["n_true"]) == (2, 4, 3)
    assert sc["precision"] == pytest.approx(0.5) and sc["recall"] == pytest.approx(2 / 3)
    # class 0 has one true slice for its two modes, class 1 two: a perfect namer scores 3 of 4
    assert sc["ceiling"] == pytest.approx(0.75)
    sc1 = score_discovery(found, s, k=1)  # only rank-1 modes
    assert sc1["precision"] == 1.0 and sc1["recall"] == pytest.approx(2 / 3) and sc1["ceiling"] == 1.0
    assert norm_value("  In the  Brick wall") == "brick wall"


def test_worst_slices_rank_by_true_failure_rate():
    w = FakeWorld()
    s = failure_slices(debug_table(w, {(0, "snow"): 0.8, (0, "sand"): 0.5, (1, "grass"): 0.75}), w)
    o = worst_slices(s, {0: 2, 1: 1})
    assert list(zip(o["label"], o["value"], o["rank"])) == [(0, "snow", 1), (0, "sand", 2), (1, "grass", 1)]


def test_bad_input_is_a_clear_error():
    w = FakeWorld()
    t = debug_table(w, {})
    with pytest.raises(InvalidInputError, match="α"):
        failure_slices(t, w, alpha=0.0)
    with pytest.raises(InvalidInputError, match="no ground truth"):
        failure_slices(t, w, attribute="colour")
    with pytest.raises(InvalidInputError, match="not in fake-world"):
        failure_slices(t.assign(image_id="elsewhere-" + t["image_id"]), w)
    with pytest.raises(InvalidInputError, match="lacks"):
        failure_slices(t.drop(columns="correct"), w)
    with pytest.raises(InvalidInputError, match="k must"):
        score_discovery(modes({0: ["snow"]}), failure_slices(t, w), k=0)


@pytest.mark.slow
def test_the_tiny_world_has_no_true_slices_and_clip_names_its_failures_backgrounds(tiny_world, world_clip):
    """What the README says of the tiny world: its (class, background) cells hold about 7 debug images each, too few
    for any to be a significant failure slice, so discovery precision@3 and its ceiling are 0 by construction (the
    precision@3 target is measured on the default world by benchmarks/fidelity.py); and the world CLIP names the
    true background of the failures it assigns (measured 0.971 over split seeds 0-2, chance 0.1)."""
    from core.describe.discovery import discovery_report
    from core.describe.textualize import textualize
    from core.find.runs import run_model
    from core.threads import single_thread
    from core.world.backbones import train_world_backbone

    with single_thread():
        train_world_backbone("world-resnet-s", tiny_world)
        run = run_model(tiny_world, "world-resnet-s")
        text = textualize(tiny_world, run, k=3, clip=world_clip)
    rep = discovery_report(tiny_world, run.table, text.modes, text.assignments, k=3)
    assert rep["n_true_slices"] == 0, rep
    assert rep["discovery_precision"] == 0.0 and rep["discovery_ceiling"] == 0.0, rep
    assert rep["assignment_chance"] == pytest.approx(0.1, abs=0.01), rep
    assert rep["assignment_coverage"] == 1.0, rep  # the closed world's lists are its 10 backgrounds
    assert rep["assignment_accuracy"] >= 0.9, rep


def test_the_line_says_how_many_failures_had_their_true_value_among_the_candidates():
    from core.describe.discovery import describe

    report = {
        "discovery_precision": 0.1,
        "discovery_ceiling": 0.25,
        "discovery_recall": 0.4,
        "n_true_slices": 6,
        "discovery_alpha": 0.05,
        "assignment_accuracy": 0.61,
        "assignment_chance": 0.022,
        "assignment_coverage": 0.7,
    }
    line = describe(report, 3)
    assert "assignment accuracy 0.610 (chance 0.022; the true value was a candidate for 0.700 of them)" in line
    assert "candidate" not in describe({**report, "assignment_coverage": 1.0}, 3)
    saved_before = {k: v for k, v in report.items() if k != "assignment_coverage"}  # reports saved before coverage
    assert describe(saved_before, 3).endswith("(chance 0.022)")
