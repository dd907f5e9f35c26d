"""Repeats and uncertainty without a world: paired tests over repeats (and per sweep point), the verdict's
wording from the numbers it is given, and the displays of a repeated experiment (mean ± CI, error bars, colours)."""

from __future__ import annotations

import pandas as pd
import pytest

from core.display import METHOD_COLOURS, method_bars, repeats_figure, repeats_table, sweep_figure
from core.fix.mitigate import gains
from core.fix.repeats import paired_tests, summarize, verdict, verdicts

N = 100  # heldout images per repeat


def predictions(ours_only: list[int], other_only: list[int], both: int = 20, **point) -> pd.DataFrame:
    """Per-image correctness of ours and random over repeats: in repeat r, ``both`` images both heads get right,
    ``ours_only[r]`` only ours, ``other_only[r]`` only random, the rest neither."""
    parts = []
    for r, (a, b) in enumerate(zip(ours_only, other_only)):
        ids = [f"img{i}" for i in range(N)]
        ours = [i < both + a for i in range(N)]
        other = [i < both or both + a <= i < both + a + b for i in range(N)]
        for method, correct in (("ours", ours), ("random", other)):
            parts.append(
                pd.DataFrame({"model": "m", "method": method, "image_id": ids, "split": "heldout", "correct": correct})
                .assign(repeat=r, **point)
            )  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def test_verdict_is_not_significant_when_the_interval_includes_zero_although_mcnemar_rejects():
    # repeat 0: ours gets 30 more images right; repeat 1: random gets 2 more: pooled, McNemar rejects (32
    # discordant pairs, 30 to 2), but two repeats that disagree in sign give an interval around 0
    row = paired_tests(predictions([30, 0], [0, 2])).iloc[0]
    assert row["p_value"] < 1e-5 and row["diff_ci_low"] < 0 < row["diff_ci_high"]
    said = verdict(row)
    assert "not significant" in said and "CI includes 0 although p < α" in said, said
    assert said.startswith("ours − random on debug_heldout: +0.140 (95% CI ")


def test_verdict_is_significant_only_when_p_and_the_interval_agree():
    consistent = paired_tests(predictions([10, 12, 11], [0, 1, 0])).iloc[0]
    assert consistent["p_value"] < 0.05 and consistent["diff_ci_low"] > 0
    assert "ours is significantly better than Random_debugging (α = 0.05)" in verdict(consistent)
    worse = paired_tests(predictions([0, 1, 0], [10, 12, 11])).iloc[0]
    assert "ours is significantly worse than Random_debugging" in verdict(worse)
    small = paired_tests(predictions([2, 1, 2], [1, 1, 1])).iloc[0]  # 5 to 3 discordant pairs: p ≈ 0.73
    assert small["p_value"] >= 0.05 and "not significant" in verdict(small)
    one = paired_tests(predictions([10], [0])).iloc[0]  # one repeat: no interval, p decides
    assert "one repeat: no interval" in verdict(one) and "significantly better" in verdict(one)
    assert verdicts(paired_tests(predictions([10, 12, 11], [0, 1, 0]))) == [verdict(consistent)]


def test_sweep_points_are_tested_separately_and_drawn_with_error_bars():
    preds = pd.concat([predictions([10, 12], [0, 1], lam=0.5), predictions([1, 0], [1, 1], lam=1.0)], ignore_index=True)
    tests = paired_tests(preds, by=("lam",)).set_index("lam")
    assert tests.loc[0.5, "ours_only"] == 22 and tests.loc[1.0, "ours_only"] == 1
    assert " at λ = 0.5:" in verdict(tests.reset_index().iloc[0])
    acc = preds.groupby(["model", "method", "lam", "repeat"], as_index=False)["correct"].mean()
    summary = summarize(acc.rename(columns={"correct": "acc_heldout"}), ["acc_heldout"], by=("model", "method", "lam"))
    fig = sweep_figure(summary, "lam")
    assert "95% CI over 2 repeats" in fig.layout.title.text
    for trace in fig.data:  # one line per method, one error bar per point, as wide as the interval
        g = summary[summary["method"] == trace.name.split(",")[0]].sort_values("lam")
        assert list(trace.error_y.array) == pytest.approx(list(g["ci_high"] - g["mean"]))
    assert fig.data[0].error_y.array[0] > 0


def test_repeats_table_orders_methods_and_writes_mean_plus_minus_half_interval():
    rows = pd.DataFrame(
        {"model": "m", "method": ["oracle", "ours", "before"] * 2, "repeat": [0] * 3 + [1] * 3,
         "acc_heldout": [0.3, 0.2, 0.0, 0.5, 0.4, 0.0]}
    )  # fmt: skip
    t = repeats_table(summarize(rows, ["acc_heldout"]), ["acc_heldout"])
    assert list(t["method"]) == ["before", "ours", "oracle"]
    assert t.set_index("method").loc["before", "debug_heldout"] == "0.000 ± 0.000"
    assert t.set_index("method").loc["ours", "debug_heldout"] == "0.300 ± 1.271"  # t(.975, 1) · 0.1


def test_gain_and_repeats_charts_draw_each_method_in_the_same_colour():
    # the methods first appear in different orders in the two tables: colours by order would differ
    methods = ["oracle", "before", "real_failures", "random", "ours"]
    rows = pd.DataFrame(
        [
            {"model": m, "family": "f", "method": meth, "repeat": r, "acc_test": 0.9, "acc_seed": 0.1 * i,
             "acc_heldout": 0.05 * i + 0.01 * r}
            for r in range(2) for m in ("a", "b") for i, meth in enumerate(methods)
        ]
    )  # fmt: skip
    gain_fig = method_bars(gains(rows[rows["repeat"] == 0]), "gain_heldout", "gain")  # the Results page's gain chart
    rep_fig = repeats_figure(summarize(rows.iloc[::-1], ["acc_heldout"]))  # the error-bar chart, reversed input
    sweep = rows.assign(lam=0.5 * rows["repeat"])[lambda d: d["method"].isin(["random", "ours"])]
    sweep_fig = sweep_figure(sweep, "lam")
    gain = {t.name: t.marker.color for t in gain_fig.data}
    rep = {t.name: t.marker.color for t in rep_fig.data}
    assert set(gain) == set(methods) - {"before"} and set(rep) == set(methods)
    assert all(gain[m] == rep[m] == METHOD_COLOURS[m] for m in gain), (gain, rep)
    assert len(set(rep.values())) == len(methods), "every method has its own colour"
    for t in sweep_fig.data:  # one line per method and model, named "method, model"
        assert t.line.color == METHOD_COLOURS[t.name.split(",")[0]]
