"""Replay of ``sparse_nonlocal`` in train: the gathered samples, non-local's attention over K keys."""

from __future__ import annotations

from isaprof.formulas import memory as fm
from isaprof.formulas.base import Config
from isaprof.formulas.dense import stage_spec
from isaprof.formulas.non_local import INDEX_BYTES
from isaprof.formulas.sparse_nonlocal import samples
from tests.formulas.replays.dense import attention_backward, attention_forward
from tests.formulas.replays.trace import Trace, grad_sum


def sparse_train_peak(cfg: Config) -> Trace:
    """Events of ``sparse_nonlocal`` under the train protocol; ``.peak`` in bytes.

    Forward: the index, the gathered samples, theta / phi / g convs, the attention of
    `dense.attention_forward` (B maps, N queries, K keys; q, k, v transposed views of the conv outputs,
    which sdpa copies contiguous when Ck, Cv, N, K > 1), conv_out, BN, residual. Backward: BN, conv_out, the
    attention (`dense.attention_backward`), g and phi convs (their input gradients summed), theta conv
    (added to the seed, the residual's gradient), the gather's ``index_add``. With naive / math attention
    and N K large the peak is at the softmax backward (softmax, d_attn, d_softmax: 3 B N K), else at the BN
    backward, beside the saved activations (``Trace.live_at_peak`` lists them).
    """
    b, c, ck, cv, e = cfg.batch, cfg.channels, cfg.key_channels, cfg.value_channels, cfg.dtype_bytes
    n, k = cfg.height * cfg.width, samples(cfg)
    s = stage_spec(cfg, b, n)
    s.update(m=k, qk_owned=True)
    t = Trace()
    t.alloc("idx", INDEX_BYTES * k)  # (K,) int64; torch.tensor(list) itself is invisible to dispatch
    t.alloc("xs", b * c * k * e)  # (B, C, K, 1)
    s["q"], s["k"], s["v"] = t.alloc("theta", b * n * ck * e), t.alloc("phi", b * k * ck * e), None
    s["v"] = t.alloc("g", b * k * cv * e)
    out = attention_forward(t, "", s, True)  # (B, N, Cv)
    t.alloc("conv_out", b * n * c * e)
    t.alloc("bn", b * n * c * e)
    t.alloc("mean", c * fm.acc_bytes(e)), t.alloc("invstd", c * fm.acc_bytes(e))
    t.alloc("y", b * n * c * e)  # the output, held by the caller
    t.free("bn")
    if s["kind"] == "math":  # the math kernel saves scaled copies: the conv outputs die with forward's locals
        t.free("theta", "phi", None if s["sdpa_v"] == "g" else "g")
    elif s["kind"] == "flash":  # the flash kernel saves its (possibly copied) inputs
        t.free(
            *(name for key, name in (("q", "theta"), ("k", "phi"), ("v", "g")) if s["sdpa_" + key] != name)
        )
    t.alloc("seed", b * n * c * e)  # ones_like(y), held by the caller
    t.alloc("d_bn", b * n * c * e), t.alloc("d_bn_w", c * e), t.alloc("d_bn_b", c * e)
    t.free("conv_out", "mean", "invstd")
    d_y = t.alloc("d_y", b * n * cv * e)  # conv_out's input gradient (B, Cv, H, W)
    t.alloc("d_conv_out_w", c * cv * e)
    t.free("d_bn", None if s["kind"] == "flash" else out)  # flash saved its output for its backward
    dq, dk, dv = attention_backward(t, "", s, d_y)
    parts = []
    for name, d, cout in (("g", dv, cv), ("phi", dk, ck)):
        parts.append(t.alloc(f"{name}_d_in", b * c * k * e))
        t.alloc(f"{name}_d_w", c * cout * e), t.alloc(f"{name}_d_b", cout * e)
        t.free(d)
    t.free("xs")
    d_xs = grad_sum(t, "d_xs", parts, b * c * k * e)
    d_theta = t.alloc("theta_d_in", b * n * c * e)
    t.alloc("theta_d_w", c * ck * e), t.alloc("theta_d_b", ck * e)
    t.free(dq)
    acc = t.alloc("d_x_sum", b * n * c * e)  # seed + theta's part
    t.free(d_theta)
    zeros = t.alloc("d_gather_zeros", b * n * c * e)  # index_select backward: new_zeros + index_add
    gathered = t.alloc("d_gather", b * n * c * e)
    t.free(zeros, d_xs, "idx")
    t.alloc("d_x", b * n * c * e)
    t.free(acc, gathered)
    return t
