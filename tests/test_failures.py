import numpy as np
import pandas as pd
import pytest

from core.find import failures as F
from core.find import overlap as O


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
    assert t.loc[0, "top1"] == 1 and [f"top{j}" in t for j in range(1, 7)] == [True] * 5 + [False]
    # stable: the same split every time
    pd.testing.assert_series_equal(t["split"], table(labels, preds)["split"])


def test_iou_matrix_by_hand():
    ious, inter = O.iou_matrix({"a": ["1", "2", "3"], "b": ["2", "3", "4", "5"], "c": []})
    assert inter.loc["a", "b"] == 2 and abs(ious.loc["a", "b"] - 2 / 5) < 1e-6
    assert ious.loc["a", "a"] == 1.0 and ious.loc["c", "c"] == 0.0 and ious.loc["a", "c"] == 0.0
    fam = O.family_average(ious, {"a": "X", "b": "X", "c": "Y"})
    assert abs(fam.loc["X", "X"] - 0.4) < 1e-6


def test_compare_pair():
    ta = table([0, 0, 1, 1], [1, 1, 1, 0], ids=["p", "q", "r", "s"])
    tb = table([0, 0, 1, 1], [1, 0, 0, 1], ids=["p", "q", "r", "s"])
    parts = O.compare_pair(ta, tb)
    assert set(parts["both"]["image_id"]) == {"p"}
    assert set(parts["only_a"]["image_id"]) == {"q", "s"}
    assert set(parts["only_b"]["image_id"]) == {"r"}


def test_iou_fast_path_on_shared_masks_equals_the_id_path():
    rng = np.random.default_rng(0)
    ids = np.array([f"val/{i:04d}" for i in range(500)])
    masks = {f"m{m}": rng.random(500) < 0.2 + 0.1 * m for m in range(4)}
    fast_iou, fast_inter = O.iou_matrix(masks)
    slow_iou, slow_inter = O.iou_matrix({n: ids[m] for n, m in masks.items()})
    pd.testing.assert_frame_equal(fast_inter, slow_inter)
    np.testing.assert_allclose(fast_iou.to_numpy(), slow_iou.to_numpy(), atol=1e-6)
    a, b = masks["m0"], masks["m3"]
    assert abs(fast_iou.loc["m0", "m3"] - (a & b).sum() / (a | b).sum()) < 1e-6


def test_masks_over_debug_sets_of_different_sizes_are_refused():
    import pytest

    from core.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="a: 2, b: 3"):
        O.iou_matrix({"a": np.array([True, False]), "b": np.array([True, False, True])})


def test_mean_pairwise_iou_leaves_out_the_diagonal():
    ious, _ = O.iou_matrix({"a": ["1", "2", "3"], "b": ["2", "3", "4", "5"], "c": ["5"]})
    expected = np.mean([2 / 5, 0.0, 1 / 4])
    assert abs(O.mean_pairwise_iou(ious) - expected) < 1e-6
    assert np.isnan(O.mean_pairwise_iou(ious.loc[["a"], ["a"]]))


def write_run(folder, t):
    folder.mkdir(parents=True, exist_ok=True)
    t.to_parquet(folder / "failures.parquet", index=False)
    return folder


def test_failure_table_reader_keeps_the_schema_and_unpacks_older_list_columns(tmp_path):
    from core.find.runs import read_failure_table

    t = table([0, 0, 1, 1, 2], [1, 0, 0, 1, 2])
    new = read_failure_table(write_run(tmp_path / "new", t))
    pd.testing.assert_frame_equal(new, t, check_dtype=False)  # strings may come back as a string dtype
    legacy = t.drop(columns=[f"top{j}" for j in range(1, 6)])
    legacy["top5"] = [list(r) for r in t[[f"top{j}" for j in range(1, 6)]].to_numpy()]
    old = read_failure_table(write_run(tmp_path / "old", legacy))
    assert list(old.columns) == list(legacy.columns.drop("top5")) + [f"top{j}" for j in range(1, 6)]
    pd.testing.assert_frame_equal(old[t.columns], t, check_dtype=False)
    two = read_failure_table(tmp_path / "old", ["image_id", "top2"])
    assert list(two.columns) == ["image_id", "top2"] and (two["top2"] == t["top2"]).all()


def test_failure_table_reader_says_what_to_do_when_the_table_is_missing(tmp_path):
    import pytest

    from core.errors import MissingResourceError
    from core.find.runs import read_failure_table

    with pytest.raises(MissingResourceError, match="run the model again"):
        read_failure_table(tmp_path / "nowhere")


def test_overlap_of_runs_matches_hand_counts_with_and_without_a_shared_debug_set(tmp_path):
    ids = ["p", "q", "r", "s"]
    a = write_run(tmp_path / "a", table([0, 0, 1, 1], [1, 1, 1, 0], ids=ids))  # fails p, q, s
    b = write_run(tmp_path / "b", table([0, 0, 1, 1], [1, 0, 0, 1], ids=ids))  # fails p, r
    iou, inter = O.overlap_of_runs({"a": a, "b": b})
    assert inter.loc["a", "b"] == 1 and abs(iou.loc["a", "b"] - 1 / 4) < 1e-6
    # another debug set (other ids, other order): the id path, same answer for the ids they share
    c = write_run(tmp_path / "c", table([1, 0, 0], [0, 1, 0], ids=["r", "p", "x"]))  # fails r, p
    iou, inter = O.overlap_of_runs({"a": a, "c": c})
    assert inter.loc["a", "c"] == 1 and abs(iou.loc["a", "c"] - 1 / 4) < 1e-6
    iou, _ = O.overlap_of_runs({"b": b, "c": c})
    assert iou.loc["b", "c"] == 1.0


def test_latest_runs_keeps_the_newest_run_per_model(fresh_cache):
    import os
    from types import SimpleNamespace

    from core import store
    from core.find.runs import latest_runs

    ds = SimpleNamespace(key="ds-key")
    for i, (model, key) in enumerate([("m1", "old"), ("m1", "new"), ("m2", "only")]):
        path = store.save_json(fresh_cache / "runs" / "ds-key" / model / key / "summary.json", {"model": model})
        os.utime(path, (1000 + i, 1000 + i))
    runs = latest_runs(ds)
    assert sorted(runs) == ["m1", "m2"]
    assert runs["m1"]["folder"].endswith("/m1/new") and runs["m2"]["folder"].endswith("/m2/only")


def test_latest_runs_prefers_the_default_settings_over_a_newer_run_with_other_ones(fresh_cache):
    import os
    from dataclasses import asdict
    from types import SimpleNamespace

    from core import store
    from core.config import HeadConfig, SplitConfig
    from core.find.runs import latest_runs

    ds = SimpleNamespace(key="ds-key")
    default = {"split_config": asdict(SplitConfig()), "head_config": asdict(HeadConfig())}
    reseeded = {"split_config": asdict(SplitConfig(seed=1)), "head_config": asdict(HeadConfig())}
    made = [("m1", "default", default), ("m1", "reseeded", reseeded), ("m2", "reseeded", reseeded)]
    for i, (model, key, cfg) in enumerate(made):  # in this order, so m1's reseeded run is the newer
        path = store.save_json(fresh_cache / "runs" / "ds-key" / model / key / "summary.json", {"model": model, **cfg})
        os.utime(path, (1000 + i, 1000 + i))
    runs = latest_runs(ds)
    assert runs["m1"]["folder"].endswith("/m1/default"), "a repeat's run does not replace the one the pages show"
    assert runs["m2"]["folder"].endswith("/m2/reseeded"), "a model with only other settings still shows"
    assert latest_runs(ds, SplitConfig(seed=1))["m1"]["folder"].endswith("/m1/reseeded")


@pytest.mark.parametrize("m,n", [(1, 1), (3, 63), (7, 64), (9, 1000), (13, 4097)])
def test_packed_popcount_intersections_equal_a_matrix_product(m, n):
    rng = np.random.default_rng(m * n)
    B = rng.random((m, n)) < rng.uniform(0.05, 0.95, size=(m, 1))
    ref = B.astype(np.int64) @ B.astype(np.int64).T
    np.testing.assert_array_equal(O.intersections(B), ref)
    np.testing.assert_array_equal(O.intersections(B, block=1), ref)
