"""The public notebook API (core.api): its documented Table 2 recipe is short and uses only public names, every
public function is documented, and a step stopped with KeyboardInterrupt (the kernel's stop button) leaves the
cache usable: the rerun finishes with the same result as a run that was never interrupted."""

from __future__ import annotations

import ast
import inspect
import shutil

import numpy as np
import pytest

import core.api as bd
from tests.app_harness import TINY
from tests.app_world import populated_world  # noqa: F401  (session fixture)


def docstring_code(doc: str) -> list[str]:
    """The indented code block after '::' in a docstring, as non-blank lines."""
    block = doc.split("::", 1)[1]
    lines = []
    for line in block.splitlines()[1:]:
        if line.strip() and not line.startswith("    "):
            break
        if line.strip():
            lines.append(line.strip())
    return lines


def test_table2_recipe_in_the_api_docs_is_under_15_lines_of_public_calls():
    code = docstring_code(bd.__doc__)
    assert 0 < len(code) < 15
    tree = ast.parse("\n".join(code))
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute) and getattr(n.value, "id", "") == "bd"}
    assert {"open_dataset", "setup_world", "experiment", "debug", "report"} <= used
    assert used <= set(bd.__all__), used - set(bd.__all__)


def test_every_public_function_is_documented():
    for name in bd.__all__:
        obj = getattr(bd, name)
        if inspect.isfunction(obj) and obj.__module__ == "core.api":
            assert obj.__doc__ and len(obj.__doc__.split()) >= 8, f"bd.{name} needs a docstring"
    examples = [n for n in bd.__all__ if ">>>" in (getattr(getattr(bd, n), "__doc__", "") or "")]
    assert len(examples) >= 10, examples


class StopAt:
    """A progress callback that raises KeyboardInterrupt on its ``n``-th call, as the kernel's stop button does."""

    def __init__(self, n: int):
        self.n, self.calls = n, 0

    def __call__(self, done, total, message=""):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt


@pytest.mark.slow
@pytest.mark.parametrize("stop_at", [2, 6])
def test_interrupted_model_run_leaves_no_partial_run_and_reruns_to_correct_predictions(populated_world, stop_at):
    import torch

    from core.config import SplitConfig
    from core.datasets.base import TorchView
    from core.find.features import extract_features
    from core.find.runs import get_splits, load_backbone, load_run, run_model
    from core.workspace import open_dataset

    ds = open_dataset(TINY)
    model = populated_world.models[0]
    split = SplitConfig(seed=1000 + stop_at)  # a run no other test has cached
    stopper = StopAt(stop_at)
    with pytest.raises(KeyboardInterrupt):
        run_model(ds, model, split, progress=stopper)
    assert stopper.calls == stop_at
    assert load_run(ds, model, split) is None, "an interrupted run must not look finished"
    run = run_model(ds, model, split)
    assert len(run.table) == run.summary["n_debug"] == len(get_splits(ds, split).debug)
    # the cached features the rerun used are the backbone's own: recompute 32 of them with no cache at all
    debug = get_splits(ds, split).debug
    rows = debug.head(32)
    backbone = load_backbone(model, ds).eval()
    x = torch.stack([TorchView(ds, rows, backbone.transform())[i][0] for i in range(len(rows))])
    with torch.inference_mode():
        fresh = backbone(x).numpy()
    cached = np.asarray(extract_features(backbone, ds, debug))[:32]
    np.testing.assert_allclose(cached, fresh, rtol=1e-4, atol=1e-4)
    table = run.table.set_index("image_id").loc[rows["image_id"]]
    assert np.array_equal(run.head.predict(cached), table["pred"].to_numpy())
    assert load_run(ds, model, split).summary == run.summary
    # The pages show each model's newest run: remove this one so later tests see the session's usual run.
    shutil.rmtree(run.folder)


def test_experiment_passes_the_pool_edits_and_the_filter_to_the_steps(monkeypatch, tmp_path):
    from core import steps
    from core.config import FilterConfig, GeneratorConfig

    calls: list[dict] = []
    monkeypatch.setattr(steps, "generate", lambda dataset, **kw: calls.append(kw))
    exp = bd.experiment(TINY, pool=tmp_path, clip_filter=True, images_per_mode=2)
    bd.generate(exp, "world-resnet-s")
    assert calls[-1]["generator"] == GeneratorConfig("retrieval", None, {"pool": str(tmp_path)})
    assert calls[-1]["clip_filter"] == FilterConfig() and calls[-1]["model"] == "world-resnet-s"

    strict = bd.FilterConfig(min_value_prob=0.8)
    bd.generate(bd.experiment(TINY, generator="edits", clip_filter=strict), "world-resnet-s")
    assert calls[-1]["generator"].name == "edits" and calls[-1]["clip_filter"] == strict
    bd.generate(bd.experiment(TINY), "world-resnet-s")
    assert calls[-1]["clip_filter"] is None, "unfiltered unless asked"

    with pytest.raises(bd.BackdropError, match="retrieval generator searches"):
        bd.experiment(TINY, generator="world", pool=tmp_path)
    with pytest.raises(bd.BackdropError, match="must lie in"):
        bd.experiment(TINY, clip_filter=bd.FilterConfig(min_class_prob=1.5))


def test_api_repeats_returns_intervals_paired_tests_and_verdicts(repeats_world):
    """bd.repeats: mean and 95% t-interval of every method's metrics over the repeats' own rows, McNemar's test
    of ours against each baseline, and a verdict per baseline that calls a gain significant only when p < α and
    the interval excludes 0."""
    from scipy import stats

    from tests.app_world import small_clip

    world = bd.open_dataset(**TINY)
    exp = bd.experiment(world, k=1, images_per_mode=1, generator="world", clip=small_clip())
    rep = bd.repeats(exp, repeats_world.models[:1], n=2)  # the settings repeats_world ran: read back
    methods = {"before", "ours", "random", "real_failures", "oracle"}
    assert set(rep.rows["method"]) == methods and sorted(set(rep.rows["repeat"])) == [0, 1]
    for method in methods:
        vals = rep.rows[rep.rows["method"] == method].sort_values("repeat")["acc_test"].to_numpy()
        s = rep.summary[(rep.summary["method"] == method) & (rep.summary["metric"] == "acc_test")].iloc[0]
        half = stats.t.ppf(0.975, 1) * np.std(vals, ddof=1) / np.sqrt(2)
        assert s["n"] == 2 and s["mean"] == pytest.approx(vals.mean())
        assert s["ci_high"] - s["mean"] == pytest.approx(half) and s["mean"] - s["ci_low"] == pytest.approx(half)
    held = rep.tests[rep.tests["split"] == "heldout"]
    assert set(held["method"]) == methods - {"ours"} and held["p_value"].between(0, 1).all()
    assert (held["n_pairs"] > 0).all() and (held["ours_only"] + held["other_only"] <= held["n_pairs"]).all()
    assert len(rep.verdicts) == 4  # three baselines on debug_heldout, and before on test
    for _, t in held[held["method"] != "before"].iterrows():
        said = next(v for v in rep.verdicts if v.startswith(f"ours − {t['method']} on debug_heldout"))
        significant = t["p_value"] < 0.05 and not t["diff_ci_low"] <= 0 <= t["diff_ci_high"]
        assert ("not significant" not in said) == significant, (said, t.to_dict())
    fig = rep.figure()
    assert len(fig.data) == len(methods) and all(len(tr.error_y.array) == 1 for tr in fig.data)
    assert "±" in rep._repr_html_() and "significant" in rep._repr_html_()
