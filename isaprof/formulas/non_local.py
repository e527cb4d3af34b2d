"""Closed-form costs of ``non_local`` (blocks/non_local.py; Wang et al. CVPR 2018, embedded Gaussian,
eq. 2-3).

N = H W queries, M keys (M = N, or floor(H/2) floor(W/2) with ``sub_sample``):
  params = 2 (C Ck + Ck) + (C Cv + Cv) + Cv C + 2 C           [theta, phi, g with bias; conv_out, BN]
  MACs   = B N C (2 Ck + Cv) + B N Cv C + B N M (Ck + Cv)     [convs on all N positions; Q K^T, A V]
Leaves out: bias adds, max-pool, BN, scaling, softmax, the residual add (``elementwise``).
"""

from __future__ import annotations

from isaprof.formulas import common as fc
from isaprof.formulas import memory as fm
from isaprof.formulas import peak as fp
from isaprof.formulas import train_sets as ts
from isaprof.formulas.base import Config, Cost, formula
from isaprof.formulas.dense import (
    attention_moments,
    stage_spec,
)

INDEX_BYTES = 8  # max-pool indices are int64


def keys(cfg: Config) -> int:
    """M, the number of key/value positions."""
    if cfg.option("sub_sample", False):
        return (cfg.height // 2) * (cfg.width // 2)
    return cfg.height * cfg.width


def embedded_gaussian(
    cfg: Config, convs: dict[str, int], m: int
) -> tuple[int, dict[str, int], dict[str, int], dict[str, int]]:
    """(params, MACs, train MACs, element-wise ops) of a non-local block whose N = H W queries attend to
    ``m`` keys, given its 1x1 conv MACs by term: theta, phi, g (with bias), conv_out (no bias) + BN, the
    attention and the residual. Shared with ``sparse_nonlocal`` (the same block on sampled keys)."""
    b, c, ck, cv, n = cfg.batch, cfg.channels, cfg.key_channels, cfg.value_channels, cfg.height * cfg.width
    kernel = fc.attention_kernel(cfg.impl, cfg.backend, ck, cv)
    qk, av = fc.attention_macs(b, n, m, ck, cv)
    train = {k: 3 * v for k, v in convs.items()}
    train["attention"] = qk + av + fc.attention_backward_macs(qk, av, kernel)
    params = 2 * fc.conv1x1_params(c, ck) + fc.conv1x1_params(c, cv)
    params += fc.conv1x1_params(cv, c, bias=False) + fc.bn_params(c)
    elementwise = {
        "scale": b * n * m,
        "softmax": fc.softmax_ops(b * n * m),
        "out_bn": fc.BN_OPS * b * n * c,
        "residual": b * n * c,
    }
    return params, {**convs, "qk": qk, "av": av}, train, elementwise


@formula("non_local")
def non_local(cfg: Config) -> Cost:
    """Costs of ``non_local`` (see module docstring)."""
    b, c, ck, cv = cfg.batch, cfg.channels, cfg.key_channels, cfg.value_channels
    n, m = cfg.height * cfg.width, keys(cfg)
    convs = {
        "theta_conv": fc.conv1x1_macs(b * n, c, ck),
        "phi_conv": fc.conv1x1_macs(b * n, c, ck),
        "g_conv": fc.conv1x1_macs(b * n, c, cv),
        "out_conv": fc.conv1x1_macs(b * n, cv, c),
    }
    params, macs, train, elementwise = embedded_gaussian(cfg, convs, m)
    if cfg.option("sub_sample", False):
        elementwise["max_pool"] = fc.POOL2X2_OPS * b * m * (ck + cv)
    inference, train_peak = non_local_inference_peak(cfg), non_local_train_peak(cfg)
    return Cost(
        params=params,
        macs=macs,
        train_macs=train,
        elementwise=elementwise,
        peak_bytes={"inference": inference.bytes, "train": train_peak.bytes},
        padded=(cfg.height, cfg.width),
        peak_tolerance=fp.tolerances(inference=fp.tolerance(inference), train=fp.tolerance(train_peak)),
    )


def non_local_inference_peak(cfg: Config) -> fp.Moment:
    """Peak set of ``non_local`` inference: the largest of the max-pools of phi and g (``sub_sample``: the
    conv output beside its pooled copy and int64 indices), the attention (`dense.attention_moments`) beside
    theta, phi, g, and the output conv + BN beside theta, phi, g (``movable``) and the attention output.

    With naive attention and N M large it is theta, phi, g (B (N Ck + M (Ck + Cv)) b) plus the (B, N, M)
    logits and their out-of-place scaled copy (2 B N M b): nothing else is N M-sized.
    """
    b, c, ck, cv, e = cfg.batch, cfg.channels, cfg.key_channels, cfg.value_channels, cfg.dtype_bytes
    n, m, pool = cfg.height * cfg.width, keys(cfg), bool(cfg.option("sub_sample", False))
    local = {"theta": b * n * ck * e, "phi": b * m * ck * e, "g": b * m * cv * e}
    found = []
    if pool:
        found.append(
            fp.moment(
                "phi max-pool",
                theta=local["theta"],
                phi_conv=b * n * ck * e,
                phi=local["phi"],
                phi_indices=b * m * ck * INDEX_BYTES,
            )
        )
        found.append(
            fp.moment(
                "g max-pool",
                theta=local["theta"],
                phi=local["phi"],
                g_conv=b * n * cv * e,
                g=local["g"],
                g_indices=b * m * cv * INDEX_BYTES,
            )
        )
    s = stage_spec(cfg, b, n)
    s["m"] = m
    found += [x.plus(local) for x in attention_moments(s)]
    found.append(
        fp.Moment(
            "output conv + BN",
            {**local, "attention output": b * n * cv * e, "out conv": b * n * c * e, "out bn": b * n * c * e},
            tuple(local),
        )
    )
    return fp.peak_set(found)


def non_local_train_peak(cfg: Config) -> fp.Moment:
    """Peak set of ``non_local`` train: the largest of

    * forward: the attention's candidates (`train_sets.attention_forward`) beside theta, phi, g (and, with
      ``sub_sample``, the conv outputs and int64 indices the max-pools keep); the residual's output beside
      conv_out and BN (sdpa: theta, phi, g die after it where sdpa saved copies: ``movable`` there);
    * backward, beside the seed and the output: BN's and conv_out's backward; the attention's candidates
      (`train_sets.attention_backward`); per projection g, phi, theta: the max-pool's backward, the conv's
      input and weight gradients, and x's gradient summed out of place (the seed is its first part).

    With naive / math attention and N M large it is the softmax backward: softmax, d_attn, d_softmax
    (3 B N M b) beside the saved activations, the seed and the output.
    """
    b, c, ck, cv, e = cfg.batch, cfg.channels, cfg.key_channels, cfg.value_channels, cfg.dtype_bytes
    n, m, pool = cfg.height * cfg.width, keys(cfg), bool(cfg.option("sub_sample", False))
    s = stage_spec(cfg, b, n)
    s.update(m=m, qk_owned=True, q="theta", k="phi" if pool else "phi conv", v="g" if pool else "g conv")
    live: ts.Live = {"theta": b * n * ck * e, "phi conv": b * n * ck * e}
    if pool:  # max-pool keeps its input and indices for the backward
        live.update({"phi": b * m * ck * e, "phi indices": b * m * ck * INDEX_BYTES})
    live["g conv"] = b * n * cv * e
    if pool:
        live.update({"g": b * m * cv * e, "g indices": b * m * cv * INDEX_BYTES})
    found, live = ts.attention_forward("", s, live)
    dies: tuple[str, ...] = ()
    if s["kind"] != "naive":  # the forward's locals die at its return where sdpa saved copies instead
        dies = tuple(
            x for x in ("q", "k", "v") if s["sdpa_" + x] != s[x] or (s["kind"] == "math" and x != "v")
        )
        dies = tuple(s[x] for x in dies)
    live = {**live, "out conv": b * n * c * e, "out stats": 2 * c * fm.acc_bytes(e)}
    found.append(ts.at("output conv + BN + residual", live, dies, out_bn=b * n * c * e, output=b * n * c * e))
    live = {**ts.without(live, *dies), "output": b * n * c * e, "seed": b * n * c * e}  # held by the caller
    d_bn = {"d bn": b * n * c * e, "d bn_w": c * e, "d bn_b": c * e}
    found.append(ts.at("output BN backward", live, **d_bn))
    live = {**ts.without(live, "out conv", "out stats"), **d_bn}
    d_y = {"d out conv": b * n * cv * e, "d out conv_w": cv * c * e}
    found.append(ts.at("output conv backward", live, **d_y))
    y = None if s["kind"] == "flash" else "attention output"
    live = {**ts.without(live, y, "d bn"), **d_y}
    more, live = ts.attention_backward("", s, live, "d out conv")
    found += more
    acc = "seed"
    for name, conv_out, ch, d in (
        ("g", "g conv", cv, "d_v"),
        ("phi", "phi conv", ck, "d_k"),
        ("theta", "theta", ck, "d_q"),
    ):
        if pool and name != "theta":
            found.append(ts.at(f"{name} max-pool backward", live, **{f"d {name} pool": b * n * ch * e}))
            live = {**ts.without(live, conv_out, name + " indices", d), f"d {name} pool": b * n * ch * e}
            d = f"d {name} pool"
        grads = {f"d {name} in": b * n * c * e, f"d {name} w": c * ch * e, f"d {name} b": ch * e}
        found.append(ts.at(f"{name} conv backward", live, **grads))
        live = {**ts.without(live, d), **grads}
        found.append(ts.at(f"x gradient + {name} path", live, **{f"d x {name}": b * n * c * e}))
        live = {
            **ts.without(live, None if acc == "seed" else acc, f"d {name} in"),
            f"d x {name}": b * n * c * e,
        }
        acc = f"d x {name}"
    return fp.peak_set(found)
