"""Backgrounds page on the tiny world (images only, no model runs): the LLM's base URL and model reach the
propose job, an uploaded file is previewed without writing until Import, a bad file shows its line-numbered
reason, and empty lists are warned about. Lists are written under the colour attribute, on class 'nine', so the
background lists other app tests use stay as they are."""

from __future__ import annotations

import pytest

from core import jobs
from core.describe.curation import CuratedLists, empty_list_warning
from tests.app_harness import TINY, open_page, problems, texts
from ui.text import md

CLS = "nine"


@pytest.fixture
def page(tiny_world):
    from core.job_kinds import prepare_shared

    prepare_shared(TINY)  # the app's prepare job, done: the page opens the world
    at = open_page("pages/backgrounds.py")
    at.selectbox(key="bg-attr").set_value("colour").run()
    assert problems(at) == []
    return at


def _colour_lists() -> CuratedLists:
    from core.workspace import open_dataset

    return CuratedLists(open_dataset(TINY), "colour")


def _upload(at, name: str, content: bytes):
    at.file_uploader(key="bg-upload").set_value((name, content, "text/csv")).run()
    return at


def test_llm_base_url_and_model_reach_the_propose_job(page):
    url, model = "http://127.0.0.1:9/v1", "local-chat-model"
    page.selectbox(key="bg-proposer").set_value("llm").run()
    page.text_input(key="bg-base-url").input(url).run()
    page.text_input(key="bg-llm-model").input(model).run()
    page.button(key="propose-start").click().run()
    job = jobs.job_for("propose_values", dataset=TINY, attribute="colour", proposer="llm", base_url=url, model=model)
    assert (job.folder / "spec.json").exists(), "the job started is the one with exactly this base_url and model"
    started = jobs.load_job(job.id).kwargs
    assert (started["base_url"], started["model"], started["proposer"]) == (url, model, "llm")
    job.wait(timeout=120)  # it fails without an API key; it must not outlive the test


def test_base_url_with_the_offline_proposer_is_explained_and_not_passed(page):
    page.text_input(key="bg-base-url").input("http://127.0.0.1:9/v1").run()
    assert page.selectbox(key="bg-proposer").value == "offline"
    assert any("apply to the llm proposer only" in w.value for w in page.warning), texts(page)
    offline = jobs.job_for("propose_values", dataset=TINY, attribute="colour", proposer="offline")
    assert set(offline.kwargs) == {"dataset", "attribute", "proposer"}, "core picks the offline vocabulary"


def test_import_previews_without_writing_then_imports_on_click(page):
    lists = _colour_lists()
    before_id, before = lists.current_version_id(), lists.get(CLS)
    new = [f"preview-{len(before.values) if before else 0}-a", "preview-b"]
    content = ("class_name,value\n" + "".join(f"{CLS},{v}\n" for v in new)).encode()
    _upload(page, "mine.csv", content)
    assert problems(page) == []
    preview = next(d.value for d in page.dataframe if "import would" in d.value)
    assert list(preview["class"]) == [CLS]
    assert preview["import would"].iloc[0].startswith("would be " + ("updated" if before else "created"))
    assert lists.current_version_id() == before_id, "a preview writes nothing"
    assert (lists.get(CLS).version if lists.get(CLS) else 0) == (before.version if before else 0)
    page.button(key="bg-import").click().run()
    assert problems(page) == []
    after = lists.get(CLS)
    assert after.values == new and after.version == (before.version if before else 0) + 1
    assert any("Imported" in s.value and CLS in s.value for s in page.success), texts(page)
    # The same file again would change nothing: the preview says so and Import is disabled.
    preview = next(d.value for d in page.dataframe if "import would" in d.value)
    assert list(preview["import would"]) == ["unchanged"] and page.button(key="bg-import").disabled


def test_bad_csv_shows_its_line_numbered_reason_and_writes_nothing(page):
    before_id = _colour_lists().current_version_id()
    _upload(page, "bad.csv", b'class_name,value\nnine,sand\nnine,"unclosed quote, ice\nzero,desert\n')
    assert not page.exception, "no traceback"
    errors = [e.value for e in page.error]
    assert len(errors) == 1 and md("bad.csv line 3:") in errors[0] and "never closed" in errors[0], errors
    assert not [b for b in page.button if b.key == "bg-import"], "nothing to import from a bad file"
    assert _colour_lists().current_version_id() == before_id


def test_empty_list_is_warned_where_lists_are_shown(page):
    _upload(page, "empty.csv", b"class_name,value\nnine,\n")
    page.button(key="bg-import").click().run()
    assert _colour_lists().get(CLS).values == []
    lists = _colour_lists()
    expected = empty_list_warning(lists.as_dict(), lists.known_classes)
    assert expected is not None, "nine's list is empty, so core warns"
    assert md(expected) in [w.value for w in page.warning], texts(page)
