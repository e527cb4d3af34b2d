"""measure.latency and measure.env: result fields are sane (never a latency value assertion)."""

import dataclasses

import pytest
import torch

from isaprof.measure import environment, measure_latency
from isaprof.measure.latency import Latency, median_iqr


def test_quick_latency_fields():
    x = torch.randn(16, 16)
    calls = []
    lat = measure_latency(lambda: calls.append(x @ x), protocol="quick")
    assert lat.runs >= 1 and lat.warmup == 2 and len(calls) >= lat.runs + lat.warmup
    assert lat.median_ms > 0 and lat.iqr_ms >= 0
    assert lat.threads == torch.get_num_threads() and lat.device == "cpu" and lat.protocol == "quick"
    assert isinstance(lat.noisy, bool)
    with pytest.raises(dataclasses.FrozenInstanceError):
        lat.median_ms = 0.0


def test_fixed_protocol_runs_exactly():
    calls = []
    lat = measure_latency(lambda: calls.append(1), protocol="fixed")
    assert (lat.warmup, lat.runs, len(calls)) == (10, 100, 110)


def test_median_iqr_and_noisy_flag():
    assert median_iqr([1.0, 2.0, 3.0, 4.0, 5.0]) == (3.0, 2.0)
    assert median_iqr([2.0]) == (2.0, 0.0)
    assert Latency(10.0, 2.0, 5, 1, 1, "cpu", "quick").noisy
    assert not Latency(10.0, 0.5, 5, 1, 1, "cpu", "quick").noisy


def test_bad_protocol():
    with pytest.raises(ValueError, match="allowed: fixed, quick"):
        measure_latency(lambda: None, protocol="slow")


def test_environment_keys():
    env = environment("cpu")
    assert list(env)[:5] == ["torch", "isaprof", "device_name", "threads", "host"]
    assert env["torch"] == torch.__version__ and env["device_name"]
    assert environment("meta")["device_name"] == "meta"
