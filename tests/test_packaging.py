"""Packaging: tomli declared where tomllib is missing and the fallback works; no registry host
named in the Makefile; README says build() returns a module in train mode."""

from __future__ import annotations

import re
import sys

import tomllib

from isaprof.cli import main
from tests import REPO

ROOT = REPO
TINY = str(ROOT / "reference" / "sweeps" / "tiny.toml")


def test_tomli_declared_for_python_before_3_11():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    [tomli] = [d for d in deps if d.startswith("tomli")]
    assert "python_version < '3.11'" in tomli


def test_sweep_spec_read_with_tomli_when_tomllib_is_missing(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tomllib", None)  # as on Python 3.10: `import tomllib` fails
    monkeypatch.setitem(sys.modules, "tomli", tomllib)  # the backport has the same API
    assert main(["sweep", TINY, "--out", "unused", "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "8 configurations"
    monkeypatch.setitem(sys.modules, "tomli", None)  # neither: one line, not a trace
    assert main(["sweep", TINY, "--out", "unused", "--dry-run"]) == 2
    assert "needs tomli: pip install tomli" in capsys.readouterr().err


def test_no_package_registry_host_is_named():
    """Indexes are the user's to name (TORCH_CPU_INDEX, TORCH_INSTALL); the repository names none."""
    for name in ("Makefile", "README.md", "pyproject.toml", ".ci/run"):
        text = (ROOT / name).read_text()
        hosts = set(re.findall(r"https?://([^/\s'\")>]+)", text))
        named = {h for h in hosts if any(s in h for s in ("pytorch.org", "pypi", "pythonhosted"))}
        assert not named, (name, hosts)


def test_readme_build_example_shows_eval():
    text = (ROOT / "README.md").read_text()
    at = text.index('block = isaprof.build("isa"')
    assert ".eval()" in text[at : at + 400]


def test_environment_names_isaprof_version_and_commit():
    import subprocess

    import isaprof
    from isaprof.measure.env import environment

    env = environment("meta")
    # the `isaprof` column: the version (defined once, pyproject reads it) plus +g<commit> in a checkout
    assert env["isaprof"].startswith(isaprof.__version__ + "+g")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert head.stdout.strip().startswith(env["isaprof"].split("+g")[1].split(".")[0])
