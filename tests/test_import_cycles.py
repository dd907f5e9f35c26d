"""No import cycle between modules inside ``core/``, checked statically from the source.

Every ``import``/``from ... import`` counts wherever it sits (module top, inside a function, under ``if``/``try``),
so a lazy import that closes a loop is caught too. Importing ``a.b.c`` also runs the ``__init__`` of ``a`` and
``a.b``, so an import of a module is an edge to each package above it as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_files(root: Path, package: str) -> dict[str, Path]:
    """``{dotted module name: file}`` for every .py file of ``package`` under ``root`` (a package is its
    ``__init__``)."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Dotted names this module's imports ask for (a module, or a name inside one), relative ones resolved."""
    here = module.split(".") if is_package else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(here[: len(here) - (node.level - 1)] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            names.update(base if alias.name == "*" else f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """``{module: modules of the package that importing it runs}``.

    For each import: the module it names (for ``from m import name``, ``m.name`` when that is a submodule, else
    ``m`` itself, package ``__init__`` included), plus the packages above that module, whose ``__init__`` Python
    runs first — except the importer's own parent packages, which are already in ``sys.modules`` while it runs.
    """
    files = module_files(root, package)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        own_parents = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        targets: set[str] = set()
        for name in _imported_names(tree, module, path.name == "__init__.py"):
            parts = name.split(".")
            prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in files]
            if not prefixes:
                continue  # outside the package
            named = prefixes[-1]
            targets.add(named)
            targets.update(p for p in prefixes[:-1] if p not in own_parents)
        targets.discard(module)
        graph[module] = targets
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a closed path, first module repeated at the end) per strongly connected component that has one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return [_a_cycle_in(graph, comp) for comp in components]


def _a_cycle_in(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    start = min(comp)
    paths = {start: [start]}
    frontier = [start]
    while frontier:  # breadth-first inside the component, back to start
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & comp):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start} in a strongly connected component")


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


# -- the real package -----------------------------------------------------------------------------------------------


def test_core_has_no_import_cycles():
    graph = import_graph(ROOT, "core")
    assert len(graph) > 40 and sum(map(len, graph.values())) > 100  # the scan saw the package, not an empty tree
    cycles = find_cycles(graph)
    assert cycles == [], "import cycles inside core/:\n" + "\n".join(" -> ".join(c) for c in cycles)


# -- the checker, on tiny packages ----------------------------------------------------------------------------------


def test_checker_finds_a_cycle_closed_by_an_import_inside_a_function(tmp_path):
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import f\n",
            "pkg/b.py": "def f():\n    try:\n        from pkg import a\n    except ImportError:\n        pass\n",
        },
    )
    assert find_cycles(import_graph(tmp_path, "pkg")) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_checker_finds_a_cycle_through_a_package_init(tmp_path):
    # The registry lives in the package __init__ and a plugin registers itself by importing the package.
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/models/__init__.py": "from .registry import REG\n",
            "pkg/models/registry.py": "REG = {}\ndef load():\n    import pkg.models.plugin\n",
            "pkg/models/plugin.py": "from pkg.models import REG\n",
        },
    )
    cycles = find_cycles(import_graph(tmp_path, "pkg"))
    assert len(cycles) == 1 and set(cycles[0]) == {"pkg.models", "pkg.models.registry", "pkg.models.plugin"}


def test_checker_counts_the_parent_packages_an_import_runs(tmp_path):
    # x imports pkg.sub.y, which runs pkg/sub/__init__, which imports x: a cycle although nothing names pkg.sub.
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/x.py": "import pkg.sub.y\n",
            "pkg/sub/__init__.py": "from ..x import *\n",
            "pkg/sub/y.py": "",
        },
    )
    assert find_cycles(import_graph(tmp_path, "pkg")) == [["pkg.sub", "pkg.x", "pkg.sub"]]


def test_checker_accepts_a_package_that_imports_its_own_modules(tmp_path):
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/models/__init__.py": "from pkg.models.registry import REG\n",
            "pkg/models/registry.py": "from pkg.errors import Bad\nREG = {}\n",
            "pkg/models/plugin.py": "from pkg.models.registry import REG\nfrom . import registry\n",
            "pkg/models/other.py": "from pkg.models import REG\n",
            "pkg/errors.py": "class Bad(Exception): ...\n",
        },
    )
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.models.plugin"] == {"pkg.models.registry"}  # a submodule import needs no finished __init__
    assert graph["pkg.models.other"] == {"pkg.models"}  # a name from the package does
    assert graph["pkg.models.registry"] == {"pkg.errors"}
    assert find_cycles(graph) == []
