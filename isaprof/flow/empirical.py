"""Empirical connectivity from the real modules: the support of the position-to-position Jacobian.

``J[i, j] = sum over output channel c, input channel d of |d out[c, i] / d x[d, j]|`` at a random float64
input (positions flattened row-major, ``p = h * W + w``). Random parameters can hide a connection the
structure makes (a zero-initialised residual gain, a dead ReLU channel, a saturated softmax), so the
parameters are re-drawn at moderate scale (:func:`redraw`) and the supports of several draws are combined
(union) before a pair is called unconnected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

WEIGHT_STD = 0.5  # normal std of conv / linear weights and biases at re-draw
EXTRA_DRAWS = 5  # past the asked draws, keep drawing while the union still grows, at most this many more
RELATIVE_TINY = 1e-12  # |J| below this fraction of the draw's largest entry counts as zero (float64 noise)


@dataclass(frozen=True)
class EmpiricalResult:
    """Union over ``draws`` parameter draws of the Jacobian support, (N, N) bool over real positions."""

    support: np.ndarray  # (N, N) output position x input position
    draws: int
    channels: int
    stable: bool = True  # the last draw added no pair (False: still growing when the draws ran out)

    @property
    def fraction(self) -> float:
        """Connected (output, input) pairs / N^2."""
        return float(self.support.mean())


def redraw(module: nn.Module, generator: torch.Generator) -> None:
    """Re-draw every parameter and BN statistic at moderate scale, in place, and put ``module`` in eval.

    Conv / linear weights and biases: normal, std ``WEIGHT_STD``. One-element parameters (residual gains
    such as CCNet's ``gamma``): magnitude uniform in [0.5, 1.5], random sign, never zero. BatchNorm: weight
    uniform in [0.5, 1.5], bias normal std 0.5, running mean normal std 0.5, running var uniform in [0.5, 2].
    """
    module.eval()
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                if m.running_mean is not None:
                    m.running_mean.normal_(0.0, 0.5, generator=generator)
                    m.running_var.uniform_(0.5, 2.0, generator=generator)
                if m.weight is not None:
                    m.weight.uniform_(0.5, 1.5, generator=generator)
                    m.bias.normal_(0.0, 0.5, generator=generator)
        done = {
            id(p)
            for m in module.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for p in m.parameters(recurse=False)
        }
        for p in module.parameters():
            if id(p) in done:
                continue
            if p.numel() == 1:
                sign = 1.0 if torch.rand((), generator=generator) < 0.5 else -1.0
                p.uniform_(0.5, 1.5, generator=generator).mul_(sign)
            else:
                p.normal_(0.0, WEIGHT_STD, generator=generator)


def position_jacobian(fn: Callable[[Tensor], Tensor], x: Tensor, chunk: int = 256) -> np.ndarray:
    """(N_out, N_in) float64: ``sum |d fn(x)[0, c, i] / d x[0, d, j]|`` over channels, for x (1, C, H, W).

    One Jacobian row per batch element: ``x`` is repeated ``chunk`` times, element ``b`` of the batch
    back-propagates only output entry ``b``, so one backward gives ``chunk`` rows. Exact (not an estimate)
    because ``fn`` treats batch elements independently (modules in eval mode); several times faster than
    ``torch.autograd.functional.jacobian(vectorize=True)`` on these blocks.
    """
    with torch.no_grad():
        shape = fn(x).shape  # (1, C', Ho, Wo)
    n_out, rows = shape[2] * shape[3], shape[1:].numel()
    grads = []
    for start in range(0, rows, chunk):
        stop = min(start + chunk, rows)
        xb = x.expand(stop - start, *x.shape[1:]).clone().requires_grad_(True)  # (b, C, H, W)
        out = fn(xb).reshape(stop - start, rows)  # (b, C' Ho Wo)
        pick = torch.arange(stop - start)
        (grad,) = torch.autograd.grad(out[pick, pick + start].sum(), xb)  # (b, C, H, W)
        grads.append(grad.detach())
    jac = torch.cat(grads).reshape(shape[1], n_out, x.shape[1], -1)  # (C', N_out, C, N_in)
    return jac.abs().sum(dim=(0, 2)).cpu().numpy()  # (N_out, N_in)


def jacobian_support(
    make: Callable[[], nn.Module],
    size: tuple[int, int],
    channels: int,
    *,
    draws: int = 3,
    seed: int = 0,
    forward: Callable[[nn.Module, Tensor], Tensor] | None = None,
    extra_draws: int | None = None,
) -> EmpiricalResult:
    """Union over draws of the support of :func:`position_jacobian` of ``make()`` at ``size``.

    At least ``draws`` draws; then more (up to ``extra_draws``, default :data:`EXTRA_DRAWS`) while the
    last draw still added a pair: one draw that happens to zero an entry must not make a connected
    block look broken.

    ``make`` builds the module (float64 is applied here); ``forward(module, x)`` replaces ``module(x)``
    (e.g. to run one stage alone). Each draw re-draws parameters (:func:`redraw`) and the input.
    """
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    h, w = size
    gen = torch.Generator().manual_seed(seed)
    union = np.zeros((h * w, h * w), dtype=bool)  # (N, N)
    extra = EXTRA_DRAWS if extra_draws is None else extra_draws
    done, grew = 0, True
    with one_thread():  # tiny ops: intra-op threads only add overhead (15x slower on a loaded 2-core box)
        # at least `draws`, then on while a draw still reaches new pairs (one unlucky draw can zero an entry)
        while done < draws or (grew and done < draws + extra):
            before = int(union.sum())
            union |= _one_draw(make, (h, w), channels, gen, forward)
            grew, done = int(union.sum()) > before, done + 1
    return EmpiricalResult(union, done, channels, stable=not grew or bool(union.all()))


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the body with one intra-op torch thread; the previous thread count is restored on exit."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _one_draw(
    make: Callable[[], nn.Module],
    size: tuple[int, int],
    channels: int,
    gen: torch.Generator,
    forward: Callable[[nn.Module, Tensor], Tensor] | None,
) -> np.ndarray:
    """(N, N) bool support of one draw of parameters and input."""
    module = make().to(torch.float64)
    redraw(module, gen)
    x = torch.randn(1, channels, *size, dtype=torch.float64, generator=gen)  # (1, C, H, W)

    def fn(inp: Tensor, module: nn.Module = module) -> Tensor:
        return module(inp) if forward is None else forward(module, inp)

    jac = position_jacobian(fn, x)  # (N, N)
    if not np.isfinite(jac).all():
        raise ValueError("the Jacobian has non-finite entries (NaN/inf in the block's forward or backward)")
    return jac > RELATIVE_TINY * jac.max()


class PassThrough(nn.Module):
    """Stands in for one stage of a block: returns its input (extra arguments such as a key mask ignored)."""

    def forward(self, x: Tensor, *args: object, **kwargs: object) -> Tensor:
        return x  # (B, C, H, W) unchanged


@dataclass(frozen=True)
class Run:
    """One module to differentiate and the structural stages it realises (indices, in application order)."""

    label: str
    stages: tuple[int, ...]
    make: Callable[[], nn.Module]


def runs(name: str, n_stages: int, build: Callable[..., nn.Module]) -> list[Run]:
    """The modules whose Jacobians are compared with the structural model of block ``name``.

    ``build(**overrides)`` builds the block. ISA and axial: each stage alone (the other replaced by
    :class:`PassThrough`) and both; criss-cross: recurrence 1..R (the passes share weights); every other
    block: the whole block only.
    """
    everything = tuple(range(n_stages))
    whole = Run("whole block", everything, build)
    pairs = {"isa": ("long_range", "short_range"), "axial": ("row", "column")}
    if name in pairs:
        first, second = pairs[name]
        return [
            Run(f"{first} alone", (0,), lambda: _replace(build(), second)),
            Run(f"{second} alone", (1,), lambda: _replace(build(), first)),
            whole,
        ]
    if name == "criss_cross":
        return [
            Run(f"R={r}", tuple(range(r)), lambda r=r: build(recurrence=r)) for r in range(1, n_stages + 1)
        ]
    return [whole]


def _replace(module: nn.Module, attr: str) -> nn.Module:
    setattr(module, attr, PassThrough())
    return module
