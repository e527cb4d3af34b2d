"""examples/window_attention: its entry point, its output, and its exact cost through the measure layer."""

import importlib.metadata
import sys
from pathlib import Path

import pytest
import tomllib
import torch
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

from isaprof.measure import count_flops, step, track_peak
from isaprof.measure.modules import breakdown
from tests import REPO

EXAMPLE = REPO / "examples" / "window_attention"


@pytest.fixture
def window_attention(monkeypatch: pytest.MonkeyPatch):
    """The example package importable (its src/ on sys.path), as after ``pip install -e``."""
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    import window_attention

    yield window_attention
    sys.modules.pop("window_attention", None)


def test_entry_point_declared_and_loadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, window_attention):
    """A dist-info made from the example's pyproject.toml shows the entry point, as installing would."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    group = project["entry-points"]["isaprof.blocks"]
    assert group == {"window_attention": "window_attention:WindowAttention"}
    dist = tmp_path / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    (dist / "entry_points.txt").write_text(
        "[isaprof.blocks]\n" + "".join(f"{k} = {v}\n" for k, v in group.items())
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    (ep,) = [
        e for e in importlib.metadata.entry_points(group="isaprof.blocks") if e.name == "window_attention"
    ]
    assert ep.load() is window_attention.WindowAttention
    assert ep.dist.name == project["name"]


def test_one_window_is_dense_multi_head_attention(window_attention) -> None:
    """window = the map and a zero bias: plain multi-head attention over all positions."""
    torch.manual_seed(0)
    b, c, h, w, heads = 2, 8, 3, 3, 2
    m = window_attention.WindowAttention(c, window=3, heads=heads)
    x = torch.randn(b, c, h, w)
    t = x.flatten(2).transpose(1, 2)  # (B, N, C), row-major positions as the window's
    q, k, v = (z.unflatten(-1, (heads, -1)).transpose(1, 2) for z in m.qkv(t).split([c, c, c], dim=-1))
    ref = m.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2))  # (B, N, C)
    torch.testing.assert_close(m(x), ref.transpose(1, 2).reshape(b, c, h, w))


def test_bad_arguments_raise(window_attention) -> None:
    with pytest.raises(ValueError, match="divisible by heads"):
        window_attention.WindowAttention(10, heads=4)
    with pytest.raises(ValueError, match="positive"):
        window_attention.WindowAttention(8, window=0)


@pytest.mark.parametrize(("h", "w"), [(8, 8), (7, 9)])  # 7x9 pads to 8x12
def test_macs_exact_and_nothing_uncounted(window_attention, h: int, w: int) -> None:
    c, ck, cv, win, heads = 16, 8, 12, 4, 2
    hp, wp = -(-h // win) * win, -(-w // win) * win
    n = hp * wp  # padded positions
    # qkv: N C (2 Ck + Cv); scores and aggregation inside each window: N w^2 (Ck + Cv); proj: N Cv C.
    # 8x8: 64 * 16 * 28 + 64 * 16 * 20 + 64 * 12 * 16 = 28672 + 20480 + 12288 = 61440
    macs = n * c * (2 * ck + cv) + n * win * win * (ck + cv) + n * cv * c
    with torch.device("meta"):
        m = window_attention.WindowAttention(c, ck, cv, window=win, heads=heads)
    with FakeTensorMode(allow_non_fake_inputs=True):
        m = m.to_empty(device="cpu")
        x = torch.empty(1, c, h, w)  # (B, C, H, W), fake
        infer = count_flops(step(m, x, "inference"))
        train = count_flops(step(m, x, "train"))
        b = breakdown(m, step(m, x, "train"))
        peak = track_peak(step(m, x, "train")).peak
    assert infer.macs == macs
    assert infer.uncounted == {} and train.uncounted == {}  # the bias-table gather is free, not a silent zero
    assert train.macs == 3 * macs  # every product: forward + both operand gradients
    assert sum(r.self_macs for r in b.rows) == train.macs and sum(r.peak_bytes for r in b.rows) == peak
    rows = {r.module: r.macs for r in b.rows}
    assert rows["qkv"] == 3 * n * c * (2 * ck + cv) and rows["proj"] == 3 * n * cv * c
