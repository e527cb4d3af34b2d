"""Closed-form costs of ``sparse_nonlocal`` (blocks/sparse_nonlocal.py; SSANet's sparse non-local block,
Liu & Yin 2021, read as: every query attends to the same K = min(k, H W) sampled key/value positions).

N = H W queries, K sampled keys:
  params = 2 (C Ck + Ck) + (C Cv + Cv) + Cv C + 2 C       [theta, phi, g with bias; conv_out; BN]
  MACs   = B N C Ck + B K C (Ck + Cv) + B N Cv C          [theta on N, phi and g on K positions, conv_out]
         + B N K (Ck + Cv)                                 [Q K^T, A V over the K samples]
so the attention term is K / N of the dense non-local block's B N^2 (Ck + Cv).
Training (input requires grad): convs 3x; attention backward per ``formulas.common.attention_backward_macs``
(materialised: 2 (QK + AV); CPU fused sdpa: 3 QK + 2 AV).
Leaves out (``elementwise``): bias adds, the gather of the samples, scaling, softmax, BN, the residual.
"""

from __future__ import annotations

from isaprof.formulas import common as fc
from isaprof.formulas import dense as fd
from isaprof.formulas import memory as fm
from isaprof.formulas import peak as fp
from isaprof.formulas import train_sets as ts
from isaprof.formulas.base import Config, Cost, formula
from isaprof.formulas.non_local import embedded_gaussian

INDEX_BYTES = 8  # the (K,) int64 index of the sampled positions: live through forward, saved for backward


def samples(cfg: Config) -> int:
    """K, the number of sampled key/value positions: the ``k`` option (default 64) clamped to H W."""
    return min(cfg.option("k", 64), cfg.height * cfg.width)


@formula("sparse_nonlocal")
def sparse_nonlocal(cfg: Config) -> Cost:
    """Costs of ``sparse_nonlocal`` (see module docstring)."""
    b, c, ck, cv = cfg.batch, cfg.channels, cfg.key_channels, cfg.value_channels
    n, k = cfg.height * cfg.width, samples(cfg)
    fc.attention_kernel(cfg.impl, cfg.backend, ck, cv)  # ValueError on an impl / backend torch lacks
    convs = {
        "theta_conv": fc.conv1x1_macs(b * n, c, ck),
        "phi_g_conv": fc.conv1x1_macs(b * k, c, ck + cv),
        "out_conv": fc.conv1x1_macs(b * n, cv, c),
    }
    params, macs, train, elementwise = embedded_gaussian(cfg, convs, k)
    inference, train_peak = sparse_inference_peak(cfg), sparse_train_peak_set(cfg)
    return Cost(
        params=params,
        macs=macs,
        train_macs=train,
        elementwise=elementwise,
        peak_bytes={"inference": inference.bytes, "train": train_peak.bytes},
        padded=(cfg.height, cfg.width),
        peak_tolerance=fp.tolerances(inference=fp.tolerance(inference), train=fp.tolerance(train_peak)),
    )


def sparse_inference_peak(cfg: Config) -> fp.Moment:
    """Peak set of ``sparse_nonlocal`` inference: the largest of the attention (`dense.attention_moments`, N
    queries over the K samples) and the output conv + BN beside the attention output, each beside the
    (K,) int64 index, the gathered samples (B C K) and theta (B N Ck), phi (B K Ck), g (B K Cv).

    With naive attention and N K large it is those plus the (B, N, K) logits and their out-of-place scaled
    copy (2 B N K b); theta, phi, g are ``movable`` at the output conv (see `peak.LOCALS`).
    """
    b, c, ck, cv, e = cfg.batch, cfg.channels, cfg.key_channels, cfg.value_channels, cfg.dtype_bytes
    n, k = cfg.height * cfg.width, samples(cfg)
    held = {"index": INDEX_BYTES * k, "samples": b * c * k * e}
    local = {"theta": b * n * ck * e, "phi": b * k * ck * e, "g": b * k * cv * e}
    s = fd.stage_spec(cfg, b, n)
    s["m"] = k
    found = [x.plus({**held, **local}) for x in fd.attention_moments(s)]
    tail = {"attention output": b * n * cv * e, "out conv": b * n * c * e, "out bn": b * n * c * e}
    found.append(fp.Moment("output conv + BN", {**held, **local, **tail}, tuple(local)))
    return fp.peak_set(found)


def sparse_train_peak_set(cfg: Config) -> fp.Moment:
    """Peak set of ``sparse_nonlocal`` train: the largest of

    * forward, beside the (K,) int64 index, the gathered samples (B C K) and theta, phi, g: the attention's
      candidates (`train_sets.attention_forward`, N queries over K keys); the residual's output beside
      conv_out and BN (sdpa: theta, phi, g die after it where sdpa saved copies: ``movable`` there);
    * backward, beside the seed and the output: BN's and conv_out's backward; the attention's candidates
      (`train_sets.attention_backward`); the g and phi convs' input gradients (B C K each) and their sum;
      theta's input gradient and its sum with the seed; the gather's backward (``new_zeros`` + ``index_add``,
      two B C N buffers) and x's gradient.

    With naive / math attention and N K large it is the softmax backward: softmax, d_attn, d_softmax
    (3 B N K b) beside the saved activations; else the BN backward or the gather's.
    """
    b, c, ck, cv, e = cfg.batch, cfg.channels, cfg.key_channels, cfg.value_channels, cfg.dtype_bytes
    n, k = cfg.height * cfg.width, samples(cfg)
    full = b * n * c * e
    s = fd.stage_spec(cfg, b, n)
    s.update(m=k, qk_owned=True, q="theta", k="phi", v="g")
    live = {"index": INDEX_BYTES * k, "samples": b * c * k * e}
    live.update({"theta": b * n * ck * e, "phi": b * k * ck * e, "g": b * k * cv * e})
    found, live = ts.attention_forward("", s, live)
    dies: tuple[str, ...] = ()
    if s["kind"] == "math":  # the math kernel saves scaled copies: the conv outputs die with the locals
        dies = ("theta", "phi", *(() if s["sdpa_v"] == "g" else ("g",)))
    elif s["kind"] == "flash":  # the flash kernel saves its inputs, or their contiguous copies
        dies = tuple(s[x] for x in ("q", "k", "v") if s["sdpa_" + x] != s[x])
    live = {**live, "out conv": full, "out stats": 2 * c * fm.acc_bytes(e)}
    found.append(ts.at("output conv + BN + residual", live, dies, out_bn=full, output=full))
    live = {**ts.without(live, *dies), "output": full, "seed": full}  # both held by the caller
    d_bn = {"d bn": full, "d bn_w": c * e, "d bn_b": c * e}
    found.append(ts.at("output BN backward", live, **d_bn))
    live = {**ts.without(live, "out conv", "out stats"), **d_bn}
    d_y = {"d out conv": b * n * cv * e, "d out conv_w": cv * c * e}
    found.append(ts.at("output conv backward", live, **d_y))
    live = {**ts.without(live, "d bn", None if s["kind"] == "flash" else "attention output"), **d_y}
    more, live = ts.attention_backward("", s, live, "d out conv")
    found += more
    for name, d, ch in (("g", "d_v", cv), ("phi", "d_k", ck)):
        grads = {f"d {name} in": b * c * k * e, f"d {name} w": c * ch * e, f"d {name} b": ch * e}
        found.append(ts.at(f"{name} conv backward", live, **grads))
        live = {**ts.without(live, d), **grads}
    more, live = ts.grad_sum("d samples", ts.without(live, "samples"), ["d g in", "d phi in"], b * c * k * e)
    found += more
    grads = {"d theta in": full, "d theta w": c * ck * e, "d theta b": ck * e}
    found.append(ts.at("theta conv backward", live, **grads))
    live = {**ts.without(live, "d_q"), **grads}
    found.append(ts.at("x gradient: seed + theta path", live, d_x_theta=full))
    live = {**ts.without(live, "d theta in"), "d x theta": full}
    found.append(ts.at("gather backward", live, d_gather_zeros=full, d_gather=full))
    live = {**ts.without(live, "d samples sum 1", "index"), "d gather": full}
    found.append(ts.at("x gradient", live, d_x=full))
    return fp.peak_set(found)
