"""The app's pure helpers: escaping user text, CLI equivalents, dataset specs, row selections and CSV export."""

import pandas as pd
import pytest

from core.errors import InvalidInputError
from ui.cli import cli
from ui.state import parse_spec
from ui.tables import export_csv, named, select_rows
from ui.text import html_text, md


def test_markdown_escaping_neutralises_markup_and_html():
    hostile = "**bold** [link](http://x) <script>alert(1)</script> `code` # head\n- item $x$"
    out = md(hostile)
    for token in ("**", "[link]", "<script>", "`code`", "$x$"):
        assert token not in out
    assert "\n" not in out
    # every escaped character is still there for the reader
    assert out.replace("\\", "") == " ".join(hostile.split())


def test_html_escaping():
    assert html_text('<b a="1">&') == "&lt;b a=&quot;1&quot;&gt;&amp;"


def test_cli_equivalents_quote_and_omit_defaults():
    assert cli("world", {"name": "scenes-mnist", "size": "default", "seed": 0}, "build") == "python -m core world build"
    line = cli("run", {"name": "imagefolder", "root": "/data/my images"}, "--models", "resnet18")
    assert line == "python -m core run --dataset imagefolder --root '/data/my images' --models resnet18"


def test_dataset_spec_parsing_says_what_is_wrong():
    assert parse_spec('{"name": "cifar10", "root": "/d"}') == {"name": "cifar10", "root": "/d"}
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        parse_spec("{name: cifar10}")
    with pytest.raises(InvalidInputError, match='"name"'):
        parse_spec('["cifar10"]')


@pytest.fixture
def table():
    return pd.DataFrame(
        {
            "image_id": [f"val/{i}" for i in range(6)],
            "label": [0, 0, 1, 1, 2, 2],
            "pred": [1, 2, 0, 2, 0, 1],
            "confidence": [0.5] * 6,
            "true_prob": [0.1] * 6,
            "top1": [1] * 6,
            "top2": [0] * 6,
            "top3": [2] * 6,
            "correct": [False] * 6,
            "split": ["seed", "heldout", "seed", "heldout", "seed", "heldout"],
        }
    )


def test_select_rows_combines_filters(table):
    assert list(select_rows(table)["image_id"]) == list(table["image_id"])
    assert list(select_rows(table, labels=[0, 2], split="seed")["image_id"]) == ["val/0", "val/4"]
    assert list(select_rows(table, preds=[0], ids=["val/2", "val/3", "val/4"])["image_id"]) == ["val/2", "val/4"]


def test_export_names_classes(table):
    csv = export_csv(select_rows(table, labels=[1]), ["cat", "dog", "a,b"])
    df = pd.read_csv(pd.io.common.BytesIO(csv))
    assert list(df["image_id"]) == ["val/2", "val/3"]
    assert list(df["class_name"]) == ["dog", "dog"] and list(df["pred_name"]) == ["cat", "a,b"]
    assert named(table, ["cat", "dog", "eel"])["top5_names"].iloc[0] == "dog | cat | eel"


def test_html_report_is_self_contained_and_escaped():
    import plotly.express as px

    from core.report import build_report

    df = pd.DataFrame({"model": ["<script>x</script>"], "acc": [0.5]})
    html = build_report(
        "Results <b>",
        [("Table & more", df), ("Chart", px.bar(df, x="model", y="acc")), ("Note", "a <i>note</i>")],
        {"list_version": "abc<"},
    )
    assert "<script>x</script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "Results &lt;b&gt;" in html and "a &lt;i&gt;note&lt;/i&gt;" in html and "abc&lt;" in html
    assert "0.5000" in html
    assert "plotly.js" in html.lower() or "Plotly" in html  # the chart library is inline, not fetched
    assert 'src="http' not in html
