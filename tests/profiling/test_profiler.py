"""isaprof.profile (module isaprof.profiling.profiler) and isaprof.studies.check: the record, its tidy
rows, meta == cpu,
errors, the grid check."""

import dataclasses
import json

import pytest
import torch

from isaprof.config import COLUMNS
from isaprof.profiling.profiler import default_backend, error_rows, is_oom, profile
from isaprof.studies import check as grid_check
from isaprof.targets import configure

SMALL = dict(size=(6, 5), channels=8, batch=2)


@pytest.fixture
def one_thread():
    """Real CPU runs on one thread: with other jobs on 2 cores, OpenMP spin-waits can cost 1000x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_rows_follow_the_schema():
    rec = profile("isa", **SMALL, factor=(4, 2), mode="train")
    rows = rec.rows()
    assert all(list(r) == COLUMNS for r in rows)
    assert (
        COLUMNS
        == (  # docs/ARCHITECTURE.md, "Tidy result rows"
            "block batch channels key_channels value_channels height width padded_height padded_width "
            "factor recurrence options impl backend path dtype device mode layout "
            "metric measured analytic unit spread samples flags status error "
            "torch isaprof device_name threads host machine timestamp"
        ).split()
    )
    assert [r["metric"] for r in rows] == [
        "params",
        "macs",
        "flops",
        "elementwise",
        "peak_bytes",
        "bytes_moved",
    ]
    assert [r["unit"] for r in rows] == ["count", "MAC", "FLOP", "op", "byte", "byte"]
    r = rows[1]
    assert (r["factor"], r["recurrence"], r["device"], r["mode"], r["status"]) == (
        "4x2",
        "",
        "meta",
        "train",
        "ok",
    )
    assert (r["padded_height"], r["padded_width"]) == (8, 6)  # ceil(6/4)*4, ceil(5/2)*2
    assert json.loads(r["options"]) == {"factor": [4, 2], "masked": False}
    assert (
        r["measured"] == rec.macs == rec.flop_count.flops // 2 and rows[2]["measured"] == rec.flop_count.flops
    )
    assert rows[3]["measured"] is None and rows[3]["analytic"] > 0  # element-wise: analytic only


def test_to_json_has_the_keys():
    obj = profile("dense", **SMALL).to_json()
    assert {
        "config",
        "params",
        "macs",
        "flops",
        "peak_bytes",
        "latency_ms",
        "elementwise",
        "environment",
    } <= set(obj)
    assert set(obj["macs"]) == {"measured", "analytic", "by_op", "by_term"}
    assert obj["latency_ms"] is None  # meta: no latency
    assert obj["flops"]["measured"] == 2 * obj["macs"]["measured"]
    assert sum(obj["flops"]["by_op"].values()) == obj["flops"]["measured"]
    json.dumps(obj)  # serialisable


@pytest.mark.parametrize(
    "kw",
    [
        dict(block="dense", mode="train"),
        dict(block="dense", impl="sdpa", mode="train"),
        dict(block="isa", factor=(4, 2), mode="inference"),
    ],
)
def test_meta_equals_cpu(kw, one_thread):
    meta = profile(**SMALL, **kw)
    cpu = profile(**SMALL, **kw, device="cpu", dtype="float32", latency=None)
    assert (meta.peak_bytes, meta.macs, meta.params) == (cpu.peak_bytes, cpu.macs, cpu.params)
    assert meta.config.backend == cpu.config.backend
    assert cpu.latency is None and "latency_ms" not in [r["metric"] for r in cpu.rows()]


def test_cpu_latency_row(one_thread):
    rec = profile("dense", size=(4, 4), channels=4, device="cpu", latency="quick")
    row, same_run = rec.rows()[-2:]
    assert (row["metric"], row["unit"], row["analytic"]) == ("latency_ms", "ms", None)
    # the FLOP rate over the interleaved sgemm's, per round, with its spread and the same samples
    peak = rec.latency.peak_fraction
    assert (same_run["metric"], same_run["unit"]) == ("peak_fraction", "fraction") and peak is not None
    assert same_run["measured"] == peak.median > 0 and same_run["spread"] == peak.iqr >= 0
    assert same_run["samples"] == peak.samples == rec.latency.samples and peak.gemm_gflops > 0
    assert row["measured"] == rec.latency.median_ms and row["spread"] == rec.latency.iqr_ms
    assert row["samples"] == rec.latency.samples >= 7 and row["flags"] == rec.latency.flags()
    assert row["machine"] == rec.environment["machine"] != ""
    doc = rec.to_json()
    assert doc["latency_samples"] == rec.latency.samples and isinstance(doc["latency_samples"], int)
    assert isinstance(doc["latency_contended"], bool) and isinstance(doc["latency_noisy"], bool)
    assert (doc["peak_fraction"], doc["peak_fraction_iqr"]) == (peak.median, peak.iqr)


def test_cuda_without_cuda_is_one_clear_line():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError) as e:
        profile("dense", **SMALL, device="cuda")
    expected = f"CUDA requested but torch reports no CUDA device (torch {torch.__version__}); "
    assert str(e.value) == expected + "use --device meta or cpu"


@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(mode="eval"), "allowed: inference, train"),
        (dict(dtype="int8"), "allowed: float32, float64, float16, bfloat16"),
        (dict(device="tpu"), "allowed: meta, cpu, cuda"),
        (dict(size=(0, 4)), "size must be two positive integers"),
        (dict(impl="flash"), "allowed: naive, sdpa"),
        (dict(backend="flash"), "applies to impl 'sdpa' only"),
        (dict(impl="sdpa", backend="efficient"), "needs cuda"),
        (dict(factor=(2, 2)), "no option(s) factor"),
        (dict(latency="slow"), "allowed: quick, fixed, none"),
    ],
)
def test_bad_input_is_a_value_error(kw, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        profile("dense", **{**SMALL, **kw})


def test_unknown_block_lists_known():
    with pytest.raises(ValueError, match="known blocks: dense, .*isa"):
        profile("nosuch", **SMALL)


def test_backend_resolution():
    def backend(impl: str, given: str | None, device: str, ck: int, cv: int) -> str | None:
        cfg = configure("dense", size=(4, 4), channels=16, key_channels=ck, value_channels=cv,
                          impl=impl, backend=given, device=device)  # fmt: skip
        return default_backend(cfg)

    assert backend("naive", None, "meta", 8, 8) is None
    assert backend("sdpa", None, "meta", 8, 8) == "flash"  # CPU fused kernel when it applies
    assert backend("sdpa", None, "cpu", 8, 4) == "math"  # no fused kernel for Ck != Cv
    assert backend("sdpa", "math", "cpu", 8, 8) == "math"
    rec = profile("dense", **SMALL, impl="sdpa")
    assert rec.config.backend == "flash" and rec.rows()[0]["backend"] == "flash"
    assert any("flash" in op for op in rec.flop_count.by_op)


def test_error_rows_and_oom():
    rows = error_rows(
        configure("dense", size=(6, 5), channels=8, device="cpu"),
        "oom",
        "CUDA out of memory.\nTried to allocate 2 GiB",
    )
    assert all(list(r) == COLUMNS for r in rows)
    assert [r["metric"] for r in rows] == [
        "params",
        "macs",
        "flops",
        "elementwise",
        "peak_bytes",
        "bytes_moved",
        "latency_ms",
    ]
    assert all(r["measured"] is None and r["status"] == "oom" for r in rows)
    assert rows[0]["error"] == "CUDA out of memory. Tried to allocate 2 GiB"
    assert rows[1]["analytic"] == profile("dense", (6, 5), 8).macs_analytic  # formulas still answer
    with pytest.raises(ValueError, match="allowed: oom, error"):
        error_rows(configure("dense", size=(6, 5), channels=8), "failed", "x")
    assert is_oom(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"))
    assert not is_oom(RuntimeError("shape mismatch"))


def test_compare_flags_exact_macs_and_exact_memory():
    rec = profile("dense", **SMALL, mode="train")
    rec = dataclasses.replace(rec, peak_bytes_analytic=rec.peak_bytes, macs_by_term={"all": rec.macs})
    assert grid_check.compare(rec, {"name": "dense"}) == []
    off_by_one = dataclasses.replace(rec, macs_by_term={"all": rec.macs + 1})
    assert [d.metric for d in grid_check.compare(off_by_one, {})] == ["macs"]
    assert grid_check.MEMORY_RTOL == 0.0  # every formula replays its allocations: peak bytes are exact
    one_byte = dataclasses.replace(rec, peak_bytes_analytic=rec.peak_bytes + 1)
    assert [d.metric for d in grid_check.compare(one_byte, {})] == ["peak_bytes"]
    missing = dataclasses.replace(rec, peak_bytes_analytic=None)
    assert "no analytic peak" in grid_check.compare(missing, {})[0].message


def test_check_reports_failures_and_grid_covers_the_cases():
    found = grid_check.check([dict(name="dense", size=(4, 4), channels=8, factor=(2, 2))])
    assert [d.metric for d in found] == ["error"] and "factor" in found[0].message
    grid = grid_check.default_grid(quick=False)
    isa = {c.option("factor") for c in grid if c.block == "isa"}
    assert (3, 2) in isa and (5, 5) in isa  # factors that do not divide the sizes
    assert {c.option("recurrence") for c in grid if c.block == "criss_cross"} >= {1, 2, 3}
    assert {c.mode for c in grid} == {"inference", "train"}
    assert {c.block for c in grid} == set(grid_check.blocks.names())
    assert any(c.height != c.width for c in grid)


@pytest.mark.parametrize("name", ["dense", "isa", "criss_cross"])
def test_fast_path_counts_the_reference_macs_and_is_recorded(name):
    fast = profile(name, **SMALL, path="fast")
    ref = profile(name, **SMALL)
    # same MACs as the reference formula (BN folding and GEMM layouts change no multiply-accumulate)
    assert fast.macs == fast.macs_analytic == ref.macs
    assert fast.params == ref.params  # counted on the reference block: the fast one holds buffers
    assert fast.peak_bytes_analytic is None and any("fast path" in n for n in fast.notes)
    assert {r["path"] for r in fast.rows()} == {"fast"} and {r["path"] for r in ref.rows()} == {"reference"}


def test_fast_path_refuses_train():
    with pytest.raises(ValueError, match="fast path is inference-only"):
        profile("isa", **SMALL, path="fast", mode="train")
    with pytest.raises(ValueError, match="unknown path 'quick'; allowed: reference, fast"):
        profile("isa", **SMALL, path="quick")


@pytest.mark.parametrize("factor", [3, (0, 2), (2, 2, 2)])
def test_bad_block_option_is_the_blocks_own_error(factor):
    # the block's validation runs before any formula: a clear ValueError, not a TypeError from a formula
    with pytest.raises(ValueError, match=r"factor must be two positive integers \(P_h, P_w\)"):
        profile("isa", **SMALL, factor=factor)


@pytest.mark.parametrize("kw", [dict(mode="train"), dict(impl="sdpa"), dict(factor=(2, 2), device="cpu")])
def test_meta_peak_is_profiles_peak_without_the_counting(kw):
    """The memory guard's prediction (peak only) equals the full meta profile's peak, whatever the device."""
    from isaprof.profiling.profiler import meta_peak

    name = "isa" if "factor" in kw else "dense"
    full = profile(name, **{**SMALL, **kw, "device": "meta"})
    assert meta_peak(name, **{**SMALL, **kw}) == full.peak_bytes > 0


def test_memory_notes_say_what_is_not_modelled_once() -> None:
    from isaprof.profiling.profiler import memory_notes

    assert memory_notes({}, False) == []
    notes = memory_notes({"aten.convolution": 12, "aten._efficient_attention_forward": 1}, True)
    assert notes == [
        "oneDNN convolution reorders (CPU) not modelled (peak may be low): aten.convolution x12",
        "memory allocated inside these ops is not modelled (peak may be low): "
        "aten._efficient_attention_forward x1",
        "predicted CUDA peak: cuDNN convolution workspace (CUDA only) not modelled",
    ]


def test_a_conv_block_on_meta_notes_the_cudnn_workspace_once() -> None:
    """ISA's 1x1 convolutions on its regrouped batch go to oneDNN on CPU (listed); the CUDA prediction's
    gap, cuDNN's workspace, is said once."""
    rec = profile("isa", size=(16, 16), channels=16)
    cuda = [n for n in rec.notes if "cuDNN" in n]
    assert cuda == ["predicted CUDA peak: cuDNN convolution workspace (CUDA only) not modelled"]
    assert not any("memory allocated inside these ops" in n for n in rec.notes)
