""" "Open as notebook" (core.notebook_export): the downloaded notebook is valid, carries the page's settings, and
executed in a kernel (from an empty namespace) it reproduces the numbers the Failures and Overlap pages show."""

from __future__ import annotations

import ast
import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from core.errors import InvalidInputError
from core.notebook_export import analysis_notebook, notebook_bytes
from tests.app_harness import TINY
from tests.app_world import assigned_world, populated_world, results_world  # noqa: F401  (session fixtures)
from tests.test_notebooks import execute


def code_of(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def test_results_notebook_carries_the_page_settings_and_is_valid_python():
    nb = nbformat.reads(
        notebook_bytes(
            "results",
            TINY,
            ["world-resnet-s", "world-mobilenet-s"],
            lam=0.25,
            k=2,
            images_per_mode=4,
            generator="world",
            experiments=["individual", "lam"],
            list_version="abc123",
        ).decode(),
        as_version=4,
    )
    nbformat.validate(nb)
    src = code_of(nb)
    ast.parse(src)
    for want in (
        "lam=0.25",
        "k=2",
        "images_per_mode=4",
        "generator='world'",
        "'abc123'",
        "bd.sweep(exp, MODELS, 'lam')",
    ):
        assert want in src, want
    assert all(c.get("outputs", []) == [] for c in nb.cells if c.cell_type == "code")


def test_export_refuses_unknown_views_and_empty_model_lists():
    with pytest.raises(InvalidInputError, match="Unknown view"):
        analysis_notebook("gallery", TINY, ["m"])
    with pytest.raises(InvalidInputError, match="at least one model"):
        analysis_notebook("overlap", TINY, [])


def test_exported_text_is_data_not_code():
    nb = analysis_notebook("failures", TINY, ["m'); import os; os.system('x')  #"], true_classes=["a'b"])
    tree = ast.parse(code_of(nb))  # still valid Python: names are literals
    calls = [n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    assert "system" not in calls


@pytest.mark.slow
def test_downloaded_notebooks_reproduce_the_failures_and_overlap_pages(populated_world, tmp_path):
    from core.find.overlap import overlap_of_runs
    from core.find.runs import load_run
    from core.workspace import open_dataset

    ds = open_dataset(TINY)
    models, cls = populated_world.models, populated_world.busiest_class
    runs = [load_run(ds, m) for m in models]  # what the pages read
    page_iou = overlap_of_runs({r.model: r.folder for r in runs})[0]
    page_failures = int((runs[0].failures["label"] == ds.classes.index(cls)).sum())

    ov = analysis_notebook("overlap", TINY, models)
    ov.cells.append(new_code_cell("print('IOU=' + iou.to_json(double_precision=15))"))
    fa = analysis_notebook("failures", TINY, models[:1], true_classes=[cls])
    fa.cells.append(new_code_cell("print('N=' + str(len(fails)))"))
    # Both downloads in one kernel, one after the other: the failures notebook starts after ``%reset -f`` (an
    # empty namespace: whatever it uses it must define or import itself); one kernel start instead of two.
    cells = [*ov.cells, new_code_cell("%reset -f"), *fa.cells]
    for i, c in enumerate(cells):  # each export numbers its cells from 0: renumber the joined notebook's
        c["id"] = f"joined-{i:02d}"
    both = nbformat.v4.new_notebook(cells=cells)
    nbformat.write(both, tmp_path / "both.ipynb")
    done = execute(tmp_path / "both.ipynb", tmp_path).cells
    last = {"overlap": done[len(ov.cells) - 1], "failures": done[-1]}
    outs = {name: "".join(o.get("text", "") for o in cell.outputs) for name, cell in last.items()}
    got = json.loads(outs["overlap"].split("IOU=", 1)[1])
    for a in models:
        for b in models:
            assert got[b][a] == pytest.approx(page_iou.loc[a, b], abs=1e-12)
    assert int(outs["failures"].split("N=", 1)[1]) == page_failures > 0


@pytest.mark.slow
@pytest.mark.parametrize("page", ["pages/failures.py", "pages/overlap.py", "pages/results.py"])
def test_pages_offer_open_as_notebook(results_world, page):
    from tests.app_harness import open_page, problems

    at = open_page(page)
    assert problems(at) == []
    assert any(b.label.startswith("Open as notebook") for b in at.download_button)
