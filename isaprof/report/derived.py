"""The "exact exponents" section: each block's derived closed form beside the exponent fitted to the sweep.

Reads ``RESULTS_DIR/derived.json`` (``isaprof formula --all --json --out``: ``{"channels", "mode", "blocks":
[{"block", "impl", "macs": {"expression", "leading", "exponent", ...}, ...}], "isa_optimum": {...}}``) and
the tidy results; torch-free, and SymPy-free for expressions in the grammar of :func:`expression_function`
(the closed forms ``isaprof formula`` prints).

Agreement: the derived exponent is the limit N -> infinity; the fitted one is a slope over the swept sizes.
They agree within ``TOLERANCE`` when the sweep reaches sizes where the leading term dominates. Where they do
not, the derived expression evaluated at the sweep's own sizes and fitted the same way
(``tables.fit_exponent``) gives the fitted number back (same channels), and the size from which the leading
term is ``DOMINANT`` of the cost says how far the sweep would have to go.
"""

from __future__ import annotations

import ast
import json
import math
import operator
import shutil
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from isaprof import units
from isaprof.report import data, tables

DERIVED_FILE = "derived.json"
TOLERANCE = 0.05  # |fitted - derived| exponent difference still called agreement (log-log slope)
DOMINANT = 0.9  # "the leading term dominates": it is at least this share of the whole cost


def read_derived(path: Path) -> dict[str, Any]:
    """``derived.json`` as a dict (an older list of block rows is wrapped as ``{"blocks": rows}``)."""
    obj = json.loads(path.read_text())
    if isinstance(obj, list):
        obj = {"blocks": obj}
    if not isinstance(obj, dict) or not isinstance(obj.get("blocks", []), list):
        raise ValueError(f"{path}: expected an object with a 'blocks' list")
    return obj


# What an expression of derived.json may hold for the exact evaluator (anything else goes through SymPy):
# integers and floats, H and W, + - * / ** %, comparisons, & and |, and these SymPy functions.
_CALLS: dict[str, Callable[..., Any]] = {
    "ceiling": math.ceil, "floor": math.floor, "Max": max, "Min": min, "Abs": abs, "Mod": operator.mod,
    "Eq": operator.eq, "Ne": operator.ne, "Ge": operator.ge, "Gt": operator.gt, "Le": operator.le,
    "Lt": operator.lt,
}  # fmt: skip
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.GtE: operator.ge, ast.Gt: operator.gt,
            ast.LtE: operator.le, ast.Lt: operator.lt}  # fmt: skip


def _divide(a: Any, b: Any) -> Any:
    """``a / b`` exactly (a Fraction) between integers and fractions, as floats otherwise."""
    exact = (int, Fraction)
    return Fraction(a) / Fraction(b) if isinstance(a, exact) and isinstance(b, exact) else a / b


def _power(a: Any, b: Any) -> Any:
    """``a ** b`` exactly for an integer exponent (a negative one gives a Fraction), as floats otherwise."""
    if isinstance(b, Fraction) and b.denominator == 1:
        b = int(b)
    if isinstance(b, int) and isinstance(a, (int, Fraction)):
        return Fraction(a) ** b if b < 0 else a**b
    return float(a) ** float(b)


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: _divide,
           ast.Pow: _power, ast.Mod: operator.mod, ast.BitAnd: operator.and_,
           ast.BitOr: operator.or_}  # fmt: skip


def _compile(node: ast.AST) -> Callable[[int, int], Any]:
    """A function of (H, W) evaluating ``node`` in exact integer/rational arithmetic; ``ValueError`` on
    anything outside the small grammar of :data:`_CALLS` and :data:`_BINARY`."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        value = node.value
        return lambda h, w: value
    if isinstance(node, ast.Name) and node.id in ("H", "W"):
        return (lambda h, w: h) if node.id == "H" else (lambda h, w: w)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        arg, sign = _compile(node.operand), -1 if isinstance(node.op, ast.USub) else 1
        return lambda h, w: sign * arg(h, w)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        op, left, right = _BINARY[type(node.op)], _compile(node.left), _compile(node.right)
        return lambda h, w: op(left(h, w), right(h, w))
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
        op, left, right = _COMPARE[type(node.ops[0])], _compile(node.left), _compile(node.comparators[0])
        return lambda h, w: op(left(h, w), right(h, w))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _CALLS:
        if node.keywords or not node.args:
            raise ValueError(f"unsupported call {ast.unparse(node)}")
        fn, args = _CALLS[node.func.id], [_compile(a) for a in node.args]
        return lambda h, w: fn(*(a(h, w) for a in args))
    raise ValueError(f"unsupported expression {ast.unparse(node)}")


def expression_function(expression: str) -> Callable[[int, int], Any]:
    """A function of integer (H, W) giving the value of a SymPy-printed ``expression`` of ``derived.json``
    (a polynomial in H, W with ceiling/floor/Max/Min/Mod; a condition such as ``Eq(Mod(H, 8), 0)``).

    Evaluated exactly in Python integers and fractions, without importing SymPy; an expression outside
    that grammar is read by SymPy (``sympify``) and evaluated there.
    """
    try:
        return _compile(ast.parse(expression.strip(), mode="eval").body)
    except (SyntaxError, ValueError):
        pass
    import sympy

    h, w = sympy.symbols("H W", integer=True, positive=True)
    expr = sympy.sympify(expression, locals={"H": h, "W": w})
    if isinstance(expr, sympy.logic.boolalg.Boolean):
        return lambda a, b: bool(expr.subs({h: int(a), w: int(b)}))
    return sympy.lambdify((h, w), expr, modules=["math", {"Max": max, "Min": min}])


def dominance_size(expression: str, leading: str, share: float = DOMINANT, top: int = 2**16) -> int | None:
    """Smallest square side S (H = W = S, S <= ``top``) from which ``leading`` is >= ``share`` of
    ``expression`` (checked at geometrically spaced sides, then refined); None if not within ``top``."""
    f, g = expression_function(expression), expression_function(leading)

    def ok(s: int) -> bool:
        total = float(f(s, s))
        return total > 0 and float(g(s, s)) >= share * total

    sides = sorted({int(round(x)) for x in np.geomspace(2, top, 200)})
    for i, s in enumerate(sides):
        if ok(s):
            lo = sides[i - 1] if i else 1
            while lo + 1 < s:  # bisect between the last failing and the first passing side
                mid = (lo + s) // 2
                lo, s = (lo, mid) if ok(mid) else (mid, s)
            return s
    return None


def comparison(derived: dict[str, Any], df: pd.DataFrame) -> pd.DataFrame:
    """One row per derived (block, impl): derived leading term and exponent, the fitted FLOPs exponent of
    the sweep's main slice (inference), the derived expression's own slope over the same sizes, the
    leading term's share at the largest swept size, the dominance side, and whether they agree."""
    lines = {}
    rows = data.main_slice(data.metric_rows(df, "flops", "inference")) if not df.empty else df
    if not rows.empty:
        for key, g in data.series(rows).items():
            lines.setdefault((key[0], key[1]), g)  # (block, impl) -> the line with the default options
    out = []
    for row in derived.get("blocks", []):
        macs = row.get("macs") or {}
        if not macs.get("expression"):
            continue
        block, impl = row.get("block", "?"), row.get("impl", "naive")
        rec: dict[str, Any] = {
            "block": block,
            "impl": impl,
            "leading term (MACs)": macs.get("leading") or "",
            "derived exponent": macs.get("exponent"),
            "fitted exponent": float("nan"),
            "fit sizes": "",
            "derived slope at fit sizes": float("nan"),
            "leading share at largest": float("nan"),
            "leading dominates from": "",
            "agree": "",
        }
        if macs.get("leading") and macs.get("exponent") is not None:
            side = dominance_size(macs["expression"], macs["leading"])
            rec["leading dominates from"] = f"{side}x{side}" if side else f"> {2**16}x{2**16}"
        g = lines.get((block, impl))
        if g is not None and macs.get("exponent") is not None:
            n, hs, ws = g["N"].to_numpy(), g["height"].to_numpy(), g["width"].to_numpy()
            fitted = tables.fit_exponent(n, g["measured"].to_numpy())
            f = expression_function(macs["expression"])
            own = np.array([float(f(int(h), int(w))) for h, w in zip(hs, ws, strict=True)])
            last = int(np.argmax(n))
            lead = expression_function(macs["leading"]) if macs.get("leading") else None
            rec["fitted exponent"] = fitted
            rec["fit sizes"] = f"{int(hs.min())}x{int(ws.min())}..{int(hs[last])}x{int(ws[last])}"
            rec["derived slope at fit sizes"] = tables.fit_exponent(n, own)
            if lead is not None and own[last] > 0:
                rec["leading share at largest"] = float(lead(int(hs[last]), int(ws[last]))) / own[last]
            outside = _outside(macs.get("valid_when") or [], hs, ws)
            rec["agree"] = _verdict(rec, int(g["channels"].iloc[0]), derived.get("channels"), outside)
        out.append(rec)
    return pd.DataFrame(out)


def _outside(valid_when: list[str], hs: np.ndarray, ws: np.ndarray) -> str:
    """``"97x97: Eq(Mod(H, 8), 0)"`` for the first swept size where a condition of the expression fails."""
    for text in valid_when:
        cond = expression_function(text)
        for a, b in zip(hs, ws, strict=True):
            if not bool(cond(int(a), int(b))):
                return f"{int(a)}x{int(b)}: {text}"
    return ""


def _verdict(
    rec: dict[str, Any], swept_channels: int, derived_channels: int | None, outside: str = ""
) -> str:
    fitted, exact, own = (
        rec["fitted exponent"],
        float(rec["derived exponent"]),
        rec["derived slope at fit sizes"],
    )
    if not math.isfinite(fitted):
        return "no fit (sizes span < 2x)"
    if abs(fitted - exact) <= TOLERANCE:
        return "yes"
    if outside:
        return f"no: a swept size is outside the expression's region ({outside}); trace at such a size"
    same = derived_channels is None or derived_channels == swept_channels
    if same and math.isfinite(own) and abs(own - fitted) <= TOLERANCE:
        return f"no: fit range (lower-order terms; leading term {100 * rec['leading share at largest']:.0f}%)"
    if not same:
        return f"no (derived at C={derived_channels}, swept at C={swept_channels})"
    return "NO: the derived expression does not reproduce the fit"


def optimum_table(derived: dict[str, Any], df: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """(sentence, table) of ISA's derived optimum beside the measured best factor of the factor grid."""
    opt = derived.get("isa_optimum") or {}
    if not opt or "error" in opt:
        return "", pd.DataFrame()
    grid = tables.factor_grid(df, "macs", "inference") if not df.empty else pd.DataFrame()
    measured: dict[str, tuple[list[str], int]] = {}
    if not grid.empty and grid["measured"].notna().any():
        h, w = int(grid["height"].iloc[0]), int(grid["width"].iloc[0])
        low = grid["measured"].min()
        best = grid[grid["measured"] <= low]
        measured[f"{h}x{w}"] = ([f"{a}x{b}" for a, b in zip(best["ph"], best["pw"], strict=True)],
                                int(grid["channels"].iloc[0]))  # fmt: skip
    rows = []
    for size, at in (opt.get("at") or {}).items():
        meas, c = measured.get(size, ([], None))
        agree = ""
        if meas:
            agree = "yes" if set(meas) <= set(at["factors"]) else "no"
            if c != opt.get("channels"):
                agree += f" (measured at C={c}, derived at C={opt.get('channels')})"
        rows.append(
            {
                "size": size,
                "sqrt(HW)": at.get("continuous_P"),
                "derived best (P_h x P_w, padding included)": ", ".join(at["factors"]),
                "derived MACs at best": tables.fmt(at.get("macs"), "macs"),
                "measured best (factor grid, MACs)": ", ".join(meas) or "(not swept)",
                "agree": agree,
            }
        )
    sentence = (
        f"ISA's MACs with the factor as symbols (one trace on a P_h Q_h x P_w Q_w input, "
        f"C={opt.get('channels')}) are `{opt.get('expression')}`; they depend on the factor only through "
        f"P = P_h P_w, and setting the derivative of the attention term `{opt.get('attention')}` to zero "
        "gives "
        f"**{opt.get('optimum')}**"
        + (" (a minimum)." if opt.get("minimum") else ".")
        + " At a given size the exact integer optimum (every P_h, P_w; sizes no factor divides are padded) "
        "is:"
    )
    return sentence, pd.DataFrame(rows)


def section(results_dir: Path, df: pd.DataFrame, out_dir: Path, notes: list[str]) -> str:
    """The Markdown of the exact-exponents section ('' with a note when ``derived.json`` is missing)."""
    path = Path(results_dir) / DERIVED_FILE
    if not path.is_file():
        notes.append(
            f"exact exponents: no {DERIVED_FILE} in {results_dir} (`isaprof formula --all --json --out`)."
        )
        return ""
    try:
        derived = read_derived(path)
    except (ValueError, json.JSONDecodeError) as e:
        notes.append(f"exact exponents: {path.name} unreadable ({e}).")
        return ""
    (out_dir / "tables").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, out_dir / "tables" / DERIVED_FILE)
    table = comparison(derived, df)
    table.to_csv(out_dir / "tables" / "exponents_derived.csv", index=False)
    c = derived.get("channels")
    lines = [
        "## Exact exponents (derived)",
        "Each block run once on symbolic H, W (`isaprof formula`, "
        + (f"C={c}, " if c else "")
        + "default options) gives its MACs as a closed form; its leading term's exponent in N = H W is exact "
        "(1.5 for H^2 W + H W^2 holds on square maps). Beside it, the exponent fitted to the sweep's FLOPs "
        f"(the table above). They agree within {TOLERANCE} when the sweep reaches sizes where the leading "
        "term dominates; where not, the derived expression fitted over the same sizes gives the fitted slope "
        f"back, and the last column says from which square size the leading term is {DOMINANT:.0%} of the "
        "cost.",
    ]
    if table.empty:
        lines.append("_No derived expressions in derived.json._")
    else:
        lines.append(tables.markdown(table, floatfmt=".2f"))
    errors = [r for r in derived.get("blocks", []) if r.get("error")]
    if errors:
        lines.append(
            "Not derivable: " + "; ".join(f"{r['block']} [{r.get('impl')}]: {r['error']}" for r in errors)
        )
    sentence, opt = optimum_table(derived, df)
    if sentence:
        lines += [sentence, tables.markdown(opt, floatfmt=".1f")]
    peaks = peak_table(derived)
    if not peaks.empty:
        lines.append(
            "Peak memory (inference) as a closed form, where the storage tracker's comparisons could be "
            "decided on symbolic sizes (else the reason and the numeric peak at the traced size); "
            f"{units.IVERSON}:"
        )
        lines.append(tables.markdown(peaks))
    return "\n\n".join(lines)


def peak_table(derived: dict[str, Any]) -> pd.DataFrame:
    """One row per block with a ``peak_bytes`` entry: its expression (or none) and the reason."""
    rows = []
    for row in derived.get("blocks", []):
        peak = row.get("peak_bytes")
        if not isinstance(peak, dict):
            continue
        rows.append(
            {
                "block": row.get("block"),
                "impl": row.get("impl"),
                "peak bytes": units.expression(peak.get("expression") or ""),
                "how": units.expression(peak.get("reason") or ""),
            }
        )
    return pd.DataFrame(rows)
