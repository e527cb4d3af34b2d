"""The report's exact-exponents section from a hand-written derived.json (torch-free)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pandas as pd

from isaprof.report import data, derived, write_report
from tests import REPO

ROOT = REPO
SIZES = [(16, 16), (32, 32), (64, 64), (128, 128), (256, 256), (512, 512)]
# MACs at C = 64 (the closed forms isaprof formula derives for these blocks at C = 64, Ck = Cv = 32)
MACS = {
    "dense": (lambda h, w: 64 * (h * w) ** 2 + 10240 * h * w, "64*H**2*W**2 + 10240*H*W", "64*H**2*W**2", 2),
    "axial": (
        lambda h, w: 64 * h * h * w + 64 * h * w * w + 20480 * h * w,
        "64*H**2*W + 64*H*W**2 + 20480*H*W",
        "64*H**2*W + 64*H*W**2",
        1.5,
    ),
}


def _row(block: str, h: int, w: int, metric: str, value: float, factor: str = "") -> dict:
    opts = json.dumps({"factor": [int(p) for p in factor.split("x")]} if factor else {})
    return dict(block=block, batch=1, channels=64, key_channels=32, value_channels=32, height=h, width=w,
                padded_height=h, padded_width=w, factor=factor, recurrence="", options=opts, impl="naive",
                backend="", dtype="float32", device="meta", mode="inference", metric=metric, measured=value,
                analytic=value, unit="MAC" if metric == "macs" else "FLOP", spread="", status="ok", error="",
                torch="2.13.0", device_name="synthetic", threads=2, host="test",
                timestamp="2026-01-01T00:00:00")  # fmt: skip


def _results(tmp: Path) -> Path:
    rows = []
    for block, (f, *_rest) in MACS.items():
        for h, w in SIZES:
            rows += [_row(block, h, w, "macs", f(h, w)), _row(block, h, w, "flops", 2 * f(h, w))]
    for ph, pw in [(2, 2), (2, 4), (4, 2), (4, 4), (2, 8)]:  # ISA's factor grid at 8x8: 2x4 and 4x2 tie best
        cost = 100 + abs(ph * pw - 8)
        rows.append(_row("isa", 8, 8, "macs", cost, f"{ph}x{pw}"))
    res = tmp / "results"
    res.mkdir()
    pd.DataFrame(rows, columns=data.COLUMNS).to_csv(res / "results.csv", index=False)
    (res / "machine.json").write_text(json.dumps({"environment": {"torch": "2.13.0"}}))
    blocks = [
        {"block": b, "impl": "naive", "mode": "inference", "channels": 64,
         "macs": {"expression": e, "leading": lead, "exponent": x, "valid_when": []}}
        for b, (_f, e, lead, x) in MACS.items()
    ]  # fmt: skip
    blocks.append(
        {"block": "broken", "impl": "naive", "mode": "inference", "error": "op aten.nonzero stopped"}
    )
    blocks[0]["peak_bytes"] = {
        "expression": "Max(1024*H*W, 8*H**2*W**2 + 384*H*W)",
        "reason": "undecided: ...",
    }
    isa = {"channels": 64, "expression": "64*H**2*W**2/(P_h*P_w) + 64*H*P_h*P_w*W + 20480*H*W",
           "attention": "64*H**2*W**2/P + 64*H*P*W", "optimum": "P_h*P_w = sqrt(H*W)", "minimum": True,
           "at": {"8x8": {"factors": ["1x8", "2x4", "4x2", "8x1"], "P": [8], "macs": 90,
                          "continuous_P": 8.0}}}  # fmt: skip
    (res / "derived.json").write_text(json.dumps({"channels": 64, "mode": "inference", "blocks": blocks,
                                                  "isa_optimum": isa}))  # fmt: skip
    return res


def test_dominance_size_of_dense() -> None:
    # 64 S^4 >= 0.9 (64 S^4 + 10240 S^2)  <=>  S^2 >= 1440  <=>  S >= 38
    assert derived.dominance_size("64*H**2*W**2 + 10240*H*W", "64*H**2*W**2") == 38


def test_comparison_agrees_for_dense_and_explains_axial_by_the_fit_range(tmp_path: Path) -> None:
    res = _results(tmp_path)
    table = derived.comparison(
        derived.read_derived(res / "derived.json"), data.read_results(res / "results.csv")
    )
    dense = table[table["block"] == "dense"].iloc[0]
    assert dense["agree"] == "yes" and abs(dense["fitted exponent"] - 2) < 0.05
    axial = table[table["block"] == "axial"].iloc[0]
    assert axial["fitted exponent"] < 1.45  # lower-order 20480 H W still weighs at 512x512
    assert math.isclose(axial["derived slope at fit sizes"], axial["fitted exponent"], rel_tol=1e-9)
    assert axial["agree"].startswith("no: fit range")
    assert axial["leading dominates from"] == "1440x1440"  # 128 S^3 >= 0.9 (128 S^3 + 20480 S^2): S >= 1440


def test_section_on_the_page_with_isa_optimum_and_peaks(tmp_path: Path) -> None:
    res = _results(tmp_path)
    page = write_report(res, tmp_path / "out").read_text()
    sec = page.split("## Exact exponents (derived)")[1].split("\n## ")[0]
    dense = next(line for line in sec.splitlines() if line.startswith("| dense | naive |"))
    assert "| 64*H**2*W**2 | 2.00 |" in dense and dense.endswith("| yes |")
    assert "P_h*P_w = sqrt(H*W)" in sec and "broken [naive]: op aten.nonzero stopped" in sec
    isa_row = next(line for line in sec.splitlines() if line.startswith("| 8x8 |"))
    assert "2x4, 4x2" in isa_row and isa_row.rstrip(" |").endswith("yes")
    assert "Max(1024*H*W, 8*H**2*W**2 + 384*H*W)" in sec
    assert (tmp_path / "out" / "tables" / "exponents_derived.csv").is_file()


def test_missing_derived_json_is_a_note(tmp_path: Path) -> None:
    res = _results(tmp_path)
    (res / "derived.json").unlink()
    notes: list[str] = []
    assert derived.section(res, data.read_results(res / "results.csv"), tmp_path / "out", notes) == ""
    assert len(notes) == 1 and "no derived.json" in notes[0]


def test_the_section_needs_no_torch(tmp_path: Path) -> None:
    res = _results(tmp_path)
    code = (
        "import sys; sys.modules['torch'] = None\nfrom pathlib import Path\nimport pandas as pd\n"
        "from isaprof.report import derived\n"
        f"print(derived.section(Path({str(res)!r}), pd.DataFrame(), Path({str(tmp_path)!r}), []))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "| axial | naive |" in out.stdout


def test_a_swept_size_outside_the_expressions_region_is_named() -> None:
    rec = {"fitted exponent": 1.09, "derived exponent": 2, "derived slope at fit sizes": 1.15}
    outside = derived._outside(["Eq(Mod(H, 8), 0)"], [64, 97, 128], [64, 97, 128])
    assert outside == "97x97: Eq(Mod(H, 8), 0)"
    assert derived._verdict(rec, 512, 512, outside).startswith("no: a swept size is outside")


def test_expressions_evaluate_exactly_without_sympy() -> None:
    f = derived.expression_function
    # ISA's MACs at C = 512 on 97x97: ceiling(97/8) = 13, so 32768 * 13^4 + 85983232 * 13^2
    isa = "32768*ceiling(H/8)**2*ceiling(W/8)**2 + 85983232*ceiling(H/8)*ceiling(W/8)"
    assert f(isa)(97, 97) == 32768 * 13**4 + 85983232 * 13**2
    assert f("Max(1024*H*W, 8*H**2*W**2 + 384*H*W)")(2, 3) == max(1024 * 6, 8 * 36 + 384 * 6)
    assert f("H*W/3 - W/2")(2, 3) == Fraction(2 * 3, 3) - Fraction(3, 2)  # exact: 1/2, not 0.5000001
    assert f("H**(-2)*W")(2, 3) == Fraction(3, 4) and f("floor(H/W) + Min(H, -W)")(7, 2) == 3 - 2
    assert f("H**0.5")(16, 1) == 4.0  # a non-integer power goes through floats
    assert f("Eq(Mod(H, 8), 0)")(64, 1) is True and f("Eq(Mod(H, 8), 0)")(97, 1) is False
    assert f("H*W >= 64")(8, 8) is True and f("H >= 2")(1, 5) is False
    assert f("(H >= 2) & (W >= 2)")(2, 1) is False


def test_expressions_outside_the_grammar_go_through_sympy() -> None:
    # Piecewise is no call of the exact grammar: SymPy reads it (same value)
    f = derived.expression_function("Piecewise((H, H > W), (W, True))")
    assert f(3, 5) == 5 and f(6, 5) == 6


def test_the_committed_expressions_agree_with_sympy() -> None:
    import sympy

    obj = derived.read_derived(REPO / "reports" / "data" / derived.DERIVED_FILE)
    texts = {
        t
        for row in obj["blocks"]
        for part in ("macs", "peak_bytes")
        if isinstance(row.get(part), dict)
        for t in [row[part].get("expression"), row[part].get("leading"), *(row[part].get("valid_when") or [])]
        if t
    }
    assert len(texts) >= 10
    h, w = sympy.symbols("H W", integer=True, positive=True)
    for text in texts:
        expr = sympy.sympify(text, locals={"H": h, "W": w})
        for a, b in ((1, 1), (7, 9), (97, 97), (128, 256)):
            want = expr.subs({h: a, w: b})
            got = derived.expression_function(text)(a, b)
            assert (bool(want) == got) if isinstance(got, bool) else (sympy.nsimplify(got) == want), text
