"""Every page on a fresh machine: renders without errors and guides the user to build the offline world.

Order-independent: the empty-cache pages use their own cache, and the one-click build accepts a session cache
in any state other tests may have left it (nothing built, images prepared, or the whole world done).
"""

import pytest

from core import jobs
from tests.app_harness import PAGES, TINY, open_page, problems, texts


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_empty_cache(fresh_cache, page):
    at = open_page(page)
    assert problems(at) == []
    if page == "pages/setup.py":
        assert any(b.label == "Build the offline world" for b in at.button)
        assert "python -m core setup --size tiny" in [c.value for c in at.code]
    else:  # other pages point to Setup instead of showing nothing
        assert "Setup" in texts(at)
        assert any("setup" in str(link.proto.page).lower() for link in at.get("page_link"))


@pytest.mark.slow
def test_one_click_builds_the_world_with_progress_stop_and_resume(session_cache):
    world = jobs.job_for("setup_world", dataset=TINY)
    prep = jobs.job_for("prepare_dataset", dataset=TINY)
    prepared = prep.state == jobs.DONE  # another test in this pytest run may have prepared the images already
    at = open_page()
    if world.state != jobs.DONE:  # (done only if another test in this pytest run already built all of it)
        labels = [b.label for b in at.button]
        start = "Complete the world setup" if prepared else "Build the offline world"
        assert start in labels, labels
        next(b for b in at.button if b.label == start).click().run()
        assert world.state == jobs.RUNNING
        assert at.get("progress"), "a running build shows a progress bar"
    assert prep.wait(timeout=240)["state"] == jobs.DONE  # the images come first; pages can open the world now
    at.run()
    assert problems(at) == []
    assert any(m.label == "Classes" and m.value == "10" for m in at.metric)
    from core.workspace import open_dataset

    ds = open_dataset(TINY)
    pools = next(d.value for d in at.dataframe if "pool" in d.value)
    assert dict(zip(pools["pool"], pools["images"])) == {p: len(ds.index(p)) for p in ds.pools()}
    if world.state == jobs.RUNNING:
        next(b for b in at.button if b.label == "Stop").click().run()
        assert world.wait(timeout=240)["state"] in (jobs.CANCELLED, jobs.DONE)
        at.run()
        if world.state == jobs.CANCELLED:
            assert any(b.label == "Resume" for b in at.button)
            assert any("stopped" in w.value for w in at.warning)
