import numpy as np
import pandas as pd

from core.find import failures as F


def table(labels, preds, ids=None):
    n = len(labels)
    df = pd.DataFrame({"image_id": ids or [f"img{i}" for i in range(n)], "label": labels})
    logits = np.full((n, 6), -5.0)
    logits[np.arange(n), preds] = 5.0
    return F.failure_table(df, logits, seed=0)


def test_failures_are_wrong_predictions_split_in_balanced_halves():
    labels = [0] * 10 + [1] * 7 + [2] * 3
    preds = [1] * 9 + [0] + [0] * 7 + [2] * 3
    t = table(labels, preds)
    wrong = F.failures(t)
    assert len(wrong) == 16 and (wrong["pred"] != wrong["label"]).all()
    seed, held = F.failures(t, "seed"), F.failures(t, "heldout")
    assert set(seed.index).isdisjoint(held.index) and len(seed) + len(held) == 16
    counts = F.per_class_counts(t, ["a", "b", "c", "d", "e", "f"]).set_index("label")
    assert counts.loc[0, "n_seed"] == 5 and counts.loc[0, "n_heldout"] == 4
    assert counts.loc[1, "n_seed"] == 4 and counts.loc[1, "n_heldout"] == 3
    assert counts.loc[2, "n_failures"] == 0 and counts.loc[3, "n_debug"] == 0
    assert t.loc[0, "top5"][0] == 1 and len(t.loc[0, "top5"]) == 5
    # stable: the same split every time
    pd.testing.assert_series_equal(t["split"], table(labels, preds)["split"])


def test_iou_matrix_by_hand():
    ious, inter = F.iou_matrix({"a": ["1", "2", "3"], "b": ["2", "3", "4", "5"], "c": []})
    assert inter.loc["a", "b"] == 2 and abs(ious.loc["a", "b"] - 2 / 5) < 1e-6
    assert ious.loc["a", "a"] == 1.0 and ious.loc["c", "c"] == 0.0 and ious.loc["a", "c"] == 0.0
    fam = F.family_average(ious, {"a": "X", "b": "X", "c": "Y"})
    assert abs(fam.loc["X", "X"] - 0.4) < 1e-6


def test_compare_pair():
    ta = table([0, 0, 1, 1], [1, 1, 1, 0], ids=["p", "q", "r", "s"])
    tb = table([0, 0, 1, 1], [1, 0, 0, 1], ids=["p", "q", "r", "s"])
    parts = F.compare_pair(ta, tb)
    assert set(parts["both"]["image_id"]) == {"p"}
    assert set(parts["only_a"]["image_id"]) == {"q", "s"}
    assert set(parts["only_b"]["image_id"]) == {"r"}
