"""Latency lower bounds of every block: on catalogued GPUs at the papers' sizes, and on this CPU beside
the latencies the sweep measured. A measuring step (it counts on fake tensors; the report only reads
what it writes)::

    isaprof bounds RESULTS_DIR [--gpus v100,a100-80gb,h100-sxm]

``RESULTS_DIR/bounds.csv`` gets one tidy row per (scope, configuration, device, metric):

* ``scope = "papers"``: every built-in block and implementation (``sdpa`` counted as the fused flash
  kernel) at :data:`SIZES` (the papers' feature maps, ``reference/papers.toml``), their C, B = 1, inference,
  in :data:`DTYPES` on each GPU of :data:`GPUS`; metrics ``bound_ms``, ``compute_ms``, ``memory_ms`` (ms),
  ``flops`` (FLOP), ``bytes_moved`` (byte). A GPU without a peak for the dtype (V100: no BF16) gets one
  ``skipped`` row saying so.
* ``scope = "cpu"``: each configuration with a ``latency_ms`` row on ``cpu`` in ``results.csv``, its
  bound on this CPU's measured roofs (``machine.json``'s ``cpu`` roofs when the sweep recorded both,
  else the host cache of ``isaprof machine``) and the measured median latency as metric ``latency_ms``
  (``spread``: its IQR).

Each row carries the roofs it used (``peak_used``, ``matrix_tflops``, ``conv_tflops``, ``bandwidth_gbs``,
``roofs_from``). Every bound is a bound, not a measurement (:mod:`isaprof.roofline.bound`).

``RESULTS_DIR/gpu_latency.csv`` (when ``v100`` is among the GPUs: the published times are V100's) holds the
networks' bound on the V100 beside their published inference times (the ``[[latency]]`` entries of
``reference/published.toml``), each on mmseg's test path (the whole 1024x2048 image, or every window in
slide mode): one row per (entry, op class) with the class's bound and the rule that holds it, and one
``class = "total"`` row per entry with ``bound_ms``, ``l2_bound_ms`` and ``ratio`` = published / bound. A
published time is a test of the bound, never a target: nothing is fitted to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from isaprof import papers
from isaprof.config import CONFIG_COLUMNS, REFERENCE, Config
from isaprof.results.reader import read_table
from isaprof.results.store import write_table
from isaprof.roofline import schema
from isaprof.roofline.bound import Counted, count, cpu_roofs, gpu_roofs
from isaprof.roofline.schema import Roofs

BOUNDS = "bounds.csv"
GPUS = ("v100", "a100-80gb", "h100-sxm")
SIZES = papers.SIZES  # the papers' feature maps (reference/papers.toml)
CHANNELS = papers.CHANNELS
DTYPES = ("float32", "bfloat16")
ROOF_COLUMNS = ["peak_used", "matrix_tflops", "conv_tflops", "bandwidth_gbs", "roofs_from"]
COLUMNS = ["scope", *[c for c in CONFIG_COLUMNS if c != "device"], "device", *ROOF_COLUMNS]
COLUMNS += ["metric", "value", "unit", "spread", "status", "error", "measured_on"]
METRICS = (("bound_ms", "ms"), ("compute_ms", "ms"), ("memory_ms", "ms"))
METRICS += (("flops", "FLOP"), ("bytes_moved", "byte"))
LATENCY = "gpu_latency.csv"
PUBLISHED = REFERENCE / "published.toml"
LATENCY_GPU = "v100"  # the device of the published times
LATENCY_COLUMNS = ["network", "config", "test_mode", "height", "width", "device", "published_ms", "class",
                   "bound_ms", "compute_ms", "memory_ms", "l2_bound_ms", "ratio", "flops", "effective_flops",
                   "calls", "assumption", "source", "metafile", "commit", "status", "error"]  # fmt: skip


def published_latency(path: str | Path = PUBLISHED) -> list[dict[str, Any]]:
    """The ``[[latency]]`` entries of a published-figures TOML (``ValueError`` naming a bad entry)."""
    import tomllib

    with open(path, "rb") as f:
        entries = tomllib.load(f).get("latency", [])
    need = ("network", "config", "metafile", "commit", "value", "unit", "size", "test_mode")
    for i, e in enumerate(entries):
        missing = [k for k in need if k not in e]
        if missing or e.get("unit") != "ms":
            raise ValueError(f"{path}: [[latency]] #{i + 1}: missing {missing} or unit is not ms")
    return entries


def latency_rows(
    entries: Iterable[Mapping[str, Any]] | None = None, gpu: str = LATENCY_GPU
) -> list[dict[str, Any]]:
    """Each published network time beside the network's bound on ``gpu`` (inference, float32, batch 1, its
    test path): the rows of ``gpu_latency.csv`` (see the module docstring)."""
    entries = published_latency() if entries is None else list(entries)
    roofs = gpu_roofs(gpu, "float32")
    out: list[dict[str, Any]] = []
    for e in entries:
        h, w = (int(v) for v in e["size"])
        base = {"network": e["network"], "config": e["config"], "test_mode": e["test_mode"], "height": h,
                "width": w, "device": roofs.device, "published_ms": float(e["value"]),
                "metafile": e["metafile"], "commit": e["commit"], "status": "ok", "error": ""}  # fmt: skip
        options: dict[str, Any] = {"test_mode": e["test_mode"]}
        if e["test_mode"] == "slide":
            options.update(crop=tuple(e["crop"]), stride=tuple(e["stride"]))
        try:
            pred = count(e["network"], size=(h, w), mode="inference", dtype="float32", **options).predict(
                roofs
            )
        except Exception as err:  # noqa: BLE001 - one network's failure is its row
            why = f"{type(err).__name__}: {' '.join(str(err).split())}"[:300]
            out.append({**base, "class": "total", "status": "error", "error": why})
            continue
        total = {k: pred[k] for k in ("bound_ms", "compute_ms", "memory_ms", "l2_bound_ms", "flops")}
        total.update(effective_flops=pred["effective_flops"], ratio=float(e["value"]) / pred["bound_ms"])
        out.append({**base, "class": "total", **total})
        for cls, v in pred["by_class"].items():
            keep = ("bound_ms", "compute_ms", "memory_ms", "flops", "effective_flops", "calls", "assumption",
                    "source")  # fmt: skip
            out.append({**base, "class": cls, **{k: v[k] for k in keep}})
    return out


def _rows(scope: str, counted: Counted, roofs: Roofs, roofs_from: str) -> list[dict[str, Any]]:
    """The metric rows of one configuration's bound on ``roofs``."""
    pred = counted.predict(roofs)
    base = {"scope": scope, **{c: counted.config.get(c, "") for c in CONFIG_COLUMNS}, **roofs.columns()}
    base.update(device=roofs.device, roofs_from=roofs_from, spread="", status="ok", error="")
    return [{**base, "metric": m, "value": pred[m], "unit": u} for m, u in METRICS]


def papers_rows(gpus: Iterable[str] = GPUS) -> list[dict[str, Any]]:
    """Bounds of every built-in block and impl at :data:`SIZES` and :data:`DTYPES` on each GPU."""
    from isaprof import targets as blocks
    from isaprof.roofline import devices

    gpus = [devices.get(g).key for g in gpus]  # an unknown name: ValueError before any counting
    out: list[dict[str, Any]] = []
    for name in blocks.names():
        for impl in blocks.spec(name).impls:
            backend = "flash" if impl == "sdpa" else None
            for size in SIZES:
                for dtype in DTYPES:
                    config = dict(size=size, channels=CHANNELS, dtype=dtype, impl=impl, backend=backend)
                    counted = count(name, mode="inference", **config)
                    for gpu in gpus:
                        try:
                            roofs = gpu_roofs(gpu, dtype)
                        except ValueError as e:  # no peak for this dtype (V100: no BF16)
                            row = {c: counted.config.get(c, "") for c in CONFIG_COLUMNS}
                            out.append({"scope": "papers", **row, "device": gpu, "metric": "bound_ms",
                                        "unit": "ms", "status": "skipped", "error": str(e)})  # fmt: skip
                            continue
                        out += _rows("papers", counted, roofs, "reference/devices.toml")
    return out


def _machine_cpu(results_dir: Path) -> tuple[dict[str, Any] | None, str]:
    """This machine's cpu roofs from ``machine.json`` (its entry for this machine id: bounds beside the
    latencies measured here; a file written before machine ids: its cpu entry), else the machine's cache
    of ``isaprof machine``."""
    from isaprof.measure.env import machine_id

    data = schema.read_machine(results_dir / schema.MACHINE)
    keyed = any(m.get("machine") for m in data["machines"] if isinstance(m, dict))
    cpu = schema.machine_entry(data, "cpu", machine_id("cpu")) if keyed else schema.device_roofs(data, "cpu")
    if cpu is not None:
        return cpu, f"machine.json (recorded by the sweep; {cpu.get('device_name') or 'unnamed CPU'})"
    from isaprof.roofline.roofs import machine_roofs

    cpu = machine_roofs().get("cpu", {})
    name = cpu.get("device_name") or "unnamed CPU"
    return cpu, f"host cache of isaprof machine ({name}, {cpu.get('measured_at')})"


def _config_of(row: Mapping[str, str]) -> dict[str, Any]:
    """``isaprof.profile`` keyword arguments of a results row (its block and device left out)."""
    kwargs = Config.from_row(row).kwargs()
    del kwargs["block"], kwargs["device"]
    return kwargs


def cpu_rows(results_dir: Path, machine: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """This CPU's bound beside each measured ``latency_ms`` row (device cpu, status ok) of the results: the
    store's winning attempt of each configuration, measured on this machine (its id; where no row carries
    it, the rows written before machine ids were recorded).
    ``machine``: the roofs to use (``{"matmul_gflops", "bandwidth_gbs"}``); default as the module says."""
    from isaprof.measure.env import machine_id

    rows = [
        r
        for r in read_table(results_dir).latest()
        if r["metric"] == "latency_ms" and r["device"] == "cpu" and r["status"] == "ok"
    ]
    here = [r for r in rows if r.get("machine") == machine_id("cpu")]
    rows = here or [r for r in rows if not r.get("machine")]  # this machine's, else rows without an id
    if not rows:
        return []
    where = "given"
    if machine is None:
        machine, where = _machine_cpu(results_dir)
    out: list[dict[str, Any]] = []
    roofs = None
    for r in rows:
        if roofs is None:
            roofs = cpu_roofs(r["dtype"], machine) if r["dtype"] == "float32" else None
        config = {c: r.get(c, "") for c in CONFIG_COLUMNS if c != "device"}
        try:
            if r["dtype"] != "float32" or roofs is None:
                raise ValueError(f"this CPU has a measured float32 matmul peak only, not {r['dtype']}")
            got = _rows("cpu", count(r["block"], **_config_of(r)), roofs, where)
        except Exception as e:  # noqa: BLE001 - one configuration's failure is its row
            why = f"{type(e).__name__}: {' '.join(str(e).split())}"[:300]
            got = [{"scope": "cpu", **config, "device": "cpu (measured)", "metric": "bound_ms", "unit": "ms",
                    "status": "error", "error": why}]  # fmt: skip
        measured = {**got[0], "metric": "latency_ms", "value": r["measured"], "unit": "ms"}
        measured.update(
            spread=r.get("spread", ""), status="ok", error="", measured_on=r.get("device_name", "")
        )
        out += [*got, measured]
    return out


def measure_bounds(
    results_dir: str | Path, gpus: Iterable[str] = GPUS, machine: Mapping[str, Any] | None = None
) -> Path:
    """Write ``results_dir/bounds.csv`` (and ``gpu_latency.csv`` when :data:`LATENCY_GPU` is among
    ``gpus``; see the module docstring); return the path of ``bounds.csv``."""
    results_dir = Path(results_dir)
    gpus = list(gpus)
    rows = papers_rows(gpus)
    if (results_dir / "results.csv").is_file():
        rows += cpu_rows(results_dir, machine)
    path = results_dir / BOUNDS
    write_table(path, COLUMNS, rows)
    if LATENCY_GPU in {g.strip().lower() for g in gpus}:
        write_table(results_dir / LATENCY, LATENCY_COLUMNS, latency_rows())
    return path
