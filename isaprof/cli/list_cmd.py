"""``isaprof list``: every target isaprof knows by name: built-in blocks and installed plugins."""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "list",
        help="list every known target: name, source, options with defaults, whether it has a formula",
        description="List the registered targets (built-in blocks and plugins from the `isaprof.blocks` "
        "entry-point group). Any other module is a target too, by import path package.module:Attr.",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(func=run)


def entries() -> list[dict[str, Any]]:
    """One dict per registered target; a plugin whose options cannot be read says why in ``error``."""
    from isaprof import formulas
    from isaprof.targets import registry

    out = []
    for name in registry.names(everything=True):
        s = registry.spec(name)
        entry: dict[str, Any] = {"name": name, "source": s.source, "target": s.target, "impls": list(s.impls)}
        try:
            entry["options"] = {k: repr(v) if v is registry.REQUIRED else v for k, v in s.options.items()}
            entry["error"] = None
        except Exception as e:  # noqa: BLE001  one broken plugin must not hide the others
            entry["options"], entry["error"] = {}, f"{type(e).__name__}: {str(e).strip()[:200]}"
        entry["formula"] = formulas.find(s.formula_name) is not None
        entry["summary"] = s.summary
        out.append(entry)
    return out


def run(args: argparse.Namespace) -> int:
    from isaprof import formulas
    from isaprof.targets import registry

    rows = entries()
    formula_errors = {f"formula {k}": v for k, v in formulas.base.PLUGIN_ERRORS.items()}
    problems = {**registry.PLUGIN_ERRORS, **formula_errors}
    if args.json:
        print(json.dumps({"targets": rows, "plugin_errors": problems}, indent=2, default=str))
        return 0
    w = max(len(r["name"]) for r in rows)
    ws = max(len(r["source"]) for r in rows)
    print(f"{'name':<{w}}  {'source':<{ws}}  formula  options (defaults)")
    for r in rows:
        opts = ", ".join(f"{k}={_fmt(v)}" for k, v in r["options"].items()) or "-"
        if r["error"]:
            opts = f"unreadable: {r['error']}"
        print(f"{r['name']:<{w}}  {r['source']:<{ws}}  {'yes' if r['formula'] else 'no':<7}  {opts}")
    for what, why in problems.items():
        print(f"plugin {what}: not loaded: {why}")
    print("any other nn.Module is a target too: isaprof profile package.module:Attr --size HxW --channels C")
    return 0


def _fmt(v: Any) -> str:
    if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, int) for x in v):
        return f"{v[0]}x{v[1]}"
    return repr(v) if isinstance(v, str) else str(v)
