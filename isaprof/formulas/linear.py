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


def _normalise_backward(t: fm.Trace, p: str, grad: str, sizes: tuple[int, int, int], ck: int) -> str:
    """Backward of ``u / torch.norm(u, dim=1, keepdim=True)`` given ``grad`` (B, Ck, N); returns d_u's name.

    ``sizes`` = (B Ck N, B N, B N) bytes of u, of its norm and of the norm's zero mask (bool). The division's
    backward (``div_tensor_other_backward``: -grad (self / other) / other, then grad / other); the norm's
    (``norm_backward``: self / norm masked where norm == 0). With Ck = 1 no reduction is needed for d_norm.
    """
    full, col, mask = sizes
    tmp = [t.alloc(f"{p}div_a", full), t.alloc(f"{p}div_b", full), t.alloc(f"{p}neg", full)]
    d_norm = t.alloc(f"{p}d_norm_full", full)  # (B, Ck, N), reduced to (B, 1, N) below when Ck > 1
    t.free(*reversed(tmp))
    d_u = t.alloc(f"{p}d_u_div", full)
    if ck > 1:
        red = t.alloc(f"{p}d_norm", col)  # (B, 1, N)
        t.free(d_norm, grad)
        d_norm = red
    else:
        t.free(grad)
    t.alloc(f"{p}nb_div", full), t.alloc(f"{p}nb_eq", mask)
    nb = t.alloc(f"{p}nb_mul", full)
    t.free(f"{p}nb_eq", f"{p}nb_div", d_norm, f"{p}conv", f"{p}norm")
    out = t.alloc(f"{p}d_conv", full)
    t.free(d_u, nb)
    return out


def linear_train_peak(cfg: Config) -> fm.Trace:
    """Events of ``linear`` under the train protocol (torch 2.x CPU, read off a dispatch-mode log).

    Reached in the backward of the final division ``num / denom``: beside the saved activations
    (q, k convs and norms and normalised q, k: 4 B N Ck + 2 B N; v, the denominator, numerator:
    B N (C + 1) + B N C; K V^T, sum_j k_j), the output, the seed and the gradient of the quotient
    (3 B N C) and the division's -grad (num / denom) / denom temporaries (3 B N C, the neg one the last).
    """
    b, c, ck, n, e = cfg.batch, cfg.channels, cfg.key_channels, cfg.height * cfg.width, cfg.dtype_bytes
    fk, fc_, col = b * n * ck * e, b * n * c * e, b * n * e
    t = fm.Trace()
    for p in ("q_", "k_"):
        t.alloc(p + "conv", fk)  # (B, Ck, H, W)
    t.alloc("v", fc_)  # (B, C, H, W)
    for p in ("q_", "k_"):
        t.alloc(p + "norm", col)  # (B, 1, N)
        t.alloc(p + "unit", fk)  # (B, Ck, N)
    t.alloc("k_sum0", b * ck * e)
    t.alloc("k_sum", b * ck * e)  # + eps
    t.free("k_sum0")
    t.alloc("qk", col)  # bmm (B, N, 1)
    t.alloc("denom", col)  # N + ...
    t.free("qk")
    t.alloc("kv", b * ck * c * e)  # (B, Ck, C)
    t.alloc("v_sum", b * c * e)  # (B, C, 1)
    t.alloc("kvq", fc_)  # (B, C, N)
    t.alloc("num", fc_)
    t.free("v_sum", "kvq")
    t.alloc("quot", fc_)  # (B, C, N), saved by gamma *
    t.alloc("scaled", fc_)
    t.alloc("out", fc_)  # the output, held by the caller
    t.free("scaled")
    t.alloc("seed", fc_)  # ones_like(out), held by the caller
    t.alloc("d_quot", fc_)  # grad * gamma
    t.alloc("d_gamma_full", fc_)
    t.alloc("d_gamma", e)  # (1,) after the sum to gamma's shape
    t.free("d_gamma_full", "quot")
    tmp = [t.alloc("div_a", fc_), t.alloc("div_b", fc_), t.alloc("neg", fc_)]
    t.alloc("d_denom_full", fc_)  # the peak: -grad * (num / denom) / denom
    t.free(*reversed(tmp))
    t.alloc("d_num", fc_)
    t.alloc("d_denom", col)  # (B, 1, N)
    t.free("d_denom_full", "d_quot", "denom", "num")
    t.alloc("d_v_sum", b * c * e)  # (B, C, 1)
    if ck == 1:  # einsum lowered to mul: (B, C, N, 1) products, then sums
        t.alloc("d_q_num_mul", fc_), t.alloc("d_kv_mul", fc_)
        t.alloc("d_kv", b * ck * c * e)
        t.free("d_kv_mul")
        t.alloc("d_q_num", fk)
        t.free("d_q_num_mul")
    else:
        t.alloc("d_q_num", fk), t.alloc("d_kv", b * ck * c * e)
    t.free("d_num", "kv")
    t.alloc("d_v_kv", fc_), t.alloc("d_k_kv", fk)  # (B, N, C), (B, Ck, N)
    t.free("d_kv", "v", "k_unit")
    t.alloc("d_v", fc_)
    t.free("d_v_sum", "d_v_kv")
    if ck == 1:
        t.alloc("d_k_sum_mul", col), t.alloc("d_q_den", col)
        t.alloc("d_k_sum", b * ck * e)
        t.free("d_k_sum_mul", "d_denom", "k_sum", "q_unit")
    else:
        t.alloc("d_k_sum", b * ck * e), t.alloc("d_q_den", fk)
        t.free("d_denom", "k_sum", "q_unit")
    t.alloc("d_q_unit", fk)
    t.free("d_q_num", "d_q_den")
    t.alloc("d_k_unit", fk)
    t.free("d_k_kv", "d_k_sum")
    sizes = (fk, col, b * n * fm.BOOL_BYTES)
    d_k = _normalise_backward(t, "k_", "d_k_unit", sizes, ck)
    d_q = _normalise_backward(t, "q_", "d_q_unit", sizes, ck)
    acc = None  # d_x: the residual's gradient is the seed itself (no allocation); each conv adds to it
    for p, d, cout in (("v_", "d_v", c), ("k_", d_k, ck), ("q_", d_q, ck)):
        part = t.alloc(p + "d_x", b * n * c * e)
        t.alloc(p + "d_w", c * cout * e), t.alloc(p + "d_b", cout * e)
        t.free(d)
        new = t.alloc(p + "d_x_sum", b * n * c * e)
        t.free(acc, part)
        acc = new
    return t


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
