"""The segmentation networks (isaprof.targets.networks): parameter counts equal to mmsegmentation's models,
derived term by term from its code; training and test outputs at small sizes; the catalogue entries."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

import isaprof
from isaprof.targets import NETWORKS, network_names, registry
from isaprof.targets.networks.segmentor import from_mmseg_state_dict
from tests import REPO

K = 19  # num_classes (Cityscapes), every configuration


# -- the arithmetic, from mmseg's code (configs/_base_/models/*_r50-d8.py and the heads they name) ---------
def bn(c: int) -> int:
    return 2 * c  # BatchNorm weight + bias (running stats are buffers)


def conv_module(k: int, c_in: int, c_out: int) -> int:
    return k * k * c_in * c_out + bn(c_out)  # mmcv ConvModule with a norm: conv without bias, BN


def conv(c_in: int, c_out: int) -> int:
    return c_in * c_out + c_out  # plain 1x1 conv with bias


def bottleneck(c_in: int, planes: int, shortcut: bool) -> int:
    body = (
        c_in * planes + bn(planes) + 9 * planes * planes + bn(planes) + planes * 4 * planes + bn(4 * planes)
    )
    return body + (c_in * 4 * planes + bn(4 * planes) if shortcut else 0)


def resnet_v1c(depth: int) -> int:
    """Deep stem 3 -> 32 -> 32 -> 64 (3x3 convs + BN), four stages of bottlenecks (planes 64, 128, 256,
    512), the first of each with a 1x1 shortcut. Cross-check: torchvision's ResNet-50 has 25,557,032
    parameters, of which fc 2048*1000 + 1000 and the 7x7 stem 7*7*3*64 + 2*64: 25,557,032 - 2,049,000 -
    9,536 + 28,768 (deep stem) = 23,527,264 = resnet_v1c(50)."""
    stem = conv_module(3, 3, 32) + conv_module(3, 32, 32) + conv_module(3, 32, 64)
    blocks = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}[depth]
    total, c_in = stem, 64
    for i, n in enumerate(blocks):
        planes = 64 * 2**i
        total += bottleneck(c_in, planes, True) + (n - 1) * bottleneck(4 * planes, planes, False)
        c_in = 4 * planes
    return total


CLS = conv(512, K)  # conv_seg of a 512-wide decode head
AUX = conv_module(3, 1024, 256) + conv(256, K)  # auxiliary FCNHead: one conv, no concat
FCN_BODY = (
    conv_module(3, 2048, 512) + conv_module(3, 512, 512) + conv_module(3, 2048 + 512, 512)
)  # + conv_cat


def self_attention_isa() -> int:
    """mmseg ISAHead's SelfAttentionBlock: key and query two ConvModules each (512 -> 256 -> 256), value a
    biased 1x1 512 -> 512, output_project ConvModule 512 -> 512."""
    return (
        2 * (conv_module(1, 512, 256) + conv_module(1, 256, 256)) + conv(512, 512) + conv_module(1, 512, 512)
    )


HEADS = {  # decode head(s) + auxiliary head, num_classes = 19
    "fcn": FCN_BODY + CLS + AUX,
    "pspnet": 4 * conv_module(1, 2048, 512) + conv_module(3, 2048 + 4 * 512, 512) + CLS + AUX,
    "deeplabv3": 2 * conv_module(1, 2048, 512)
    + 3 * conv_module(3, 2048, 512)
    + conv_module(3, 5 * 512, 512)
    + CLS
    + AUX,  # image pool + dilation-1 1x1 + three 3x3 + bottleneck
    # NonLocal2d(512, reduction 2): g, theta, phi biased 1x1 512 -> 256; conv_out 256 -> 512 + BN
    "nonlocal": FCN_BODY + 3 * conv(512, 256) + 256 * 512 + bn(512) + CLS + AUX,
    # PAM and CAM branches (in_conv, out_conv, own classifier each) + the sum's classifier; PAM: query/key
    # biased 512 -> 64, value 512 -> 512, gamma; CAM: gamma
    "danet": 2 * (conv_module(3, 2048, 512) + conv_module(3, 512, 512) + CLS)
    + CLS
    + 2 * conv(512, 64)
    + conv(512, 512)
    + 1
    + 1
    + AUX,
    # CrissCrossAttention(512): query/key 512 -> 64, value 512 -> 512, all biased, gamma
    "ccnet": FCN_BODY + 2 * conv(512, 64) + conv(512, 512) + 1 + CLS + AUX,
    "isanet": conv_module(3, 2048, 512) + 2 * self_attention_isa() + conv_module(1, 1024, 512) + CLS + AUX,
    # cascade: FCN stage (= the auxiliary FCN's shape, loss 0.4), then OCRHead: bottleneck 3x3 2048 -> 512,
    # object attention (key/query 2 ConvModules 512 -> 256 -> 256, value 512 -> 256, out 256 -> 512,
    # bottleneck 1x1 1024 -> 512), classifier; no auxiliary head
    "ocrnet": AUX
    + conv_module(3, 2048, 512)
    + 2 * (conv_module(1, 512, 256) + conv_module(1, 256, 256))
    + conv_module(1, 512, 256)
    + conv_module(1, 256, 512)
    + conv_module(1, 1024, 512)
    + CLS,
}

# The counts (as the README states them); the arithmetic above must give them too.
PARAMS = {
    "fcn_r50_d8": 49_497_734, "fcn_r101_d8": 68_489_862,
    "pspnet_r50_d8": 48_975_494, "pspnet_r101_d8": 67_967_622,
    "deeplabv3_r50_d8": 68_113_030, "deeplabv3_r101_d8": 87_105_158,
    "nonlocal_r50_d8": 50_023_814, "nonlocal_r101_d8": 69_015_942,
    "danet_r50_d8": 49_846_574, "danet_r101_d8": 68_838_702,
    "ccnet_r50_d8": 49_826_055, "ccnet_r101_d8": 68_818_183,
    "isanet_r50_d8": 37_707_398, "isanet_r101_d8": 56_699_526,
    "ocrnet_r50_d8": 36_524_166, "ocrnet_r101_d8": 55_516_294,
}  # fmt: skip


def params_of(name: str, **options) -> int:
    with torch.device("meta"):
        model = registry.build(name, None, **options)
    return sum(p.numel() for p in model.parameters())


def test_resnet_v1c_arithmetic_matches_torchvision_cross_check():
    assert resnet_v1c(50) == 23_527_264
    assert resnet_v1c(101) == 42_519_392  # torchvision ResNet-101: 44,549,160 - 2,049,000 - 9,536 + 28,768


@pytest.mark.parametrize("name", network_names())
def test_parameter_count_equals_mmsegs(name):
    family, depth = name.split("_r")[0], int(name.split("_r")[1].split("_")[0])
    assert resnet_v1c(depth) + HEADS[family] == PARAMS[name]
    assert params_of(name) == PARAMS[name]


def test_parameter_count_sees_a_one_channel_change():
    base = PARAMS["isanet_r50_d8"]
    # Ck 256 -> 257: in each of the 2 stages, key and query each gain 512 + 2 (first conv + BN) and
    # 257^2 - 256^2 + 2 (second conv + BN)
    assert params_of("isanet_r50_d8", key_channels=257) - base == 4 * (512 + 2 + 257**2 - 256**2 + 2)
    # one class more: the decode classifier gains 512 + 1, the auxiliary one 256 + 1
    assert params_of("isanet_r50_d8", num_classes=20) - base == (512 + 1) + (256 + 1)
    assert params_of("danet_r50_d8", num_classes=20) - PARAMS["danet_r50_d8"] == 3 * 513 + 257


# -- the catalogue ---------------------------------------------------------------------------------------
def test_sixteen_networks_declared_by_name_not_among_the_blocks():
    names = network_names()
    assert len(names) == 16 == 2 * len(NETWORKS)
    assert {"isanet_r50_d8", "ocrnet_r101_d8", "deeplabv3_r50_d8"} <= set(names)
    assert set(names) <= set(registry.names(everything=True))
    assert not set(names) & set(registry.names())  # sweeps' "all", check and baseline mean the blocks
    s = registry.spec("isanet_r101_d8")
    assert s.default_channels == 3 and dict(s.preset) == {"depth": 101}
    assert "depth" not in s.options and s.options["factor"] == (8, 8) and s.options["num_classes"] == 19


def test_channels_default_to_an_image_for_networks_only():
    cfg = isaprof.configure("ccnet_r50_d8", size=(64, 64))
    assert (cfg.channels, cfg.key_channels, cfg.value_channels) == (3, 64, 512)
    with pytest.raises(ValueError, match="needs channels"):
        isaprof.configure("isa", size=(64, 64))


def test_a_network_without_attention_refuses_a_key_width():
    with pytest.raises(ValueError, match="no attention block"):
        isaprof.profile("fcn_r50_d8", size=(32, 32), key_channels=128, device="meta")


# -- the two forward paths -------------------------------------------------------------------------------
def on_meta(name: str, **options) -> torch.nn.Module:
    with torch.device("meta"):
        return registry.build(name, None, **options)


@pytest.mark.parametrize("family", list(NETWORKS))
def test_training_and_test_outputs_at_a_small_size(family):
    model = on_meta(f"{family}_r50_d8", num_classes=5)  # shapes on fake weights: fast, nothing computed
    x = torch.empty(2, 3, 35, 42, device="meta")
    out = model.train()(x)
    keys = {
        "danet": ["decode.pam_cam", "decode.pam", "decode.cam", "aux"],
        "ocrnet": ["decode_0", "decode_1"],
    }
    assert list(out) == keys.get(family, ["decode", "aux"]) == list(model.loss_weights)
    assert all(v.shape == (2, 5, 35, 42) for v in out.values())  # every loss sees the label size
    weights = {"ocrnet": [0.4, 1.0], "danet": [1.0, 1.0, 1.0, 0.4]}.get(family, [1.0, 0.4])
    assert list(model.loss_weights.values()) == weights
    labels = model.eval()(x[:1])
    assert labels.shape == (1, 35, 42) and labels.dtype == torch.int64


def test_the_test_path_is_the_argmax_of_the_resized_logits():
    model = on_meta("nonlocal_r50_d8", num_classes=4).eval()
    logits = torch.randn(1, 4, 40, 24)
    model.encode_decode = lambda x: logits  # the logits at the input size (real values: meta computes none)
    assert torch.equal(model(torch.zeros(1, 3, 40, 24)), logits.argmax(dim=1))


def test_slide_inference_averages_padded_windows():
    model = on_meta("fcn_r50_d8", num_classes=2, test_mode="slide", crop=(32, 32), stride=(16, 16)).eval()
    seen = []

    def per_window(crop: torch.Tensor) -> torch.Tensor:  # stands in for encode_decode: logits of the window
        seen.append(tuple(crop.shape[2:]))
        corner = crop[:, 0, :1, :1].expand_as(crop[:, 0])  # the window's top-left pixel: y1 * 40 + x1
        return torch.stack([crop[:, 0], corner], dim=1)

    model.encode_decode = per_window
    x = torch.arange(48 * 40, dtype=torch.float32).reshape(1, 1, 48, 40).expand(1, 3, 48, 40)  # y * 40 + x
    logits = model.slide_inference(x)
    # windows (y1, x1): (0, 0), (0, 8), (16, 0), (16, 8): 2 x 2 grids, the last of each shifted back inside
    assert seen == [(32, 32)] * 4
    torch.testing.assert_close(logits[:, 0], x[:, 0])  # a per-pixel logit is the same in every window
    # channel 1: the mean over the windows covering each pixel of their corners 0, 8, 640, 648
    assert logits[0, 1, 0, 0] == 0 and logits[0, 1, 0, 39] == 8 and logits[0, 1, 47, 0] == 640
    assert logits[0, 1, 20, 20] == (0 + 8 + 640 + 648) / 4 and logits[0, 1, 10, 20] == (0 + 8) / 2
    assert torch.equal(model(x), logits.argmax(dim=1))


def test_bad_options_are_one_line_errors():
    for options, match in [
        ({"test_mode": "tiles"}, "test_mode"),
        ({"crop": (0, 3)}, "crop"),
        ({"num_classes": 0}, "num_classes"),
    ]:
        with pytest.raises(ValueError, match=match):
            isaprof.profile("isanet_r50_d8", size=(32, 32), device="meta", **options)


# -- through the profiler --------------------------------------------------------------------------------
def test_profile_on_meta_inference_and_train_by_module():
    rec = isaprof.profile("isanet_r50_d8", size=(32, 64), device="meta", by_module=True)
    assert rec.params == PARAMS["isanet_r50_d8"] and rec.config.channels == 3
    top = {r.module: r for r in rec.by_module if r.depth == 1}
    assert set(top) == {"backbone", "decode_head", "auxiliary_head"}
    assert sum(r.macs for r in top.values()) == rec.macs  # the segmentor itself only resizes
    assert sum(r.params for r in top.values()) == rec.params


def test_train_step_seeds_each_output_with_its_loss_weight():
    from isaprof.measure.protocol import step

    class TwoLosses(torch.nn.Module):
        loss_weights = {"decode": 1.0, "aux": 0.4}

        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = torch.nn.Parameter(torch.ones(())), torch.nn.Parameter(torch.ones(()))

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"decode": self.a * x, "aux": self.b * x, "extra": self.a * x}  # extra: weight 1

    m, x = TwoLosses(), torch.ones(2, 3)
    step(m, x, "train")()
    assert float(m.a.grad) == 6 * (1.0 + 1.0) and float(m.b.grad) == pytest.approx(6 * 0.4)
    assert torch.equal(x.grad, torch.full((2, 3), 2.4))


def test_mmseg_state_dict_renames_only_the_reused_blocks():
    model = on_meta("isanet_r50_d8")
    ours = set(model.state_dict())
    theirs = {
        "decode_head.global_relation.key_project.1.bn.weight": "decode_head.isa.long_range.f_key.1.1.weight",
        "decode_head.local_relation.value_project.bias": "decode_head.isa.short_range.f_value.bias",
        "decode_head.global_relation.output_project.conv.weight": "decode_head.isa.long_range.W.0.weight",
        "backbone.layer3.0.downsample.1.running_mean": "backbone.layer3.0.downsample.1.running_mean",
    }
    renamed = from_mmseg_state_dict({k: torch.zeros(1) for k in theirs})
    assert list(renamed) == list(theirs.values()) and set(renamed) <= ours
    nl = from_mmseg_state_dict({"decode_head.nl_block.conv_out.bn.bias": torch.zeros(1),
                                "decode_head.cca.gamma.scale": torch.tensor(0.5)})  # fmt: skip
    assert list(nl) == ["decode_head.nl_block.norm.bias", "decode_head.cca.gamma"]
    assert nl["decode_head.cca.gamma"].shape == (1,)


# -- published sizes (seconds each): `make test-slow` (pytest -m slow) ---------------


@pytest.mark.parametrize("argv", [
    ["profile", "isanet_r50_d8", "--size", "1024x2048", "--device", "meta", "--json"],
    ["predict", "isanet_r50_d8", "--size", "1024x2048", "--gpu", "v100", "--json"],
])  # fmt: skip
@pytest.mark.slow
def test_cityscapes_size_answers_in_seconds_without_channels(argv):
    start = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "isaprof", *argv], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - start < 30
    out = json.loads(res.stdout)
    if argv[0] == "predict":
        assert out["bound_ms"] > 0 and out["config"]["channels"] == 3
    else:
        assert out["params"]["measured"] == PARAMS["isanet_r50_d8"] and out["config"]["channels"] == 3


@pytest.mark.parametrize("name", network_names())
@pytest.mark.slow
def test_every_network_profiles_at_published_sizes(name):
    whole = isaprof.profile(name, size=(1024, 2048), device="meta", latency=None)
    assert whole.params == PARAMS[name] and whole.macs > 0
    train = isaprof.profile(name, size=(512, 1024), batch=2, device="meta", mode="train", latency=None)
    assert train.macs > whole.macs / 2  # two 512x1024 crops forward and backward vs one 1024x2048 forward
    slide = isaprof.profile(name, size=(1024, 2048), device="meta", latency=None, test_mode="slide")
    assert slide.macs > whole.macs  # 2 x 4 windows of 769x769 overlap


@pytest.mark.parametrize("family", list(NETWORKS))
@pytest.mark.slow
def test_real_training_step_and_test_path_on_cpu(family):
    from isaprof.measure.protocol import step

    torch.manual_seed(0)
    model = registry.build(f"{family}_r50_d8", None, num_classes=5)
    x = torch.randn(2, 3, 33, 41)
    out = step(model, x, "train")()
    assert all(v.shape == (2, 5, 33, 41) and torch.isfinite(v).all() for v in out.values())
    assert model.backbone.stem[0].weight.grad is not None and x.grad is not None
    with torch.no_grad():
        logits = model.eval().encode_decode(x[:1])
        labels = model(x[:1])
    assert torch.equal(labels, logits.argmax(dim=1)) and int(labels.max()) < 5


@pytest.mark.slow
def test_outputs_equal_mmsegs_under_the_same_weights():
    """Where mmsegmentation is installed (the ``mmseg`` test extra): each network against mmseg's own model
    from the same configuration, weights copied, eval outputs (logits of the test path) compared."""
    pytest.importorskip("mmseg")
    from mmseg.models import build_segmentor

    try:  # mmseg 1.x builds through its registry once its modules are registered
        from mmseg.utils import register_all_modules

        register_all_modules()
    except ImportError:
        pass

    norm = {"type": "BN", "requires_grad": True}
    for family in NETWORKS:
        cfg = mmseg_config(family, norm)
        theirs = build_segmentor(cfg).eval()
        ours = registry.build(f"{family}_r50_d8", None).eval()
        ours.load_state_dict(from_mmseg_state_dict(theirs.state_dict()))
        torch.manual_seed(0)
        for m in theirs.modules():  # non-trivial BN statistics and the zero-initialised attention scales
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        for p in theirs.parameters():
            if p.dim() == 0 or p.numel() == 1:
                p.data.fill_(0.5)
        ours.load_state_dict(from_mmseg_state_dict(theirs.state_dict()))
        x = torch.randn(1, 3, 64, 96)
        with torch.no_grad():
            meta = [{"img_shape": (64, 96, 3), "ori_shape": (64, 96, 3), "pad_shape": (64, 96, 3)}]
            torch.testing.assert_close(
                ours.encode_decode(x), theirs.encode_decode(x, meta), atol=1e-4, rtol=1e-4
            )


def mmseg_config(family: str, norm: dict) -> dict:
    """mmseg's configs/_base_/models/<family>_r50-d8.py as a dict (BN for SyncBN, no pretrained weights)."""
    backbone = dict(
        type="ResNetV1c",
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        dilations=(1, 1, 2, 4),
        strides=(1, 2, 1, 1),
        norm_cfg=norm,
        norm_eval=False,
        style="pytorch",
        contract_dilation=True,
    )
    common = dict(
        in_channels=2048,
        in_index=3,
        channels=512,
        dropout_ratio=0.1,
        num_classes=K,
        norm_cfg=norm,
        align_corners=False,
    )
    aux = dict(
        type="FCNHead",
        in_channels=1024,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=K,
        norm_cfg=norm,
        align_corners=False,
    )
    heads = {
        "fcn": dict(type="FCNHead", num_convs=2, concat_input=True),
        "pspnet": dict(type="PSPHead", pool_scales=(1, 2, 3, 6)),
        "deeplabv3": dict(type="ASPPHead", dilations=(1, 12, 24, 36)),
        "nonlocal": dict(type="NLHead", reduction=2, use_scale=True, mode="embedded_gaussian"),
        "danet": dict(type="DAHead", pam_channels=64),
        "ccnet": dict(type="CCHead", recurrence=2),
        "isanet": dict(type="ISAHead", isa_channels=256, down_factor=(8, 8)),
    }
    if family == "ocrnet":
        return dict(
            type="CascadeEncoderDecoder",
            num_stages=2,
            backbone=backbone,
            decode_head=[aux, dict(type="OCRHead", ocr_channels=256, **common)],
            train_cfg={},
            test_cfg=dict(mode="whole"),
        )
    return dict(type="EncoderDecoder", backbone=backbone, decode_head={**heads[family], **common},
                auxiliary_head=aux, train_cfg={}, test_cfg=dict(mode="whole"))  # fmt: skip
