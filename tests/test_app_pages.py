"""Every page on a populated tiny world: renders without errors, and its main action drives core and shows the
result. The world (two world models run, background lists proposed) is built once per session."""
import pandas as pd
import pytest

from core import jobs
from core.curation import CuratedLists
from tests.app_harness import PAGES, TINY, open_page, problems, texts
from tests.app_world import populated_world  # noqa: F401  (session fixture)
from ui.text import md


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_populated_world(populated_world, page):
    at = open_page(page)
    assert problems(at) == []


def test_setup_lists_models_and_shares_the_run_job(populated_world):
    at = open_page()
    models = next(d.value for d in at.dataframe if "run cached" in d.value)
    cached = set(models.loc[models["run cached"], "model"])
    assert set(populated_world.models) <= cached
    at.multiselect(key="setup-models").set_value(populated_world.models).run()
    # The app asks for exactly the job the fixture ran, so it is shared and shows as done, not rerun.
    assert any("done" in s.value for s in at.success), texts(at)
    assert "python -m core run --size tiny --models " + " ".join(populated_world.models) in [c.value for c in at.code]


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
    at.button(key="emap-start").click().run()
    model = at.selectbox(key="failures-model").value
    job = jobs.job_for("embedding_map", dataset=TINY, model=model,
                       split=next(s for s in _runs() if s["model"] == model)["split_config"])
    assert job.wait(timeout=240)["state"] == jobs.DONE, job.status()
    at.run()
    assert problems(at) == []
    assert at.get("plotly_chart"), "the map is drawn once its job is done"


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


def test_backgrounds_add_value_is_versioned_and_escaped(populated_world):
    at = open_page("pages/backgrounds.py")
    cls = at.selectbox(key="bg-class").value
    before = CuratedLists("scenes-mnist", "background").get(cls)
    at.text_input(key="bg-new").input("<i>salt *flat*</i>")
    next(b for b in at.get("form_submit_button") if b.label == "Add").click().run()
    assert problems(at) == []
    after = CuratedLists("scenes-mnist", "background").get(cls)
    assert after.values[-1] == "<i>salt *flat*</i>" and after.version == before.version + 1
    shown = next(m.value for m in at.markdown if m.value.startswith("Current list"))
    assert "<i>" not in shown and r"\<i\>salt \*flat\*\</i\>" in shown


def _classes():
    from core.workspace import open_dataset

    return open_dataset(TINY).classes


def _runs():
    from core.pipeline import list_runs
    from core.workspace import open_dataset

    return list_runs(open_dataset(TINY))


def _failures(summary):
    t = pd.read_parquet(f"{summary['folder']}/failures.parquet", columns=["image_id", "correct"])
    return t.loc[~t["correct"], "image_id"]
