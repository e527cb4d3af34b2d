"""The exact cost baseline: a cost change fails the check with a readable diff; an unchanged tree passes.

Two layers: the diff/file logic with a stub ``measure`` (fast, independent of the blocks), then the
real thing through ``isaprof.profile`` on the meta device (a block patched to do one extra matmul).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from isaprof.cli import main
from isaprof.studies import baseline
from isaprof.studies.baseline import Case

STUB_CASES = [Case.of("dense", "naive", 4, 6), Case.of("isa", "naive", 5, 7, options=(("factor", (2, 2)),))]


def _stub_measure(macs: dict[str, int]) -> Any:
    """A ``measure`` whose forward MACs per block come from ``macs`` (train = 3x, peak = 8 x MACs)."""

    def measure(case: Case, mode: str) -> tuple[dict[str, Any], dict[str, Any]]:
        m = macs[case.block] * (3 if mode == "train" else 1) * case.config.height * case.config.width
        return {
            f"macs.{mode}": {"measured": m, "analytic": m},
            f"peak_bytes.{mode}": {"measured": 8 * m, "analytic": 8 * m},
            f"params.{mode}": {"measured": 100, "analytic": 100},
        }, {"padded": [case.config.height, case.config.width]}

    return measure


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Stub measurement over STUB_CASES; mutate the returned dict to change a block's cost."""
    macs = {"dense": 10, "isa": 3}
    monkeypatch.setattr(baseline, "measure", _stub_measure(macs))
    monkeypatch.setattr(
        baseline, "cases", lambda blocks=None: [c for c in STUB_CASES if not blocks or c.block in blocks]
    )
    return macs


def test_unchanged_stub_passes_and_file_is_stable(stub: dict[str, int], tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    doc = baseline.update(path)
    assert sorted(doc["cases"]) == ["dense/naive B1 C32 4x6", "isa/naive B1 C32 5x7 factor=2x2"]
    entry = doc["cases"]["dense/naive B1 C32 4x6"]
    # 10 MAC/position x 24 positions; train 3x; params kept once, not per mode
    assert entry["metrics"]["macs.inference"] == {"measured": 240, "analytic": 240}
    assert entry["metrics"]["macs.train"]["measured"] == 720
    assert set(entry["metrics"]) == {
        "params",
        "macs.inference",
        "macs.train",
        "peak_bytes.inference",
        "peak_bytes.train",
    }
    text = path.read_text()
    baseline.update(path)
    assert path.read_text() == text  # deterministic bytes: a re-run makes no diff in review
    diff = baseline.check(path)
    assert diff.ok and diff.compared == 2


def test_cost_change_is_reported_with_block_metric_and_ratio(
    stub: dict[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "b.json"
    baseline.update(path)
    stub["isa"] = 4  # 3 -> 4 MAC per position: x4/3 everywhere for isa, dense untouched
    diff = baseline.check(path)
    assert not diff.ok
    assert {c.block for c in diff.changes} == {"isa"}
    change = next(c for c in diff.changes if c.metric == "macs.train measured")
    assert (change.old, change.new) == (3 * 3 * 35, 3 * 4 * 35)
    assert change.ratio == pytest.approx(4 / 3)
    assert main(["baseline", "check", "--file", str(path), "--jobs", "1"]) == 1  # 1: patches stay in-process
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "macs.train measured" in ln)
    assert line.split()[:2] == ["isa", "naive"] and "315 -> 420" in line and "x1.3333" in line
    assert "peak_bytes.inference analytic" in out and "dense" not in out.split("old -> new")[1]


def test_added_and_removed_configurations_fail(stub: dict[str, int], tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    doc = baseline.update(path)
    doc["cases"]["dense/naive B1 C32 9x9"] = doc["cases"].pop("dense/naive B1 C32 4x6")
    baseline.write(doc, path)
    diff = baseline.check(path)
    assert diff.added == ("dense/naive B1 C32 4x6",) and diff.removed == ("dense/naive B1 C32 9x9",)
    assert not diff.ok and not diff.changes
    text = baseline.format_diff(diff)
    assert "added:   dense/naive B1 C32 4x6" in text and "removed: dense/naive B1 C32 9x9" in text


def test_block_filter_checks_and_updates_only_that_block(stub: dict[str, int], tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    baseline.update(path)
    stub["isa"] = 5
    assert baseline.check(path, blocks=["dense"]).ok  # isa's change is outside the filter
    baseline.update(path, blocks=["isa"])  # replaces isa's cases, keeps dense's
    doc = baseline.load(path)
    assert len(doc["cases"]) == 2 and baseline.check(path).ok


def test_error_in_a_configuration_is_a_change(stub: dict[str, int], tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    baseline.update(path)
    del stub["isa"]  # the stub now raises KeyError for isa: as a block that stops running
    real = baseline.measure

    def failing(case: Case, mode: str) -> Any:
        try:
            return real(case, mode)
        except KeyError as e:
            return {f"macs.{mode}": {"error": f"KeyError: {e}"}}, {}

    baseline.measure = failing  # restored by monkeypatch (stub fixture) at teardown
    diff = baseline.check(path)
    errors = [c for c in diff.changes if c.metric.endswith(" error")]
    assert errors and errors[0].block == "isa" and errors[0].old is None and "KeyError" in errors[0].new


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no baseline file"),
        ("{not json", "not valid JSON"),
        ('{"schema": 99}', "not an isaprof baseline"),
    ],
)
def test_bad_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    path = tmp_path / "b.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=message):
        baseline.load(path)
    assert main(["baseline", "check", "--file", str(path)]) == 2  # the CLI's one-line error, no trace
    assert message in capsys.readouterr().err


def test_unknown_block_filter_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown block 'nope'; known blocks: dense"):
        baseline.cases(["nope"])


# ---- the real measurement path (isaprof.profile on meta) ----


def test_cases_cover_every_block_impl_odd_size_padding_and_recurrence() -> None:
    from isaprof.targets import names, spec

    all_cases = baseline.cases()
    assert {(c.block, c.config.impl) for c in all_cases} == {(b, i) for b in names() for i in spec(b).impls}
    assert any(c.config.height % 2 and c.config.width % 2 for c in all_cases)
    factors = {dict(c.options)["factor"] for c in all_cases if "factor" in dict(c.options)}
    assert any(
        c.config.height % f[0] or c.config.width % f[1] for c in all_cases for f in factors
    )  # ISA pads
    recurrences = {dict(c.options)["recurrence"] for c in all_cases if "recurrence" in dict(c.options)}
    assert recurrences == {1, 2}
    assert len({c.key for c in all_cases}) == len(all_cases)


def _extra_matmul(monkeypatch: pytest.MonkeyPatch, block: str) -> None:
    """Make ``block``'s forward do one extra (B, C, N) x (B, N, C) matmul: + B*C*C*N MACs forward."""
    from isaprof.targets import spec

    cls = spec(block).cls
    forward = cls.forward

    def slower(self: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        out = forward(self, x)  # (B, C, H, W)
        flat = out.flatten(2)  # (B, C, N)
        gram = torch.matmul(flat, flat.transpose(1, 2))  # (B, C, C)
        return out + 0 * gram.sum()  # (B, C, H, W)

    monkeypatch.setattr(cls, "forward", slower)


def test_extra_matmul_in_a_block_fails_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(baseline, "cases", lambda blocks=None: [Case.of("dense", "naive", 6, 10, 16, 2)])
    path = tmp_path / "b.json"
    doc = baseline.update(path)
    old = doc["cases"]["dense/naive B2 C16 6x10"]["metrics"]["macs.inference"]["measured"]
    assert baseline.check(path).ok  # unchanged tree passes against a fresh file
    _extra_matmul(monkeypatch, "dense")
    assert main(["baseline", "check", "--file", str(path), "--jobs", "1"]) == 1
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "macs.inference measured" in ln)
    new = old + 2 * 16 * 16 * 60  # B * C * C * N, N = 6 * 10
    assert line.split()[0] == "dense" and f"{old:,} -> {new:,}" in line
    assert "macs.inference analytic" not in out  # the formula did not change, only the code


def test_committed_baseline_matches_current_code() -> None:
    """One case per block (odd size, batch 2) against reference/baseline.json; CI checks them all."""
    if not baseline.DEFAULT_FILE.is_file():
        pytest.fail(f"{baseline.DEFAULT_FILE} is missing: run `isaprof baseline update`")
    committed = baseline.load(baseline.DEFAULT_FILE)
    first: dict[str, Case] = {}
    for c in baseline.cases():
        if c.config.size == (13, 17):
            first.setdefault(c.block, c)
    diff = baseline.compare(committed, baseline.collect(first.values()))
    assert diff.compared == len(first) and not diff.added and not diff.changes, baseline.format_diff(diff)
