"""The package's shape (docs/ARCHITECTURE.md), checked on the import graph read from the code
(docs/import_graph.py: every import, those inside functions included)."""

from __future__ import annotations

import ast
import importlib.util

import pytest

from tests import REPO

spec = importlib.util.spec_from_file_location("import_graph", REPO / "docs" / "import_graph.py")
graph = importlib.util.module_from_spec(spec)
spec.loader.exec_module(graph)


def test_every_package_is_a_layer_and_the_top_level_holds_few_modules() -> None:
    top = sorted(p.name for p in graph.PACKAGE.iterdir() if p.suffix == ".py")
    packages = sorted(p.name for p in graph.PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert len([m for m in top if m not in ("__init__.py", "__main__.py")]) <= 4, top
    assert set(packages) | {m.removesuffix(".py") for m in top} >= set(graph.LAYERS)
    assert set(packages) <= set(graph.LAYERS), set(packages) - set(graph.LAYERS)


def test_no_upward_import() -> None:
    rank = {name: i for i, name in enumerate(graph.LAYERS)}
    upward = [
        f"{src}:{line} imports {dst}"
        for src, dst, line, _ in graph.edges()
        if graph.layer(src) in rank
        and graph.layer(dst) in rank
        and rank[graph.layer(dst)] > rank[graph.layer(src)]
    ]
    assert not upward, "\n".join(upward)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def test_cycles_are_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_circle_between_modules() -> None:
    """The package root's lazy re-exports (``isaprof/__init__.py``) are the entry point, not a layer."""
    edges: dict[str, set[str]] = {}
    for src, dst, _, _ in graph.edges():
        if dst != "isaprof" and src != "isaprof" and src != dst:
            edges.setdefault(src, set()).add(dst)
    assert cycles(edges) == []


def test_no_private_name_crosses_a_module() -> None:
    crossing = [
        f"{src}:{line} imports {name} from {dst}"
        for src, dst, line, names in graph.edges()
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    for name, path in graph.modules().items():  # module._name on an imported module of ours
        tree = ast.parse(path.read_text())
        aliases = {
            a.asname or a.name
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            and (getattr(node, "module", None) or "isaprof").startswith("isaprof")
            for a in node.names
            if isinstance(node, ast.ImportFrom) or a.name.startswith("isaprof")
        }
        crossing += [
            f"{name}:{node.lineno} uses {node.value.id}.{node.attr}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ]
    assert not crossing, "\n".join(crossing)


@pytest.mark.parametrize("flag", ["", "--dot", "--modules"])
def test_the_graph_command_runs(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    graph.main([flag] if flag else [])
    out = capsys.readouterr().out
    assert ("digraph" in out) if flag == "--dot" else ("->" in out)


def test_the_graph_sees_imports_inside_functions_relative_ones_and_private_names(tmp_path) -> None:
    """The rules above are only as good as the edges: a function-level upward import, a relative import
    and a private name are all read (on a module written here, named as if it sat in ``measure``)."""
    src = tmp_path / "probe.py"
    src.write_text(
        "from isaprof.config import _hidden\n"
        "from . import flops\n"
        "def f():\n"
        "    from isaprof.cli import main\n"
        "    import isaprof.report.page\n"
    )
    known = {"isaprof.measure.flops", "isaprof.report.page", "isaprof.cli"}
    got = graph.imports(src, "isaprof.measure.probe", known)
    assert ("isaprof.config", 1, ("_hidden",)) in got
    assert ("isaprof.measure.flops", 2, ()) in got
    assert ("isaprof.cli", 4, ("main",)) in got and ("isaprof.report.page", 5, ()) in got
    rank = {name: i for i, name in enumerate(graph.LAYERS)}
    assert rank[graph.layer("isaprof.cli")] > rank[graph.layer("isaprof.measure.probe")]  # upward
