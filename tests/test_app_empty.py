"""Every page on a fresh machine: renders without errors and guides the user to build the offline world."""
import pytest

from core import jobs
from tests.app_harness import PAGES, TINY, open_page, problems, texts


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_empty_cache(fresh_cache, page):
    at = open_page(page)
    assert problems(at) == []
    if page == "pages/setup.py":
        assert any(b.label == "Build the offline world" for b in at.button)
        assert "python -m core world --size tiny build" in [c.value for c in at.code]
    else:   # other pages point to Setup instead of showing nothing
        assert "Setup" in texts(at)
        assert any("setup" in str(link.proto.page).lower() for link in at.get("page_link"))


def test_one_click_builds_the_world_with_a_progress_bar(session_cache):
    at = open_page()
    job = jobs.job_for("prepare_dataset", dataset=TINY)
    if job.state != jobs.DONE:
        next(b for b in at.button if b.label == "Build the offline world").click().run()
        assert job.state in (jobs.RUNNING, jobs.DONE)
        if job.state == jobs.RUNNING:
            assert at.get("progress"), "a running build shows a progress bar"
            assert any(b.label == "Stop" for b in at.button)
        assert job.wait(timeout=240)["state"] == jobs.DONE
    at.run()
    assert problems(at) == []
    assert any(m.label == "Classes" and m.value == "10" for m in at.metric)
    pools = at.dataframe[0].value
    assert dict(zip(pools["pool"], pools["images"])) == {"backbone_train": 2000, "train": 300, "val": 1200}
