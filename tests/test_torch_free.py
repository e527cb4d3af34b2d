"""The torch-free core: the package, its configuration, formulas, report and every ``--help`` work with torch
made unimportable (``sys.modules["torch"] = None``), so they cannot import it by accident."""

from __future__ import annotations

import subprocess
import sys

import pytest

from isaprof.results.store import append
from tests import REPO

ROOT = REPO
BLOCK_TORCH = "import sys; sys.modules['torch'] = None\n"


def run_without_torch(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_the_guard_itself_blocks_torch():
    res = run_without_torch("import torch")
    assert res.returncode != 0 and "ModuleNotFoundError" in res.stderr


@pytest.mark.parametrize(
    "code",
    [
        "import isaprof; assert isaprof.__version__ and isaprof.version()",
        "import isaprof, isaprof.config; c = isaprof.configure('isa', size=(97, 97), channels=512)\n"
        "assert c.option('factor') == (8, 8) and c.key_channels == 256",
        "from isaprof import formulas; from isaprof.targets import configure\n"
        "assert formulas.cost(configure('dense', size=(8, 8), channels=16)).total_macs > 0",
        "import isaprof.report, isaprof.report.page, isaprof.report.plots",
        "from isaprof import targets as blocks\nassert blocks.names()[:3] == ['dense', 'non_local', 'isa']\n"
        "assert blocks.spec('isa').options == {'factor': (8, 8), 'masked': False}\n"
        "assert blocks.spec('criss_cross').options == {'recurrence': 2}",
    ],
)
def test_core_imports_no_torch(code):
    res = run_without_torch(code)
    assert res.returncode == 0, res.stderr


def test_every_help_and_version_runs_without_torch():
    code = (
        "from isaprof.cli import SUBCOMMANDS, main\n"
        "import contextlib, io\n"
        "for argv in [['--help'], ['--version']] + [[c, '--help'] for c in SUBCOMMANDS]:\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit as e:\n"
        "            assert e.code == 0, (argv, e.code)\n"
        "print('ok', len(SUBCOMMANDS))\n"
    )
    res = run_without_torch(code)
    assert res.returncode == 0 and res.stdout.startswith("ok"), res.stderr


def test_report_reads_results_without_torch(tmp_path):
    import isaprof

    data = tmp_path / "data"
    for h in (8, 16):
        for block in ("dense", "isa"):
            rec = isaprof.profile(block, size=(h, h), channels=16, device="meta")
            append(data, rec.rows())
    out = tmp_path / "out"
    res = run_without_torch(
        "from isaprof.cli import main\n"
        f"raise SystemExit(main(['report', {str(data)!r}, '--out', {str(out)!r}]))"
    )
    assert res.returncode == 0, res.stderr
    assert (out / "README.md").is_file() and "dense" in (out / "README.md").read_text()


def test_profile_is_the_function_and_no_module_shadows_it():
    import importlib

    import isaprof

    assert callable(isaprof.profile) and isaprof.profile.__module__ == "isaprof.profiling.profiler"
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("isaprof.profile")
