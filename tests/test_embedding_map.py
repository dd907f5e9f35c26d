"""The embedding map's data side: the points it draws, a drawn selection (the widget's SQL condition) turned into
image ids, and the offline copy of the map widget."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from core.errors import InvalidInputError
from core.find.embedding import drawn_points, ids_in_selection, map_points, project


def _points(n: int = 5000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "image_id": [f"val/{i:06d}" for i in range(n)],
            "x": rng.normal(size=n).astype(np.float32),
            "y": rng.normal(size=n).astype(np.float32),
        }
    )


def test_a_lasso_predicate_selects_the_points_inside_its_polygon():
    pts = _points()
    # the shape of what the widget reports for a lasso: a bounding box, then an even-odd crossing count per edge,
    # written with the widget's "≤"; here the triangle (-1,-1), (1,-1), (0,1)
    edges = [((-1, -1), (1, -1)), ((1, -1), (0, 1)), ((0, 1), (-1, -1))]
    terms = []
    for (x1, y1), (x2, y2) in edges:
        lo, hi = min(y1, y2), max(y1, y2)
        # a ray to +x from (x, y) crosses the edge where x < the edge's x at that y
        cross = f'(("y" - {y1}) * {x2 - x1}) - (("x" - {x1}) * {y2 - y1})'
        below = f'({lo} ≤ "y") AND ("y" < {hi})'
        terms.append(f"(({below}) AND (({cross}) {'>' if y2 > y1 else '<'} 0))::INT")
    predicate = f'("x" BETWEEN -1 AND 1) AND ("y" BETWEEN -1 AND 1) AND ((({" + ".join(terms)}) % 2) = 1)'
    got = ids_in_selection(pts, predicate)
    x, y = pts["x"].to_numpy(np.float64), pts["y"].to_numpy(np.float64)
    inside = (y >= -1) & (y < 1) & (np.abs(x) <= (1 - y) / 2)
    assert 500 < inside.sum() < len(pts)
    assert list(got) == list(pts.loc[inside, "image_id"])


def test_a_selection_by_row_number_and_category_keeps_the_map_order():
    pts = _points(100).assign(outcome=["failure", "correct"] * 50)
    got = ids_in_selection(pts, "__row_index__ >= 90 AND outcome = 'failure'")
    assert list(got) == [f"val/{i:06d}" for i in range(90, 100, 2)]


@pytest.mark.parametrize(
    "predicate",
    ["", "x > 0; DROP TABLE points", "x IN (SELECT 1 FROM read_csv('/etc/passwd'))", "no_such_column > 1"],
)
def test_a_selection_that_is_not_one_condition_over_the_points_is_refused(predicate):
    with pytest.raises(InvalidInputError, match="select again"):
        ids_in_selection(_points(10), predicate)


def test_map_points_carry_outcome_and_names_in_the_map_order():
    pts = _points(6)
    table = pd.DataFrame(
        {
            "image_id": pts["image_id"][::-1],
            "label": [0, 1, 2, 0, 1, 2],
            "pred": [0, 2, 2, 1, 1, 0],
            "correct": [True, False, True, False, True, False],
            "split": ["seed", "heldout"] * 3,
        }
    )
    got = map_points(pts, table, ["zero", "one", "two"])
    assert list(got["image_id"]) == list(pts["image_id"])
    assert got["x"].dtype == np.float32
    row = got.set_index("image_id").loc["val/000000"]  # the table's last row
    assert (row["true class"], row["predicted"], row["outcome"]) == ("two", "zero", "failure")


def test_the_widget_gets_no_image_ids_and_its_selection_maps_back_to_them():
    pts = _points(200)
    table = pd.DataFrame(
        {"image_id": pts["image_id"], "label": 0, "pred": [0, 1] * 100, "correct": [True, False] * 100, "split": "seed"}
    )
    points = map_points(pts, table, ["zero", "one"])
    drawn = drawn_points(points)
    assert list(drawn.columns) == ["x", "y", "true class", "predicted", "outcome", "half"]
    assert drawn["x"].dtype == np.float32 and len(drawn) == len(points)
    # a condition over the drawn columns and the row number selects the same rows of the frame that has the ids
    got = ids_in_selection(points, '"x" > 0 AND "outcome" = \'failure\' AND __row_index__ < 150')
    x = drawn["x"].to_numpy()
    want = [points["image_id"][i] for i in range(150) if x[i] > 0 and drawn["outcome"][i] == "failure"]
    assert len(want) > 10 and list(got) == want


def test_an_unknown_projection_is_refused():
    with pytest.raises(InvalidInputError, match="Unknown projection"):
        project(np.zeros((3, 4), np.float32), "tsne")


def test_the_map_widget_is_served_without_the_cdn(tmp_path):
    from core.map_widget import CDN, component_dir

    (tmp_path / "embedding-atlas-0.0.1").mkdir()
    out = component_dir(tmp_path)
    scripts = list((out / "assets").glob("index-*.js"))
    assert len(scripts) == 1 and not CDN.search(scripts[0].read_text(encoding="utf-8"))
    assert "cdn.jsdelivr.net" not in scripts[0].read_text(encoding="utf-8")
    wasm = (out / "duckdb" / "duckdb-eh.wasm").read_bytes()
    assert wasm[:4] == b"\0asm"
    assert {p.name for p in (out / "duckdb").iterdir()} == {
        "duckdb-eh.wasm",
        "duckdb-mvp.wasm",
        "duckdb-browser-eh.worker.js",
        "duckdb-browser-mvp.worker.js",
    }
    workers = [out / "duckdb" / n for n in ("duckdb-browser-eh.worker.js", "duckdb-browser-mvp.worker.js")]
    for worker in workers:  # the module compiles straight from the fetched response, so its code can be cached
        text = worker.read_text(encoding="utf-8")
        assert "if(WebAssembly.instantiateStreaming)if(!1)" in text and "TransformStream==" not in text
    # an old modification time: browsers keep the files fresh (Last-Modified heuristic) and reuse them
    assert max(p.stat().st_mtime for p in out.rglob("*")) < time.time() - 365 * 86400
    assert component_dir(tmp_path) == out  # made once, then reused
    assert not (tmp_path / "embedding-atlas-0.0.1").exists()  # a copy for another package version is removed
