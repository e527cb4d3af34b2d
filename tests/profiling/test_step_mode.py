"""Mode "step" through the front door: profile's JSON keys, the batch search against per-batch predictions,
the CLI's fit verdict."""

from __future__ import annotations

import json
import os

import pytest
from torch import nn

from isaprof.measure.training import largest_batch
from isaprof.profiling.profiler import profile, step_memory
from tests.measure.test_training import Logits


def test_profile_step_json() -> None:
    rec = profile(
        Logits(), size=(16, 16), channels=3, batch=2, mode="step", latency=None, recipe="mmseg-2020"
    )
    out = rec.to_json()
    m = rec.step_memory
    assert out["peak_bytes_total"] == m.total == m.resident_total + m.tensor_peak
    assert out["peak_bytes_cuda_predicted"] == m.cuda_allocated >= m.total
    assert out["peak_bytes_cuda_reserved_predicted"] >= out["peak_bytes_cuda_predicted"]
    parts = out["peak_bytes_parts"]
    assert parts["settings"]["recipe"] == "mmseg-2020" and parts["resident"]["buckets"] > 0
    assert parts["saved_activations"] + parts["transient"] == rec.peak_bytes
    assert "peak_bytes_total" not in profile(Logits(), size=(16, 16), channels=3, latency=None).to_json()


def test_largest_batch_matches_per_batch_predictions() -> None:
    net = "tests.measure.test_training:Logits"

    def predict(batch: int) -> int:
        return step_memory(net, size=(32, 32), channels=3, batch=batch).total

    preds = {b: predict(b) for b in range(1, 9)}
    assert all(preds[b] < preds[b + 1] for b in range(1, 8))
    for capacity in (preds[1] - 1, (preds[5] + preds[6]) // 2, preds[7]):
        expected = max((b for b, p in preds.items() if p <= capacity), default=0)
        assert largest_batch(predict, capacity) == expected


def test_step_settings_refused_with_one_line() -> None:
    with pytest.raises(ValueError, match="optimizer"):
        profile(nn.Conv2d(3, 3, 1), size=(4, 4), channels=3, mode="step", optimizer="lion", latency=None)


def test_cli_gpu_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    from isaprof.cli import main

    argv = [
        "profile",
        "tests.measure.test_training:Logits",
        "--size",
        "16x16",
        "--channels",
        "3",
        "--mode",
        "step",
    ]
    assert main([*argv, "--gpu", "v100", "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)["gpu"]
    assert verdict["fits"] is True and verdict["largest_batch"] > 1
    assert main([*argv, "--gpu", "v100"]) == 0
    text = capsys.readouterr().out
    assert "fits: yes" in text and "largest batch:" in text


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("ISAPROF_TEST_SLOW"), reason="published sizes: ISAPROF_TEST_SLOW=1")
@pytest.mark.parametrize("size,batch,classes", [((512, 1024), 2, 19), ((512, 512), 4, 150)])
def test_every_network_runs_in_step_mode(size: tuple[int, int], batch: int, classes: int) -> None:
    from isaprof.targets import network_names

    networks = network_names()
    assert len(networks) == 16
    for name in networks:
        m = step_memory(name, size=size, batch=batch, num_classes=classes)
        assert m.cuda_allocated >= m.total > m.resident_total > 0, name


def test_run_settings_pass_through_an_instance_target() -> None:
    rec = profile(
        Logits(), size=(8, 8), channels=3, device="cpu", mode="step", latency=None, optimizer="none"
    )
    assert rec.latency is None and rec.step_memory.resident["optimizer_state"] == 0
