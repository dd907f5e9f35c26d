"""The stakeholder report (core.report): one self-contained HTML file with tables, charts, and per model a few
failures per failure mode beside the images generated for that mode; it opens in a real browser with no network."""

from __future__ import annotations

import re

import pandas as pd
import plotly.express as px
import pytest
from PIL import Image

from core.display import Gallery, Tile
from core.report import build_report
from tests.app_harness import TINY
from tests.app_world import assigned_world, populated_world, results_world  # noqa: F401
from tests.browser_harness import CHROMIUM_ARGS, chromium_path

DATA_IMG = re.compile(r"<img [^>]*src='data:image/png;base64,[A-Za-z0-9+/=]+'")


def test_report_escapes_text_embeds_images_and_plotly_once():
    evil = "<script>alert(1)</script>"
    tiles = [Tile(Image.new("RGB", (64, 64), (i * 40, 0, 0)), [f"{evil} → b", "lava"]) for i in range(3)]
    fig = px.bar(pd.DataFrame({"m": ["a", "b"], "v": [1, 2]}), x="m", y="v")
    html = build_report(
        f"title {evil}",
        [
            (evil, pd.DataFrame({"class": [evil], "acc": [0.5]})),
            ("chart", fig),
            ("again", fig),
            ("g", Gallery("x", tiles)),
        ],
        {"note": evil},
    )
    assert "<script>alert(1)" not in html
    assert len(DATA_IMG.findall(html)) == 3
    assert html.count("plotly.js v") == 1  # the library is inlined once, for the first chart only
    assert "src='http" not in html and 'src="http' not in html


@pytest.fixture(scope="module")
def world_report(results_world, tmp_path_factory):
    """The report `python -m core report` writes for the tiny world's saved before/after results, and the
    failure-mode examples it should hold."""
    from core.cli import main
    from core.fix.mitigate import list_results
    from core.report import examples_of, settings_of
    from core.workspace import open_dataset

    ds = open_dataset(TINY)
    path = tmp_path_factory.mktemp("report") / "report.html"
    assert main(["report", "--size", "tiny", "--out", str(path)]) == 0
    table, meta = list_results(ds.key)["individual"]  # the newest saved before/after table, one model or more
    df = pd.read_parquet(table)
    versions = [str(v) for v in df["list_version"].dropna().unique()]
    models = list(dict.fromkeys(df["model"]))
    assert models, "the saved table names the models it debugged"
    examples = [e for m in models for e in examples_of(ds, m, list_versions=versions, **settings_of(meta))]
    return path, models[0], examples


@pytest.mark.slow
def test_report_shows_failures_beside_generated_images_for_every_mode(world_report):
    path, model, examples = world_report
    html = path.read_text()
    assert examples, "the debugged model has failure modes"
    with_failures = [e for e in examples if len(e.failures)]
    with_generated = [e for e in examples if len(e.generated)]
    assert len(with_failures) == len(examples)  # every mode is a value CLIP assigned to failures
    assert len(with_generated) >= len(examples) // 2, "most modes should have generated images beside them"
    for e in examples:
        assert all("→" in t.caption[0] and t.caption[1] == e.value for t in e.failures.tiles)
        assert f"{e.class_name} on {e.value}" in html
    n_images = sum(len(e.failures) + len(e.generated) for e in examples)
    assert len(DATA_IMG.findall(html)) == n_images


@pytest.mark.slow
@pytest.mark.browser
def test_report_opens_in_chromium_offline_with_images_and_charts(world_report):
    exe = chromium_path()
    if exe is None:
        pytest.fail("Debian's chromium is not installed: run `make browser` (apt-get install chromium).")
    from playwright.sync_api import sync_playwright

    path, _, examples = world_report
    requested = []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            ctx = b.new_context(offline=True)
            page = ctx.new_page()

            def block(route):
                if not route.request.url.startswith(("file:", "data:")):
                    requested.append(route.request.url)
                    return route.abort()
                return route.continue_()

            page.route("**/*", block)
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri())
            page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
            widths = page.eval_on_selector_all("img", "els => els.map(e => e.complete ? e.naturalWidth : 0)")
            charts = page.locator(".js-plotly-plot .main-svg").count()
            bars = page.locator(".js-plotly-plot .bars path, .js-plotly-plot .point").count()
        finally:
            b.close()
    assert requested == [], f"the report asked for the network: {requested[:5]}"
    assert errors == []
    assert len(widths) == sum(len(e.failures) + len(e.generated) for e in examples) > 0
    assert all(w > 0 for w in widths), "every embedded image decodes"
    assert charts >= 1 and bars > 0, "plotly drew the before/after chart"


@pytest.mark.slow
def test_report_of_saved_results_reads_images_without_computing(results_world, monkeypatch):
    """What the Results page's Download tab builds: from saved results only, no CLIP, no generation."""
    import core.describe.assign as assign_mod
    import core.fix.generators.generated_set as gen_mod
    from core.fix.mitigate import list_results
    from core.report import results_report
    from core.workspace import open_dataset

    def refuse(*a, **k):
        raise AssertionError("the report of saved results must not compute")

    monkeypatch.setattr(gen_mod, "generate_set", refuse)
    monkeypatch.setattr(assign_mod, "assign", refuse)
    ds = open_dataset(TINY)
    saved = {w: (pd.read_parquet(pq), meta) for w, (pq, meta) in list_results(ds.key).items()}
    html = results_report(ds, saved)
    model = results_world.models[0]
    assert f"{model}: failures per mode and the images generated for it" in html
    assert len(DATA_IMG.findall(html)) >= 10
    assert html.count("generated for this mode") >= 3
