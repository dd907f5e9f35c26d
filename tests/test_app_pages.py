"""Every page on a populated tiny world: renders without errors, and its main action drives core and shows the
result. The world (two world models run, background lists proposed) is built once per session."""

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest

from core import jobs
from core.describe.curation import CuratedLists
from tests.app_harness import PAGES, TINY, open_page, problems, texts
from ui.text import md

pytestmark = pytest.mark.slow  # every test here needs the populated world: world backbones trained and run


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_populated_world(populated_world, page):
    at = open_page(page)
    assert problems(at) == []


def test_setup_lists_models_and_shares_the_run_job(populated_world):
    at = open_page()
    models = next(d.value for d in at.dataframe if "run cached" in d.value)
    cached = set(models.loc[models["run cached"], "model"])
    assert set(populated_world.models) <= cached
    at.multiselect(key="setup-families").set_value([]).run()
    at.multiselect(key="setup-models").set_value(populated_world.models).run()
    # The app asks for exactly the job the fixture ran, so it is shared and shows as done, not rerun.
    assert any("done" in s.value for s in at.success), texts(at)
    assert "python -m core run --size tiny --models " + " ".join(sorted(populated_world.models)) in [
        c.value for c in at.code
    ]


def test_setup_model_table_is_cores_availability_table(populated_world):
    from core.models.availability import availability_table
    from core.workspace import open_dataset

    shown = next(d.value for d in open_page().dataframe if "run cached" in d.value)
    expected = availability_table(dataset=open_dataset(TINY))
    pd.testing.assert_frame_equal(shown.reset_index(drop=True), expected, check_dtype=False)
    ran = shown.set_index("model").loc[populated_world.models]
    assert ran["weights here"].all() and ran["run cached"].all() and ran["test acc"].between(0, 1).all()


def test_failures_gallery_filters_by_class(populated_world):
    at = open_page("pages/failures.py")
    assert len(at.image) > 0
    cls = populated_world.busiest_class
    at.multiselect(key="f-true").select(_classes().index(cls)).run()
    assert problems(at) == []
    captions = [c.value for c in at.caption if "→" in c.value]
    assert captions and all(c.startswith(f"**{cls}**") for c in captions)
    table = at.dataframe[0].value
    assert set(table["class_name"]) == {cls}


def test_failures_embedding_map_job(populated_world):
    at = open_page("pages/failures.py")
    at.toggle(key="f-map-on").set_value(True).run()
    at.button(key="emap-start").click().run()
    model = at.selectbox(key="failures-model").value
    job = jobs.job_for(
        "embedding_map",
        dataset=TINY,
        model=model,
        split=next(s for s in _runs() if s["model"] == model)["split_config"],
    )
    assert job.wait(timeout=240)["state"] == jobs.DONE, job.status()
    at.run()
    assert problems(at) == []
    assert at.get("component_instance"), "the map is drawn once its job is done"
    from core.find.embedding import load_embedding_map

    summary = next(s for s in _runs() if s["model"] == model)
    points = load_embedding_map(summary)
    assert points is not None and list(points.columns) == ["image_id", "x", "y"]
    assert set(points["image_id"]) >= set(_failures(summary)), "every failure has a point on the map"


def test_overlap_counts_match_the_failure_tables(populated_world):
    at = open_page("pages/overlap.py")
    assert problems(at) == []
    assert at.get("plotly_chart")
    a, b = at.selectbox(key="ov-a").value, at.selectbox(key="ov-b").value
    runs = {s["model"]: s for s in _runs()}
    fa, fb = (set(_failures(runs[m])) for m in (a, b))
    labels = [t.label for t in at.tabs]
    assert f"Both fail ({len(fa & fb):,})" in labels
    assert f"Only {md(a)} ({len(fa - fb):,})" in labels and f"Only {md(b)} ({len(fb - fa):,})" in labels
    by_hand = len(fa & fb) / len(fa | fb)
    assert f"IoU {by_hand:.3f}" in next(h.value for h in at.subheader if " × " in h.value)


def test_backgrounds_add_value_is_versioned_and_escaped(populated_world):
    at = open_page("pages/backgrounds.py")
    at.selectbox(key="bg-attr").set_value("colour").run()  # colour lists: the background modes stay renderable
    cls = at.selectbox(key="bg-class").value
    lists = CuratedLists("scenes-mnist", "colour")
    before = lists.get(cls).version if lists.get(cls) else 0
    at.text_input(key="bg-new").input("<i>salt *flat*</i>")
    next(b for b in at.get("form_submit_button") if b.label == "Add").click().run()
    assert problems(at) == []
    after = lists.get(cls)
    assert after.values[-1] == "<i>salt *flat*</i>" and after.version == before + 1
    shown = next(m.value for m in at.markdown if m.value.startswith("Current list"))
    assert "<i>" not in shown and r"\<i\>salt \*flat\*\</i\>" in shown


def _classes():
    from core.workspace import open_dataset

    return open_dataset(TINY).classes


def _runs():
    """The run per model the pages show (the newest with the default split and head settings)."""
    from core.find.runs import latest_runs
    from core.workspace import open_dataset

    return list(latest_runs(open_dataset(TINY)).values())


def _failures(summary):
    from core.find.runs import read_failure_table

    t = read_failure_table(summary["folder"], ["image_id", "correct"])
    return t.loc[~t["correct"], "image_id"]


def test_backgrounds_shows_failure_modes_with_examples(assigned_world):
    at = open_page("pages/backgrounds.py")
    assert problems(at) == []
    modes = next(d.value for d in at.dataframe if "share" in d.value)
    assert len(modes) > 0 and set(modes["rank"]) <= {1, 2, 3}
    cls = at.selectbox(key="bg-examples").value
    assert any(c.value.startswith(f"**{cls} · ") for c in at.caption), "the class's modes are captioned"
    assert len(at.image) > 0, "with example failures"
    from core.describe.textualize import latest_failure_modes

    summary = next(s for s in _runs() if s["model"] == at.selectbox(key="bg-model").value)
    expected = latest_failure_modes(summary["folder"], "background", at.number_input(key="bg-k").value)
    pd.testing.assert_frame_equal(
        modes.reset_index(drop=True), expected.drop(columns=["example_ids"]), check_dtype=False
    )
    # scored against the world's ground truth, at the page's k
    from core.describe.discovery import describe, latest_discovery
    from core.workspace import open_dataset

    k = at.number_input(key="bg-k").value
    report = latest_discovery(open_dataset(TINY), summary["folder"], "background", k)
    assert report is not None and report["discovery_precision"] <= report["discovery_ceiling"] <= 1
    assert f"Scored against the world's ground truth — {md(describe(report, k))}" in [c.value for c in at.caption]


def test_failures_show_the_values_clip_assigned(assigned_world):
    from core.describe.textualize import failures_with_values, latest_assignments

    at = open_page("pages/failures.py")
    model = at.selectbox(key="failures-model").value
    summary = next(s for s in _runs() if s["model"] == model)
    assigned, _ = latest_assignments(summary["folder"], "background")
    fails = failures_with_values(summary["folder"], "background")
    seed = fails[fails["split"] == "seed"]
    assert len(seed) == len(assigned) and seed["value"].notna().all()
    assert fails.loc[fails["split"] == "heldout", "value"].isna().all(), "only debug_seed failures are assigned"
    choices = at.multiselect(key="f-value").options
    assert sorted(choices) == sorted(map(str, seed["value"].unique()))


def test_generate_runs_the_renderer_and_deletes(assigned_world, default_settings):
    from core.config import DebugConfig
    from core.fix.generators import GeneratedSet
    from core.settings import WorkspaceSettings, save_settings

    # Its own generation seed: the image it deletes stays deleted (as a user's would), in a set of its own rather
    # than the session's shared one that other tests count images in.
    save_settings(TINY, WorkspaceSettings(debug=DebugConfig(seed=5)))
    at = open_page("pages/generate.py")
    assert problems(at) == []
    at.number_input(key="gen-n").set_value(2).run()
    prompts = next(d.value for d in at.dataframe if "prompt" in d.value)
    assert all(p.startswith("A photo of ") for p in prompts["prompt"])
    at.button(key="gen-start").click().run()
    job = next(
        j for j, s in jobs.list_jobs() if j.kind == "generate_modes" and j.kwargs["debug"]["images_per_mode"] == 2
    )
    assert job.wait(timeout=300)["state"] == jobs.DONE, job.status()
    at.run()
    assert problems(at) == []
    from core.fix.generators import list_sets

    assert len(at.image) > 0, ("the gallery shows the generated images", list_sets(), job.status(), texts(at))
    first = next(c for c in at.checkbox if c.key.startswith("del-"))
    first.check().run()
    next(b for b in at.button if b.label == "Delete 1 marked").click().run()
    sets = job.status()["result"]["sets"]
    deleted = [GeneratedSet(s).manifest() for s in sets]
    assert sum(int(m["deleted"].sum()) for m in deleted) == 1


def test_results_show_before_after_and_report(results_world):
    at = open_page("pages/results.py")
    assert problems(at) == []
    table = next(d.value for d in at.dataframe if "debug_heldout · ours" in d.value)
    assert list(table["model"]) == results_world.models[:1]
    assert table["debug_heldout · before"].between(0, 1).all()
    labels = [b.label for b in at.download_button]
    assert any("individual results" in lab for lab in labels)
    assert "Report for stakeholders (self-contained HTML)" in labels


def plotly_array(a) -> np.ndarray:
    """A number array of a plotly figure's JSON (plain list, or plotly's base64 typed array)."""
    if isinstance(a, dict):
        return np.frombuffer(base64.b64decode(a["bdata"]), dtype=a["dtype"])
    return np.asarray(a, dtype=float)


def test_results_show_repeats_with_error_bars_verdicts_and_every_baseline(repeats_world, monkeypatch):
    """The before/after table has real failures and the oracle beside ours and Random_debugging; the saved
    repeats show as mean ± CI, bars with 95% error bars and a verdict in words per baseline; the repeats control
    starts the experiment_repeats job with the chosen count."""
    from core.fix.mitigate import list_results
    from core.workspace import open_dataset

    at = open_page("pages/results.py")
    assert problems(at) == []
    table = next(d.value for d in at.dataframe if "debug_heldout · ours" in d.value)
    for method in ("before", "ours", "random", "real_failures", "oracle"):
        assert f"debug_heldout · {method}" in table, table.columns
    rep = next(d.value for d in at.dataframe if "repeats" in d.value)
    assert list(rep["method"]) == ["before", "ours", "random", "real_failures", "oracle"]
    assert rep["debug_heldout"].str.fullmatch(r"\d\.\d{3} ± \d\.\d{3}").all() and (rep["repeats"] == 2).all()
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    bars = next(c for c in charts if "95% CI over 2 repeats" in c["layout"].get("title", {}).get("text", ""))
    widths = [plotly_array(t["error_y"]["array"]) for t in bars["data"]]  # one bar per method, its CI half-width
    assert len(widths) == 5 and all(len(w) == 1 and w[0] >= 0 for w in widths) and max(w[0] for w in widths) > 0
    shown = texts(at)
    for other in ("random", "real_failures", "oracle"):
        said = re.escape(md(f"ours − {other} on debug_heldout"))
        assert re.search(said + r".*significant", shown), (other, shown)
    _, meta = list_results(open_dataset(TINY).key)["individual-repeats"]
    assert meta["repeats"] == 2

    calls = _submitted(monkeypatch)
    at.number_input(key="res-rep-n").set_value(4).run()
    at.button(key="res-rep-start").click().run()
    kind, kw = calls[-1]
    assert kind == "experiment_repeats" and kw["what"] == "individual" and kw["repeats"] == {"n": 4}


@pytest.fixture
def default_settings():
    """Tests that change the workspace settings leave the defaults behind for the others."""
    from core.settings import settings_path

    settings_path(TINY).unlink(missing_ok=True)
    yield
    settings_path(TINY).unlink(missing_ok=True)


def _submitted(monkeypatch) -> list[tuple[str, dict]]:
    """Jobs a page submits, recorded instead of started."""
    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(jobs, "submit", lambda kind, restart=False, **kw: calls.append((kind, kw)))
    return calls


def test_results_retrains_with_the_set_generate_made(assigned_world, default_settings, monkeypatch):
    from core import steps
    from core.config import GeneratorConfig

    at = open_page("pages/generate.py")
    at.number_input(key="gen-n").set_value(1).run()
    at.number_input(key="gen-seed").set_value(7).run()  # not the default: another set of images
    at.number_input(key="gen-lam").set_value(0.25).run()
    at.button(key="gen-start").click().run()
    job = next(j for j, s in jobs.list_jobs() if j.kind == "generate_modes" and j.kwargs["debug"]["seed"] == 7)
    assert job.wait(timeout=300)["state"] == jobs.DONE, job.status()
    made = set(job.status()["result"]["sets"])

    calls = _submitted(monkeypatch)
    at = open_page("pages/results.py")  # a new session: the settings come from the cache, not from widgets
    assert problems(at) == []
    at.button(key="res-ind-start").click().run()
    kind, kw = calls[-1]
    assert kind == "experiment" and kw["what"] == "individual"
    assert kw["generator"] == job.kwargs["generator"] and kw["attribute"] == job.kwargs["attribute"]
    assert kw["debug"]["seed"] == 7 and kw["debug"]["lam"] == 0.25 and kw["debug"]["images_per_mode"] == 1
    gen = GeneratorConfig(**kw["generator"])
    assert set(steps.generated_set_names(TINY, gen, kw["attribute"], kw["debug"]["seed"])) == made


def test_results_passes_the_generator_options_chosen_on_generate(assigned_world, default_settings, monkeypatch):
    calls = _submitted(monkeypatch)
    at = open_page("pages/generate.py")
    at.selectbox(key="gen-generator").set_value("diffusers").run()
    at.text_input(key="gen-model-id").input("/models/my-sd").run()
    at.number_input(key="gen-steps").set_value(4).run()
    at.button(key="gen-start").click().run()
    made = calls[-1][1]
    assert made["generator"] == {
        "name": "diffusers",
        "model_id": "/models/my-sd",
        "options": {"num_inference_steps": 4},
    }

    at = open_page("pages/results.py")
    assert problems(at) == []
    at.button(key="res-ind-start").click().run()
    kind, kw = calls[-1]
    assert (
        kind == "experiment" and kw["generator"] == made["generator"] and kw["debug"]["seed"] == made["debug"]["seed"]
    )


def test_generate_filter_settings_reach_the_job_and_results(assigned_world, default_settings, monkeypatch):
    from dataclasses import asdict

    from core import steps
    from core.config import DebugConfig, FilterConfig, GeneratorConfig
    from core.fix.generators import GeneratedSet
    from core.fix.generators.clip_filter import filter_report
    from core.settings import WorkspaceSettings, load_settings, save_settings

    # Its own generation seed, so the filter moves images aside in a set of its own: the session's shared set
    # (seed 0) stays whole for the pages and experiments other tests look at.
    save_settings(TINY, WorkspaceSettings(debug=DebugConfig(seed=7)))
    at = open_page("pages/generate.py")
    at.number_input(key="gen-n").set_value(2).run()
    at.toggle(key="gen-filter").set_value(True).run()
    assert at.number_input(key="gen-f-class").value == FilterConfig.min_class_prob  # the defaults live in core
    at.number_input(key="gen-f-value").set_value(0.7).run()
    wanted = asdict(FilterConfig(min_value_prob=0.7))
    assert load_settings(TINY).clip_filter == FilterConfig(min_value_prob=0.7), "saved for the Results page"
    calls = _submitted(monkeypatch)
    at.button(key="gen-start").click().run()
    kind, kw = calls[-1]
    assert kind == "generate_modes" and kw["clip_filter"] == wanted and kw["debug"]["seed"] == 7
    # The job, run here: the filter scores with the dataset's CLIP, here the test-size one the world was named with.
    import core.describe.textualize as textualize
    from tests.app_world import small_clip

    monkeypatch.setattr(textualize, "default_clip", lambda dataset: small_clip())
    done = jobs.run_inline(jobs.job_for(kind, **kw))
    at = open_page("pages/generate.py")
    assert problems(at) == []
    per_mode = next(d.value for d in at.dataframe if "scored" in d.value)
    ours = steps.generated_set_names(TINY, GeneratorConfig(**kw["generator"]), kw["attribute"], kw["debug"]["seed"])[0]
    pd.testing.assert_frame_equal(per_mode, filter_report(GeneratedSet(ours)), check_dtype=False)  # ours, per mode
    assert per_mode["scored"].sum() == len(kw["modes"]) * 2 and 0 < per_mode["dropped"].sum() <= done["dropped"]
    assert f"dropped {per_mode['dropped'].sum()} of {per_mode['scored'].sum()}" in texts(at)

    calls = _submitted(monkeypatch)
    at = open_page("pages/results.py")  # a new session: the filter comes from the saved settings
    assert problems(at) == []
    at.button(key="res-ind-start").click().run()
    kind, exp = calls[-1]
    assert kind == "experiment" and exp["clip_filter"] == wanted and exp["generator"] == kw["generator"]


def test_generate_edits_the_shown_models_failures_and_results_refuses_several(assigned_world, default_settings):
    from core import steps
    from core.config import GeneratorConfig

    at = open_page("pages/generate.py")
    model = at.selectbox(key="gen-model").value
    at.number_input(key="gen-n").set_value(1).run()
    at.selectbox(key="gen-generator").set_value("edits").run()
    assert problems(at) == []
    at.button(key="gen-start").click().run()
    job = next(
        j for j, s in jobs.list_jobs() if j.kind == "generate_modes" and j.kwargs["generator"]["name"] == "edits"
    )
    assert job.kwargs["model"] == model
    done = job.wait(timeout=300)
    assert done["state"] == jobs.DONE, done
    ours = steps.generated_set_names(
        TINY, GeneratorConfig("edits"), job.kwargs["attribute"], job.kwargs["debug"]["seed"], model
    )[0]
    assert ours in done["result"]["sets"], "the edits of this model's failures"
    at.run()
    assert problems(at) == [] and len(at.image) > 0, texts(at)

    at = open_page("pages/results.py")
    assert len(at.multiselect(key="res-models").value) >= 2
    at.button(key="res-ind-start").click().run()
    job = next(j for j, s in jobs.list_jobs() if j.kind == "experiment" and j.kwargs["generator"]["name"] == "edits")
    assert job.wait(timeout=120)["state"] == jobs.FAILED
    at.run()
    assert list(at.exception) == []
    assert any("one model at a time" in e.value for e in at.error), problems(at)
