"""The walkthrough notebooks in notebooks/: stored without outputs, and each executes top to bottom on the tiny
offline world (``BACKDROP_NOTEBOOK_SIZE=tiny``) with no cell error."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def execute(path: Path, cwd: Path, timeout: int = 1800):
    """Run a notebook in a fresh kernel, in ``cwd``, importing this checkout's ``core``; raises on a cell error."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def text_of(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts += [str(v) for k, v in out.get("data", {}).items() if k.startswith("text/")]
    return "\n".join(parts)


def test_there_are_two_walkthrough_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["01_offline_world_paper.ipynb", "02_real_tier.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "a walkthrough has code"
    assert all(c.outputs == [] and c.execution_count is None for c in code), "clear outputs before committing"


def test_notebooks_import_only_the_public_api():
    for path in NOTEBOOKS:
        src = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
        imports = {line.split()[1] for line in src.splitlines() if line.startswith(("import core", "from core"))}
        assert imports == {"core.api"}, imports


@pytest.mark.slow
def test_paper_notebook_runs_on_the_tiny_world(tmp_path, monkeypatch):
    monkeypatch.setenv("BACKDROP_NOTEBOOK_SIZE", "tiny")
    nb = execute(ROOT / "notebooks" / "01_offline_world_paper.ipynb", tmp_path)
    out = text_of(nb)
    assert "debug_heldout · ours" in out and "debug_heldout · random" in out  # Table 2 rendered
    assert "assignment accuracy vs ground truth" in out
    html = (tmp_path / "backdrop-report.html").read_text()
    assert html.count("data:image/png;base64,") > 10 and "plotly" in html


@pytest.mark.slow
def test_real_tier_notebook_runs_offline_and_skips_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("BACKDROP_NOTEBOOK_SIZE", "tiny")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    nb = execute(ROOT / "notebooks" / "02_real_tier.ipynb", tmp_path)
    out = text_of(nb)
    assert "No OPENAI_API_KEY: using the offline proposer" in out
    assert "efficientnet-lite0" in out and "'test'" in out  # the packaged real model ran on the folder
