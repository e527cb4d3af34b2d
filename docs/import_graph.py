"""The import graph of the isaprof package, read from the code (every ``import``, those inside functions too).

    python docs/import_graph.py            # one line per package: the packages it imports
    python docs/import_graph.py --dot      # Graphviz: ... --dot | dot -Tsvg > graph.svg
    python docs/import_graph.py --modules  # module-level edges

Torch-free and dependency-free (``ast`` only); ``tests/test_layers.py`` checks the rules of
docs/ARCHITECTURE.md on the same graph.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "isaprof"
# Bottom up: a layer imports only layers listed before it (config and units are modules, the rest packages).
LAYERS = (
    "config",
    "units",
    "papers",
    "results",
    "formulas",
    "targets",
    "measure",
    "symbolic",
    "flow",
    "profiling",
    "roofline",
    "studies",
    "report",
    "cli",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, name: str, known: set[str]) -> list[tuple[str, int, tuple[str, ...]]]:
    """``(imported module, line, names)`` for every import in ``path``: the module itself where it is one of
    ours, for ``from pkg import sub`` the submodule."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, ()) for a in node.names if a.name.split(".")[0] == "isaprof"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "isaprof":
                continue
            names = tuple(a.name for a in node.names)
            subs = [f"{mod}.{n}" for n in names if f"{mod}.{n}" in known]
            rest = tuple(n for n in names if f"{mod}.{n}" not in known)
            out += [(s, node.lineno, ()) for s in subs]
            if rest or not subs:
                out.append((mod, node.lineno, rest))
    return out


def layer(module: str) -> str:
    """The layer a dotted module belongs to (``isaprof`` itself: the package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] != "__main__" else "isaprof"


def edges() -> list[tuple[str, str, int, tuple[str, ...]]]:
    """``(importer, imported, line, names)`` over the whole package."""
    mods = modules()
    return [(name, target, line, names) for name, path in mods.items()
            for target, line, names in imports(path, name, set(mods))]  # fmt: skip


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for src, dst, _, _ in edges():
        a, b = layer(src), layer(dst)
        if a != b and b != "isaprof":
            graph.setdefault(a, set()).add(b)
    return graph


def main(argv: list[str]) -> None:
    if "--modules" in argv:
        for src, dst, line, _ in edges():
            print(f"{src}:{line} -> {dst}")
    elif "--dot" in argv:
        print("digraph isaprof {\n  rankdir=BT;")
        for a, bs in sorted(package_graph().items()):
            for b in sorted(bs):
                print(f'  "{a}" -> "{b}";')
        print("}")
    else:
        graph = package_graph()
        for name in LAYERS:
            print(f"{name:10s} -> {', '.join(sorted(graph.get(name, ()))) or '-'}")


if __name__ == "__main__":
    main(sys.argv[1:])
