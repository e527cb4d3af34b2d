"""The real-GPU check in one command: ``make gpu-check``.

    make gpu-check PYTHON=python3
    PYTHONPATH=. python3 -m isaprof gpu-check --out reports/data/cuda   # the same

1. the ``gpu``-marked tests (if pytest is importable);
2. a small CUDA sweep (``reference/sweeps/cuda.toml``: dense, isa, criss_cross, non_local at 64x64 and
   128x128, fp32 and bf16, inference and train) into OUT, naming the device (``OUT/device.json``);
3. for each measured configuration, the predictions of the meta path beside the measurement: one
   :func:`isaprof.roofline.bound.count` (``isaprof.profile`` on meta) gives both the CUDA allocator's
   predicted peak (``max_memory_allocated`` delta against ``peak_bytes.cuda_predicted``, goal: within
   2%) and the latency lower bound on this GPU's catalogued roofs (``bound_ms``, as ``isaprof predict``
   prints it: the median latency must not be below it). Written to ``OUT/comparison.csv`` and
   ``OUT/comparison.json``.
4. training steps of whole networks (:data:`STEP_ROWS`, mode "step" with today's settings): the device's
   ``max_memory_allocated`` during a steady-state step (above what the process held before, cache emptied)
   beside the meta prediction (``step_memory(...).cuda_allocated``, no cuBLAS workspace: the sweep made
   it already). Written to ``OUT/steps.csv``.

Runs with the GPU machine's own Python as it is: the standard library, torch and this working tree
(``PYTHONPATH=.``); pytest for step 1 only; tqdm, fvcore, pandas, submitit and tomllib are not needed.
Without CUDA, steps 2 and 3 are skipped with one line, nothing is written, and the exit status is the
tests' (0: they skip). Exit 1 if a gpu test fails; the comparison's misses are findings, printed, not errors.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from isaprof.config import KEY_COLUMNS, REFERENCE, Config, select
from isaprof.results.store import write_table

ROOT = REFERENCE.parent
SPEC = REFERENCE / "sweeps" / "cuda.toml"
PEAK_GOAL = 0.02  # |cuda_predicted / measured - 1| the allocator model aims for
# reference/sweeps/cuda.toml's grid, for Pythons without tomllib / tomli
# (tests/studies/test_gpu_check.py: equal)
GRID = {
    "name": "cuda-check",
    "blocks": ["dense", "isa", "criss_cross", "non_local"],
    "sizes": ["64x64", "128x128"],
    "channels": [512],
    "impls": "all",
    "devices": ["cuda"],
    "skip_if_unavailable": True,
    "dtypes": ["float32", "bfloat16"],
    "modes": ["inference", "train"],
    "latency": "quick",
}
# A comparison row's configuration: its columns but those the grid holds fixed (one batch, width, path and
# device) and the options' JSON (shown as ISA's factor and CCNet's R); a field added to the schema joins it.
CONFIGURATION = select(
    Config.column_names(padded=False),
    "batch", "channels", "key_channels", "value_channels", "options", "path", "device",
    first=("block", "impl", "backend", "factor", "recurrence"),
)  # fmt: skip
COLUMNS = CONFIGURATION + [
    "peak_measured", "peak_cuda_predicted", "peak_error", "peak_within_goal", "latency_ms", "latency_iqr_ms",
    "bound_ms", "bound_peak_used", "latency_over_bound", "bound_holds", "error",
]  # fmt: skip

# catalogue keys (reference/devices.toml) by what torch.cuda.get_device_name() contains, most specific first
_NAMES = (
    ("h200", "h200"),
    ("h100 pcie", "h100-pcie"),
    ("h100", "h100-sxm"),
    ("a100-sxm4-80gb", "a100-80gb"),
    ("a100 80gb", "a100-80gb"),
    ("a100-pcie-80gb", "a100-80gb"),
    ("a100", "a100-40gb"),
    ("v100", "v100"),
    ("l4", "l4"),
    ("4090", "rtx4090"),
)


def catalogue_key(device_name: str) -> str | None:
    """The ``reference/devices.toml`` key of a CUDA device name (``"NVIDIA H200"`` -> ``"h200"``), or None."""
    name = device_name.lower().replace("nvidia", "").strip()
    words = name.replace("-", " ").split()
    for part, key in _NAMES:
        if part == "l4":
            if "l4" in words:
                return key
        elif part in name or part in " ".join(words):
            return key
    return None


def profile_kwargs(row: Mapping[str, str]) -> dict[str, Any]:
    """The ``isaprof.profile`` keyword arguments of a tidy results row (:meth:`Config.from_row`), its block
    and device left out."""
    kwargs = Config.from_row(row).kwargs()
    del kwargs["block"], kwargs["device"]
    return kwargs


def predict_row(row: Mapping[str, str], gpu: str | None, tf32: bool) -> dict[str, Any]:
    """Predictions for one configuration, counted once on meta (:func:`isaprof.roofline.bound.count`):
    ``cuda_predicted`` (bytes), ``bound_ms`` and ``bound_peak_used`` on ``gpu``'s catalogued roofs (TF32
    for float32 with ``tf32``), ``error`` (what could not be predicted, else empty). A CUDA-only sdpa
    kernel cannot run on meta: its peak is not predicted and its bound is that of the meta default kernel.
    """
    from isaprof.roofline.bound import count, roofs_for

    config = profile_kwargs(row)
    out: dict[str, Any] = {"cuda_predicted": None, "bound_ms": None, "bound_peak_used": "", "error": ""}
    errors = []
    counted = None
    try:
        counted = count(row["block"], **config)
        out["cuda_predicted"] = counted.peak_bytes_cuda
        if out["cuda_predicted"] is None:
            errors.append("profile: no peak_bytes.cuda_predicted")
    except Exception as e:  # noqa: BLE001 - what stopped one configuration is its finding
        errors.append(f"profile: {_one_line(e)}")
        if config["backend"] is not None:
            with contextlib.suppress(Exception):
                counted = count(row["block"], **{**config, "backend": None})
    if gpu is None:
        errors.append("this GPU is not in reference/devices.toml: no bound")
    elif counted is not None:
        try:
            pred = counted.predict(roofs_for(gpu, row["dtype"], tf32 and row["dtype"] == "float32"))
            out["bound_ms"], out["bound_peak_used"] = pred["bound_ms"], pred.get("peak_used", "")
        except Exception as e:  # noqa: BLE001 - no peak for the dtype, no catalogue reader (tomllib), ...
            errors.append(f"predict: {_one_line(e)}")
    out["error"] = "; ".join(errors)
    return out


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())}"[:300]


def _num(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if x == x else None


def compare(rows: list[dict[str, str]], predict: Callable[[dict[str, str]], dict[str, Any]]) -> list[dict]:
    """One comparison row per measured cuda configuration of the tidy ``rows`` (see :data:`COLUMNS`).

    ``peak_error = cuda_predicted / measured - 1``; ``bound_holds``: latency median + IQR >= bound (a
    bound above a measurement beyond its spread is a bug in the counter, the roofs or the catalogue).
    """
    configs: dict[tuple, dict[str, dict[str, str]]] = {}
    for r in rows:
        if r.get("device") != "cuda" or r.get("status") != "ok":
            continue
        key = tuple(r.get(c, "") for c in KEY_COLUMNS)  # one configuration
        configs.setdefault(key, {})[r["metric"]] = r
    out = []
    for metrics in configs.values():
        first = next(iter(metrics.values()))
        pred = predict(first)
        meas = _num(metrics.get("peak_bytes", {}).get("measured"))
        lat = _num(metrics.get("latency_ms", {}).get("measured"))
        iqr = _num(metrics.get("latency_ms", {}).get("spread")) or 0.0
        cp, bound = _num(pred.get("cuda_predicted")), _num(pred.get("bound_ms"))
        err = cp / meas - 1 if cp is not None and meas else None
        row = {c: first.get(c, "") for c in CONFIGURATION}
        row.update(
            peak_measured=meas,
            peak_cuda_predicted=cp,
            peak_error=err,
            peak_within_goal=None if err is None else abs(err) <= PEAK_GOAL,
            latency_ms=lat,
            latency_iqr_ms=iqr,
            bound_ms=bound,
            bound_peak_used=pred.get("bound_peak_used", ""),
            latency_over_bound=lat / bound if lat and bound else None,
            bound_holds=None if lat is None or bound is None else lat + iqr >= bound,
            error=pred.get("error", ""),
        )
        out.append(row)
    return out


# networks whose training step is measured on the GPU beside its prediction: (target, size, batch)
STEP_ROWS = (("isanet_r50_d8", (512, 512), 2), ("nonlocal_r50_d8", (512, 512), 2))
STEP_COLUMNS = "target height width batch measured predicted error tensors reserved_predicted note".split()


def step_rows(rows: tuple[tuple[str, tuple[int, int], int], ...] = STEP_ROWS) -> list[dict[str, Any]]:
    """Each network's training step on cuda (``isaprof.profile(..., mode="step")``) beside its meta
    prediction: ``measured`` = max_memory_allocated during the third step minus what was allocated before
    the build, ``error`` = predicted / measured - 1; a failure is the row's ``note``."""
    import dataclasses

    import torch

    from isaprof.measure.training import resolve
    from isaprof.profiling.profiler import profile, step_memory

    out = []
    for target, size, batch in rows:
        row: dict[str, Any] = dict(target=target, height=size[0], width=size[1], batch=batch, note="")
        try:
            options = dataclasses.replace(resolve(), cublas_workspace=0)
            pred = step_memory(target, size=size, batch=batch, options=options)
            row.update(
                predicted=pred.cuda_allocated, tensors=pred.total, reserved_predicted=pred.cuda_reserved
            )
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated()
            rec = profile(target, size=size, batch=batch, mode="step", device="cuda", latency=None)
            row["measured"] = rec.step_memory.cuda_allocated - base
            row["error"] = row["predicted"] / row["measured"] - 1
        except Exception as e:  # noqa: BLE001 - what stopped one network is its finding
            row["note"] = _one_line(e)
        out.append(row)
        print(f"  step {target} {size[0]}x{size[1]} B={batch}: {row}", flush=True)
    return out


def run_tests(out: Path | None) -> int:
    """The ``gpu``-marked tests in a pytest subprocess (0 if pytest is missing, said so); its exit status."""
    try:
        import pytest  # noqa: F401
    except ModuleNotFoundError:
        print("gpu-check: pytest is not installed here: the gpu-marked tests are skipped")
        return 0
    files = sorted(str(p) for p in (ROOT / "tests").rglob("test_*.py") if "mark.gpu" in p.read_text())
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", *files]
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    try:
        res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        text, code = res.stdout + res.stderr, res.returncode
    except subprocess.TimeoutExpired as e:
        text, code = f"{e.stdout or ''}\ntimed out after 120 s", 1
    tail = "\n".join(text.strip().splitlines()[-15:])
    print(f"gpu-check: gpu-marked tests ({len(files)} files): exit {code}\n{tail}")
    if out is not None:
        (out / "gpu_tests.txt").write_text(text)
    return 0 if code in (0, 5) else 1  # 5: nothing collected


def sweep(out: Path, budget_s: float) -> tuple[int, int]:
    """The CUDA sweep into ``out``, one configuration at a time until ``budget_s`` is spent (a re-run
    resumes); (configurations done, configurations left)."""
    from isaprof.studies.sweep import expand, load_configs, run_sweep

    try:
        configs = load_configs(SPEC)
    except ModuleNotFoundError:  # no tomllib (Python 3.10) and no tomli
        configs = expand([GRID])
    t0, done = time.perf_counter(), 0
    for i, cfg in enumerate(configs):
        if time.perf_counter() - t0 > budget_s:
            print(
                f"gpu-check: sweep budget of {budget_s:.0f} s spent; {len(configs) - i} configurations left"
            )
            return done, len(configs) - i
        s = run_sweep([cfg], out, progress=False, machine=i == 0)
        done += 1
        print(
            f"  {cfg.label()}: {'failed' if s.failed else 'ok'} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    return done, 0


def check(out: Path, gpu: str | None = None, tests: bool = True, budget_s: float = 240.0) -> int:
    """The whole check (module docstring) into ``out``; ``gpu``: this GPU's ``reference/devices.toml`` key
    (default: from its name). Returns the exit status: 1 if a gpu-marked test failed, else 0."""
    t0 = time.perf_counter()
    import torch

    cuda = torch.cuda.is_available()
    print(f"gpu-check: torch {torch.__version__}, python {sys.version.split()[0]}, CUDA available: {cuda}")
    if cuda:
        out.mkdir(parents=True, exist_ok=True)
    status = run_tests(out if cuda else None) if tests else 0
    if not cuda:
        print(
            "gpu-check: no CUDA device here: the CUDA sweep and the comparison are skipped, nothing written"
        )
        return status
    name = torch.cuda.get_device_name()
    gpu = gpu or catalogue_key(name)
    tf32 = bool(torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32)
    device = {
        "device_name": name,
        "catalogue_key": gpu,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "host": socket.gethostname(),
        "tf32_allowed": tf32,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    print(f"gpu-check: {name} (catalogue: {gpu or 'not catalogued'}); sweep into {out}")
    done, left = sweep(out, budget_s)
    from isaprof.studies.sweep import read_rows

    rows = compare(read_rows(out), lambda r: predict_row(r, gpu, tf32))
    device.update(configurations=done, left=left, seconds=round(time.perf_counter() - t0, 1))
    write(out, device, rows)
    print(summary(rows, out, time.perf_counter() - t0))
    write_steps(out, step_rows())
    return status


def write_steps(out: Path, rows: list[dict[str, Any]]) -> Path:
    """``out/steps.csv`` (:data:`STEP_COLUMNS`)."""
    return write_table(out / "steps.csv", STEP_COLUMNS, rows, extra="ignore")


def write(out: Path, device: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """``out/device.json``, ``out/comparison.csv`` (:data:`COLUMNS`) and ``out/comparison.json``."""
    (out / "device.json").write_text(json.dumps(device, indent=1) + "\n")
    write_table(out / "comparison.csv", COLUMNS, rows)
    (out / "comparison.json").write_text(json.dumps({"device": device, "rows": rows}, indent=1) + "\n")


def summary(rows: list[dict[str, Any]], out: Path, seconds: float) -> str:
    """How many configurations met the peak goal and the bound, then one line per one that did not."""
    within = [r for r in rows if r["peak_within_goal"]]
    holds = [r for r in rows if r["bound_holds"]]
    lines = [
        f"gpu-check: {len(rows)} configurations compared: peak within {PEAK_GOAL:.0%} of cuda_predicted "
        f"in {len(within)}, latency >= bound in {len(holds)}; wrote {out}/comparison.csv ({seconds:.0f} s)"
    ]
    for r in rows:
        if r["peak_within_goal"] is False or r["bound_holds"] is False or r["error"]:
            what = f"{r['block']} [{r['impl']}] {r['height']}x{r['width']} {r['dtype']} {r['mode']}"
            ratio = r["latency_over_bound"]
            lines.append(f"  {what}: peak error {r['peak_error']}, latency/bound {ratio} {r['error']}")
    return "\n".join(lines)
