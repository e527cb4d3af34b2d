"""A tiny real sweep, end to end: rows written, a forced failure recorded, a resume that measures nothing,
then the report page from those files with every figure it names written (one size: no scaling figure)."""

from __future__ import annotations

import re
from pathlib import Path

from isaprof.profiling.profiler import profile
from isaprof.report import write_report
from isaprof.studies.sweep import load_configs, read_rows, run_sweep
from tests import REPO

TINY = REPO / "reference" / "sweeps" / "tiny.toml"


class FailOnIsa4x4:
    """The real profile, except that ISA with factor (4, 4) raises: a configuration that fails."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, name, **kwargs):
        self.calls += 1
        if name == "isa" and tuple(kwargs.get("factor", ())) == (4, 4):
            raise RuntimeError("forced failure for the test")
        return profile(name, **kwargs)


def test_tiny_sweep_to_report(tmp_path: Path) -> None:
    cfgs = load_configs(TINY)  # 8 configurations: dense, isa 2x2 / 4x4, criss_cross R=1; inference and train
    first = FailOnIsa4x4()
    summary = run_sweep(cfgs, tmp_path, profile_fn=first, progress=False, peak_n=64)
    assert (summary.measured, summary.failed, first.calls) == (len(cfgs) - 2, 2, len(cfgs))
    rows = read_rows(tmp_path)
    failed = [r for r in rows if r["status"] == "error"]
    assert failed and all("forced failure" in r["error"] and r["factor"] == "4x4" for r in failed)
    ok = [r for r in rows if r["status"] == "ok" and r["metric"] == "macs"]
    assert len(ok) == len(cfgs) - 2 and all(float(r["measured"]) == float(r["analytic"]) for r in ok)

    again = FailOnIsa4x4()  # resume: nothing is measured twice, failures are not retried by default
    assert run_sweep(cfgs, tmp_path, profile_fn=again, progress=False, machine=False).skipped == len(cfgs)
    assert again.calls == 0

    page = write_report(tmp_path, tmp_path / "report")
    text = page.read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert all((page.parent / img).is_file() for img in images), images
    # one size swept: each cost gets a sentence instead of a one-point figure against resolution
    assert not [i for i in images if "inference_naive" in i]
    assert "FLOPs (inference), naive: measured at one size only (9x7, B=1, C=16)" in text
    assert "forced failure" in text  # the failed configuration is listed, not hidden
