"""Closed-form costs of ``linear`` (blocks/linear.py; Li, Su, Duan et al. 2020, arXiv 2007.14902, eq. 11).

N = H W positions:
  params = 2 (C Ck + Ck) + (C C + C) + 1                  [query, key, value convs with bias; gamma]
  MACs   = B N C (2 Ck + C)                                [the three 1x1 convs]
         + B N Ck                                          [denominator q_n . sum_j k_j]
         + B N Ck C                                        [sum_j k_j v_j^T: (Ck, N) x (N, C)]
         + B N Ck C                                        [numerator (K V^T)^T q_n]
linear in N: 2 B N Ck C replaces dense attention's 2 B N^2 C (the paper's O(N) claim).
NB: torch.einsum lowers a product whose contracted dimension has size 1 to an element-wise ``mul`` that the
counters do not count: with Ck = 1 the denominator and numerator, with N = 1 the K V^T term count 0.
Training (input requires grad): train MACs = 3 x forward MACs.
Leaves out (``elementwise``): L2 norms, the sums over positions, the divisions, gamma, the residual.
"""

from __future__ import annotations

from isaprof.formulas import common as fc
from isaprof.formulas import memory as fm
from isaprof.formulas import peak as fp
from isaprof.formulas import train_sets as ts
from isaprof.formulas.base import Config, Cost, formula


@formula("linear")
def linear(cfg: Config) -> Cost:
    """Costs of ``linear`` (see module docstring)."""
    b, c, ck, h, w = cfg.batch, cfg.channels, cfg.key_channels, cfg.height, cfg.width
    n = h * w
    macs = {
        "qkv_conv": fc.conv1x1_macs(b * n, c, 2 * ck + c),
        "denominator": b * n * ck * (ck > 1),
        "kv": b * n * ck * c * (n > 1),
        "numerator": b * n * ck * c * (ck > 1),
    }
    elementwise = {
        "l2_norm": 2 * (3 * b * n * ck + b * n),  # square, add, divide per element; one sqrt per position
        "key_sum": b * n * ck,
        "value_sum": b * n * c,
        "denominator_add": b * n,
        "numerator_add": b * n * c,
        "divide": b * n * c,
        "gamma_scale": b * n * c,
        "residual": b * n * c,
    }
    peak = {"inference": peak_inference(cfg), "train": peak_train(cfg)}
    return fc.cost_train_3x(fc.qkv_gamma_params(c, ck), macs, elementwise, peak, (h, w))


def peak_inference(cfg: Config) -> int:
    """Peak bytes of one ``no_grad`` forward: reached at the final residual add.

    Live then: v, the numerator, its quotient, gamma * quotient and the output (5 B N C), the normalised
    q and k (2 B N Ck), the denominator (B N), K V^T (B Ck C) and sum_j k_j (B Ck).
    """
    b, c, ck, n = cfg.batch, cfg.channels, cfg.key_channels, cfg.height * cfg.width
    return (5 * b * n * c + 2 * b * n * ck + b * n + b * ck * c + b * ck) * cfg.dtype_bytes


def peak_train(cfg: Config) -> int:
    """Peak bytes of forward + backward: the peak set `linear_train_peak_set` (exact against the tracker)."""
    return linear_train_peak_set(cfg).bytes


def linear_train_peak_set(cfg: Config) -> fp.Moment:
    """Peak set of ``linear`` train: the largest of

    * forward: the output beside gamma * quotient and everything saved (each earlier moment holds fewer
      bytes: every op before adds more than it frees);
    * backward, beside the saved activations, the output and the seed: the division's backward
      (-grad (num / denom) / denom: three B N C temporaries and d_denom_full beside d_quot, the usual peak);
      the numerator einsum's gradients (Ck = 1: the lowered ``mul`` products); K V^T's; d_v; the
      denominator's; d_q_unit, d_k_unit; each L2 normalisation's backward (its division's temporaries, then
      the norm's); each conv's input gradient and its out-of-place sum into x's gradient.
    """
    b, c, ck, n, e = cfg.batch, cfg.channels, cfg.key_channels, cfg.height * cfg.width, cfg.dtype_bytes
    fk, fc_, col, kc = b * n * ck * e, b * n * c * e, b * n * e, b * ck * c * e
    live: ts.Live = {"q conv": fk, "k conv": fk, "v": fc_, "q norm": col, "q unit": fk, "k norm": col}
    live.update({"k unit": fk, "k sum": b * ck * e, "denom": col, "kv": kc, "num": fc_, "quot": fc_})
    found = [ts.at("forward: output", live, scaled=fc_, output=fc_)]
    live.update({"output": fc_, "seed": fc_})  # both held by the caller
    live = {**ts.without(live, "quot"), "d quot": fc_, "d gamma": e}
    found.append(ts.at("division backward", live, div_a=fc_, div_b=fc_, neg=fc_, d_denom_full=fc_))
    live = {**ts.without(live, "d quot", "denom", "num"), "d num": fc_, "d denom": col}
    live["d v sum"] = b * c * e
    if ck == 1:  # einsum lowered to mul: (B, C, N, 1) products, then sums
        found.append(ts.at("numerator backward", live, d_q_num_mul=fc_, d_kv_mul=fc_, d_kv=kc))
    else:
        found.append(ts.at("numerator backward", live, d_q_num=fk, d_kv=kc))
    live = {**ts.without(live, "d num", "kv"), "d q num": fk, "d kv": kc}
    found.append(ts.at("K V^T backward", live, d_v_kv=fc_, d_k_kv=fk))
    live = {**ts.without(live, "d kv", "v", "k unit"), "d v kv": fc_, "d k kv": fk}
    found.append(ts.at("d_v", live, d_v=fc_))
    live = {**ts.without(live, "d v sum", "d v kv"), "d v": fc_}
    den = {"d k sum mul": col, "d q den": col} if ck == 1 else {"d q den": fk}
    found.append(
        ts.at(
            "denominator backward",
            live,
            d_k_sum=b * ck * e,
            **den,
        )
    )
    live = {
        **ts.without(live, "d denom", "k sum", "q unit"),
        "d k sum": b * ck * e,
        "d q den": den["d q den"],
    }
    found.append(ts.at("d_q_unit", live, d_q_unit=fk))
    live = {**ts.without(live, "d q num", "d q den"), "d q unit": fk}
    found.append(ts.at("d_k_unit", live, d_k_unit=fk))
    live = {**ts.without(live, "d k kv", "d k sum"), "d k unit": fk}
    for p in ("k ", "q "):  # u / norm(u): the division's backward, then the norm's
        div = {p + "div a": fk, p + "div b": fk, p + "neg": fk, p + "d norm full": fk}
        found.append(ts.at(p + "normalise backward: division", live, **div))
        d_norm = {p + "d norm": col} if ck > 1 else {p + "d norm full": fk}
        live = {**ts.without(live, f"d {p}unit"), p + "d u div": fk, **d_norm}
        nb = {p + "nb div": fk, p + "nb eq": b * n * fm.BOOL_BYTES, p + "nb mul": fk}
        found.append(ts.at(p + "normalise backward: norm", live, **nb))
        live = ts.without(live, *d_norm, p + "conv", p + "norm", p + "d u div")
        live[p + "d conv"] = fk
    acc = None  # x's gradient: the residual passes the seed itself; each conv's part is added out of place
    for p, d, cout in (("v ", "d v", c), ("k ", "k d conv", ck), ("q ", "q d conv", ck)):
        grads = {p + "d_x": fc_, p + "d_w": c * cout * e, p + "d_b": cout * e}
        found.append(ts.at(p + "conv backward", live, **grads))
        live = {**ts.without(live, d), **grads}
        found.append(ts.at(p + "x gradient sum", live, **{p + "d_x sum": fc_}))
        live = {**ts.without(live, acc, p + "d_x"), p + "d_x sum": fc_}
        acc = p + "d_x sum"
    return fp.peak_set(found)
