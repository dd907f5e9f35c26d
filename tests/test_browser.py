"""A real browser walks the offline-world flow in the running app and saves a screenshot of every page.

Debian's chromium (``make browser``) driven by Playwright; the app runs headless on 127.0.0.1 with the tiny
world, populated once per test session. Screenshots: artifacts/screenshots/ (look at them).
"""

from __future__ import annotations

import re
import time

import pytest

from tests.app_harness import TINY
from tests.browser_harness import (
    ATLAS_FRAME,
    CHROMIUM_ARGS,
    chromium_path,
    lasso,
    serve_app,
    settle,
    shot,
    wait_for_points,
    wait_for_selection,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser():
    exe = chromium_path()
    if exe is None:
        pytest.fail("Debian's chromium is not installed: run `make browser` (apt-get install chromium).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_page(browser, url: str, path: str = ""):
    page = browser.new_page(viewport={"width": 1440, "height": 1800})
    page.goto(f"{url}/{path}")
    settle(page)
    return page


@pytest.fixture(scope="module")
def served(browser, populated_world):
    """The module's one app server, and what a deep link to the Overlap page showed as the very first request the
    server got (made here, before any test opens a page, so it is the cold start whichever tests run):
    ``(url, {"frame": its app_frame, "url": the page's URL, "exceptions": their count, "body": its text})``."""
    with serve_app(populated_world.cache, TINY) as url:
        page = open_page(browser, url, "overlap")
        page.get_by_role("heading", name="Overlap", exact=True).wait_for(timeout=120_000)
        settle(page)
        cold = {
            "frame": app_frame(page),
            "url": page.url,
            "exceptions": page.locator('[data-testid="stException"]').count(),
            "body": page.inner_text("body")[:2000],
        }
        shot(page, "0-deep-link-overlap-cold")
        page.close()
        yield url, cold


@pytest.fixture(scope="module")
def app_url(served):
    return served[0]


def alerts(page) -> list[str]:
    return page.locator('[data-testid="stAlert"]').all_inner_texts()


def no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.inner_text("body")[:2000]


def app_frame(page) -> dict:
    """What makes the page part of the app rather than a bare script: grouped navigation, the shared sidebar's
    dataset selector, the wide layout."""
    sidebar = page.locator('[data-testid="stSidebar"]')
    return {
        "sections": page.locator('[data-testid="stNavSectionHeader"]').all_inner_texts(),
        "links": [t.strip() for t in page.locator('[data-testid="stSidebarNavLink"]').all_inner_texts()],
        "dataset selector": sidebar.get_by_text("Dataset", exact=True).count(),
        "wide": page.locator('[data-testid="stMainBlockContainer"]').first.bounding_box()["width"] > 1000,
    }


def test_deep_link_on_a_cold_server_renders_the_app(browser, served):
    url, cold = served  # the deep link was the server's first request, before app.py had run
    assert cold["exceptions"] == 0, cold["body"]
    assert cold["url"].endswith("/overlap"), cold["url"]
    deep, start = cold["frame"], app_frame(open_page(browser, url))
    assert deep == start, (deep, start)
    assert deep["sections"] == ["Prepare", "Find", "Describe", "Fix"]
    assert [link.split("\n")[-1] for link in deep["links"]] == [
        "Setup",
        "Failures",
        "Overlap",
        "Backgrounds",
        "Generate",
        "Results",
    ]
    assert deep["dataset selector"] == 1 and deep["wide"]


def test_walk_the_offline_world_flow(browser, app_url, results_world):
    populated_world = results_world
    page = open_page(browser, app_url)
    page.get_by_role("heading", name="Setup", exact=True).wait_for()
    shot(page, "1-setup")
    assert page.get_by_text("Classes", exact=True).count() > 0
    no_exception(page)

    page.get_by_role("link", name="Failures").click()
    settle(page)
    page.get_by_role("heading", name="Failures", exact=True).wait_for()
    try:
        page.locator('[data-testid="stImage"]').first.wait_for(timeout=60_000)
    finally:
        shot(page, "2-failures")
    assert page.locator('[data-testid="stImage"]').count() > 0, ("the gallery shows failures", alerts(page))
    box = page.get_by_role("combobox", name="True class")
    box.click()
    box.fill(populated_world.busiest_class)
    page.get_by_role("option", name=populated_world.busiest_class, exact=True).click()
    page.keyboard.press("Escape")
    settle(page)
    captions = page.locator('[data-testid="stCaptionContainer"]').all_inner_texts()
    shown = [c for c in captions if "→" in c]
    assert shown and all(c.startswith(populated_world.busiest_class) for c in shown), shown[:3]
    no_exception(page)
    shot(page, "2-failures-filtered")

    page.get_by_role("link", name="Overlap").click()
    settle(page)
    page.get_by_role("heading", name="Overlap", exact=True).wait_for()
    a, b = sorted(populated_world.models[:2])  # the page orders by family: here the same as by name
    page.get_by_role("heading", name=f"{a} × {b}", exact=False).wait_for()
    area = page.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
    page.mouse.click(area["x"] + area["width"] * 0.25, area["y"] + area["height"] * 0.75)  # row b, column a
    settle(page)
    page.get_by_role("heading", name=f"{b} × {a}", exact=False).wait_for()  # the clicked pair is compared
    no_exception(page)
    shot(page, "3-overlap-cell-clicked")

    page.get_by_role("link", name="Backgrounds").click()
    settle(page)
    page.get_by_role("heading", name="Backgrounds", exact=True).wait_for()
    page.get_by_label("Add a value").fill("snowfield <b>")
    page.get_by_role("button", name="Add", exact=True).click()
    settle(page)
    shot(page, "4-backgrounds-edited")
    page.get_by_text(re.compile(r"Current list: .*snowfield <b>")).wait_for(timeout=30_000)  # shown escaped
    no_exception(page)

    page.get_by_role("link", name="Generate").click()
    settle(page)
    page.get_by_role("heading", name="Generate", exact=True).wait_for()
    page.get_by_role("button", name="Generate", exact=True).click()
    page.get_by_text(re.compile("Generate images for the failure modes and the baseline: done")).wait_for(
        timeout=240_000
    )
    settle(page)
    page.get_by_role("heading", name="Generated images").wait_for()
    page.locator('[data-testid="stImage"]').first.wait_for(timeout=60_000)  # the first class's gallery
    no_exception(page)
    shot(page, "5-generate-done")

    page.get_by_role("link", name="Results").click()
    settle(page)
    page.get_by_role("heading", name="Results", exact=True).wait_for()
    page.get_by_text("Accuracy before and after debugging").wait_for()
    assert page.locator('[data-testid="stDataFrame"]').count() > 0
    no_exception(page)
    shot(page, "6-results")


def _count(text: str) -> int:
    return int(text.replace(",", ""))


def test_embedding_map_draws_and_its_lasso_filters_the_gallery(browser, app_url, populated_world):
    start = time.perf_counter()
    page = open_page(browser, app_url)
    page.get_by_role("link", name="Failures").click()
    settle(page)
    page.get_by_role("heading", name="Failures", exact=True).wait_for()
    export = page.get_by_role("button", name=re.compile(r"Export these [\d,]+ failures as CSV"))
    every = _count(re.search(r"these ([\d,]+) failures", export.inner_text()).group(1))
    page_ready = time.perf_counter()
    page.get_by_text("Embedding map:", exact=False).click()
    settle(page)
    if page.get_by_role("button", name="Make the map").count():  # not made by an earlier test in this pytest run
        page.get_by_role("button", name="Make the map").click()
        page.locator(ATLAS_FRAME).wait_for(timeout=120_000)  # the map replaces its job's panel when done
        settle(page)
        page_ready = time.perf_counter()  # the map's job is not part of drawing it
    drawn = wait_for_points(page)
    shot(page, "2-failures-map")
    lasso(page)
    lassoed = time.perf_counter()
    wait_for_selection(page)
    round_trip = time.perf_counter() - lassoed
    caption = page.get_by_text(re.compile(r"points selected on the map"))
    selected, failing = map(
        _count, re.search(r"([\d,]+) points selected on the map, ([\d,]+) of them", caption.inner_text()).groups()
    )
    shown = _count(re.search(r"these ([\d,]+) failures", export.inner_text()).group(1))
    no_exception(page)
    shot(page, "2-failures-map-lasso")
    print(
        f"embedding map, tiny world: page ready {page_ready - start:.2f} s after load, first points "
        f"{drawn - page_ready:.2f} s after the map was asked for ({drawn - start:.2f} s after load); lasso round trip "
        f"(selection -> ids -> gallery) {round_trip:.2f} s; {selected} points selected, {failing} failures of {every}"
    )
    assert selected > 0, "the lasso around the map's centre selects points"
    assert shown == failing < every, ("the gallery keeps the selected failures only", shown, failing, every)
