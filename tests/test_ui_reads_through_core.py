"""The app's pages and ui/ render what core computes: no module there reads artifact files itself (parquet, npy,
JSON under the cache) or imports numerical libraries to compute with. An AST scan, so comments and strings do not
count and renamed imports do."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UI_FILES = sorted([ROOT / "app.py", *(ROOT / "ui").glob("*.py"), *(ROOT / "pages").glob("*.py")])

# Libraries that compute or read artifact formats: core owns them.
FORBIDDEN_MODULES = {"numpy", "scipy", "sklearn", "torch", "pyarrow", "safetensors", "statsmodels", "h5py"}
# Calls that read or write files: module-level functions and methods of paths, frames and the store.
FORBIDDEN_CALLS = {
    "open",
    "read_parquet",
    "read_table",
    "read_schema",
    "ParquetFile",
    "read_csv",
    "read_json",
    "read_pickle",
    "read_feather",
    "read_text",
    "read_bytes",
    "write_text",
    "write_bytes",
    "to_parquet",
    "load_json",
    "load_npy",
    "save_json",
    "save_npy",
    "glob",
    "rglob",
    "iterdir",
    "listdir",
    "walk",
    "scandir",
}
# json.load / np.load / pickle.load read files (json.loads of a string is fine; a dataset's .load is a core call).
FILE_LOADERS = {"json", "np", "numpy", "torch", "pickle", "joblib"}


def violations(source: str, name: str = "<source>") -> list[str]:
    """Every forbidden import and call in ``source``, as 'name:line: what'."""
    found = []
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods = [node.module]
        else:
            mods = []
        for mod in mods:
            if mod.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"{name}:{node.lineno}: imports {mod}")
        if isinstance(node, ast.Call):
            fn = node.func
            called = fn.id if isinstance(fn, ast.Name) else fn.attr if isinstance(fn, ast.Attribute) else None
            loader = isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name) and fn.value.id in FILE_LOADERS
            if called in FORBIDDEN_CALLS or (called == "load" and loader):
                found.append(f"{name}:{node.lineno}: calls {called}()")
    return found


def test_the_scan_catches_direct_reads_and_numeric_imports():
    bad = """
import numpy as np
import pyarrow.parquet as pq
from sklearn.decomposition import PCA
import json, pandas as pd
from pathlib import Path
x = pd.read_parquet(p); y = pq.read_table(p); z = np.load(p); w = json.load(f)
with open(p) as f: pass
t = Path(p).read_text(); m = store.load_json(p); g = list(root.glob("*.json"))
"""
    got = violations(bad)
    for what in (
        "numpy",
        "pyarrow.parquet",
        "sklearn.decomposition",
        "read_parquet()",
        "read_table()",
        "load()",
        "open()",
        "read_text()",
        "load_json()",
        "glob()",
    ):
        assert any(what in v for v in got), (what, got)
    assert violations("import json\nspec = json.loads(text)\nst.dataframe(df)\n") == []


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_ui_module_reads_and_computes_only_through_core(path):
    assert violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT))) == []
