"""Costs derived as closed forms in the input size: one symbolic run instead of a grid of numeric ones.

The module runs once under ``FakeTensorMode(shape_env=ShapeEnv(duck_shape=False))`` on a ``(B, C, H, W)``
input whose H and W (and B, with ``batch_symbol``) are dynamic, through ``FlopCounterMode``: the total
comes out as an expression in torch's size symbols, with the guards torch recorded on the way (the
conditions under which the traced control flow, hence the expression, holds). This module

1. translates the expression and guards into SymPy's own functions in symbols ``H``, ``W`` (``B``):
   torch's ``FloorDiv``/``CeilToInt``/``IntTrueDiv``/``PythonMod``/... become ``floor``/``ceiling``/``/``/
   ``Mod``, so ``sympy.sympify(str(expr))`` reads every result back; expressions and guards then go
   into the canonical form of :mod:`isaprof.symbolic.canonical` (exact rewrites for integer sizes:
   ``floor(W/8 - 1/8) + 1`` is ``ceiling(W/8)``, ``Eq(ceiling(W/64), 1)`` is ``W <= 64``), as do the
   final expression and conditions;
2. minimises the guards: a guard is dropped when, on the grid ``[1, R]^2`` of sizes, it is implied by the
   others, or when at a size where it alone fails a numeric run (same module, concrete size) gives the
   same count as the expression (a guard that only chose a kernel, or pinned an index list, does not
   change the cost). torch's implicit assumption ``H, W >= 2`` (sizes 0/1 are specialised) is a guard too;
3. simplifies the expression on the region the kept guards allow: a ``floor``/``ceiling``/``Mod``/
   ``Max``/``Min`` sub-expression is replaced by a constant or by its argument when the whole expression
   is unchanged at every grid size of the region (so ceilings survive only where padding needs them);
4. checks the result against numeric counts at sizes of the region, small and beyond the grid.

NB: steps 2 and 3 are decided on a finite grid and confirmed numerically beyond it, not proven for all
sizes; the expression itself is torch's, exact wherever the kept guards hold.
MACs = FLOPs / 2. Peak memory: :func:`derive_peak` (the storage tracker under the same symbolic input).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy
import torch
from torch import nn
from torch._dispatch.python import enable_python_dispatcher
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv, StatelessSymbolicContext
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from isaprof.measure import flops as _flops
from isaprof.measure.flops import UncountedRecorder
from isaprof.measure.memory import StorageTracker
from isaprof.measure.protocol import step
from isaprof.measure.traffic import TrafficCounter, count_bytes_moved
from isaprof.symbolic.canonical import canonical, conditions
from isaprof.symbolic.evaluate import Unsupported, evaluate

H, W, B = (sympy.Symbol(n, integer=True, positive=True) for n in ("H", "W", "B"))
GRID_MIN = 32  # the guard / simplification grid is [1, R]^2 with R = max(GRID_MIN, 2 * traced size)
BATCHES = (1, 2, 3)  # the batch values of the grid when B is a symbol
CACHE = 4096  # expressions a SizeGrid remembers the values of

Factory = Callable[[], nn.Module]


@dataclass(frozen=True)
class Derived:
    """A closed form in ``symbols``. ``expression`` exact where every ``valid_when`` holds; ``leading`` its
    fastest-growing term(s) (floors/ceilings dropped), ``exponent`` the growth in N = H W (on square maps,
    H = W, when ``square_maps``); ``checked`` the sizes where a numeric run confirmed it; ``dropped``: the
    guards torch recorded that did not change it."""

    expression: sympy.Expr
    valid_when: tuple[sympy.Basic, ...]
    leading: sympy.Expr | None
    exponent: sympy.Rational | None
    square_maps: bool
    symbols: tuple[str, ...]
    checked: tuple[tuple[int, ...], ...] = ()
    dropped: int = 0

    def to_json(self) -> dict[str, Any]:
        """``{"expression", "leading", "exponent", "valid_when"}``: SymPy strings, exponent a number."""
        exponent = None
        if self.exponent is not None:
            exponent = int(self.exponent) if self.exponent.is_integer else float(self.exponent)
        return {
            "expression": str(self.expression),
            "leading": None if self.leading is None else str(self.leading),
            "exponent": exponent,
            "valid_when": [str(g) for g in self.valid_when],
        }


@dataclass(frozen=True)
class Derivation:
    """Result of :func:`derive`: MACs and, when asked, bytes moved as closed forms."""

    macs: Derived
    bytes_moved: Derived | None
    symbols: tuple[str, ...]
    traced_at: tuple[int, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "macs": self.macs.to_json(),
            "bytes_moved": None if self.bytes_moved is None else self.bytes_moved.to_json(),
            "symbols": list(self.symbols),
        }


# ---- translation: torch's sympy functions -> SymPy's own ----


def _div(a: sympy.Expr, b: sympy.Expr) -> sympy.Expr:
    return a / b


_TORCH_FUNCS: dict[str, Callable[..., sympy.Expr]] = {
    "FloorDiv": lambda a, b: sympy.floor(a / b),
    "CeilDiv": lambda a, b: sympy.ceiling(a / b),
    "CleanDiv": _div,
    "IntTrueDiv": _div,
    "FloatTrueDiv": _div,
    "CeilToInt": sympy.ceiling,
    "FloorToInt": sympy.floor,
    "TruncToInt": sympy.floor,  # sizes are positive: trunc = floor
    "TruncToFloat": sympy.floor,
    "RoundToInt": lambda a: sympy.floor(a + sympy.Rational(1, 2)),
    "PythonMod": sympy.Mod,
    "Mod": sympy.Mod,
    "ModularIndexing": lambda a, b, m: sympy.Mod(sympy.floor(a / b), m),
    "Max": sympy.Max,
    "Min": sympy.Min,
    "ToFloat": lambda a: a,
    "Identity": lambda a: a,
    "PowByNatural": sympy.Pow,
    "FloatPow": sympy.Pow,
}


class NotSymbolic(ValueError):
    """The module's cost cannot be had as a closed form (the one-line reason says which op stopped it)."""


def translate(
    expr: Any, names: dict[sympy.Symbol, sympy.Symbol], memo: dict[Any, sympy.Basic] | None = None
) -> sympy.Basic:
    """``expr`` (a torch SymPy expression in s0, s1, ...) in SymPy's own functions and our symbols.
    ``memo``: sub-expressions already translated (shared by the calls on one run's expressions, which
    repeat the same sizes)."""
    if isinstance(expr, (int, bool)):
        return sympy.sympify(expr)
    if isinstance(expr, sympy.Symbol):
        if expr not in names:
            raise NotSymbolic(f"size {expr} is data-dependent (not a function of the input size)")
        return names[expr]
    if not expr.args:
        return expr
    if memo is None:
        memo = {}
    elif expr in memo:
        return memo[expr]
    args = [translate(a, names, memo) for a in expr.args]
    kind = type(expr).__name__
    if kind in _TORCH_FUNCS and type(expr).__module__.startswith("torch"):
        out = _TORCH_FUNCS[kind](*args)
    elif type(expr).__module__.startswith("torch"):
        raise NotSymbolic(f"no SymPy equivalent of torch's {kind}")
    else:
        out = expr.func(*args)
    memo[expr] = out
    return out


# ---- the symbolic run ----


def _contiguous_view(x: torch.Tensor, size: Any) -> torch.Tensor:
    """``aten.view`` of a contiguous ``x``: the given sizes with contiguous strides (``-1`` as
    ``numel // the others``), the same tensor as ATen's view at every size where that view is valid.

    ATen's meta kernel (``_reshape_view_helper``) re-derives every split dimension from the others, so a
    window of 4 on a padded map becomes ``Hp // (Hp // 4)`` and each later size, guard and cost grows
    from it: a Swin block's symbolic run spent most of its time in SymPy on such sizes. A non-contiguous
    ``x`` goes to ATen's kernel."""
    if not x.is_contiguous():
        return torch.ops.aten.view.default(x, size)
    shape = list(size)
    free = [i for i, s in enumerate(shape) if isinstance(s, int) and s == -1]
    if free:
        known: Any = 1
        for i, s in enumerate(shape):
            if i != free[0]:
                known = known * s
        shape[free[0]] = x.numel() // known
    strides: list[Any] = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        strides[i] = strides[i + 1] * shape[i + 1]
    return torch.ops.aten.as_strided.default(x, shape, strides, x.storage_offset())


def _decompositions() -> dict[Any, Callable[..., Any]]:
    """Kernels the symbolic run uses instead of ATen's (below every counter: they see the original op)."""
    import torch._refs as refs

    return {
        torch.ops.aten.constant_pad_nd.default: refs.constant_pad_nd,  # a composite wanting concrete ints
        torch.ops.aten.view.default: _contiguous_view,
    }


_DECOMPOSE = _decompositions()


def _output_size(x: torch.Tensor, size: Any, scales: Any) -> tuple[list[Any], list[float | None]]:
    """``(output size, scales)`` of a resize of ``x`` by ``size`` or ``scales`` per spatial dim, as ATen's
    ``compute_output_size`` (aten/src/ATen/native/UpSample.cpp) has it: ``floor(size * scale)``,
    here on symbolic sizes (an integral scale stays an exact product)."""
    dims = x.dim() - 2
    if size is not None:
        return list(size), [None] * dims
    out: list[Any] = []
    for n, s in zip(x.shape[2:], scales, strict=True):
        out.append(n * int(s) if float(s).is_integer() else torch.sym_int(n * s))
    return out, list(scales)


_LINEAR = ("upsample_linear1d", "upsample_bilinear2d", "upsample_trilinear3d", "upsample_bicubic2d",
           "_upsample_bilinear2d_aa", "_upsample_bicubic2d_aa")  # fmt: skip
_NEAREST = ("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "_upsample_nearest_exact1d",
            "_upsample_nearest_exact2d", "_upsample_nearest_exact3d")  # fmt: skip


def _resize(name: str, kernel: Any, original: Callable[..., Any]) -> Callable[..., Any]:
    """``torch._C._nn.<name>`` taking the ``.vec`` arguments (an output size or scale factors) on symbolic
    sizes: the output size computed here, then the kernel overload that takes it; any other call form
    goes to ``original``."""
    linear = name in _LINEAR

    def run(x: Any, *args: Any, **kwargs: Any) -> Any:
        n = 3 if linear else 2  # (size, [align_corners,] scale_factors)
        if kwargs or len(args) != n or not isinstance(x, torch.Tensor):
            return original(x, *args, **kwargs)
        size, scales = args[0], args[-1]
        if not (size is None or scales is None) or isinstance(scales, float):
            return original(x, *args, **kwargs)
        osize, sc = _output_size(x, size, scales)
        return kernel(x, osize, args[1], *sc) if linear else kernel(x, osize, *sc)

    run.__name__ = name
    return run


@contextlib.contextmanager
def _symbolic_resizes() -> Iterator[None]:
    """``F.interpolate`` on symbolic sizes. It calls ``torch._C._nn.upsample_*`` with an output size or
    scale factors (the ``.vec`` overloads), whose C++ composite wants concrete ints; inside this context
    those functions compute the output size on the symbolic sizes and call the kernel overload that takes
    it (the op a numeric run dispatches too, so counts, bytes and peaks are the real kernel's). Torch's
    Python dispatcher would decompose the kernel itself into index arithmetic instead."""
    saved: dict[str, Any] = {}
    try:
        for name in _LINEAR + _NEAREST:
            original = getattr(torch._C._nn, name, None)
            kernel = getattr(torch.ops.aten, name, None)
            if original is None or kernel is None:
                continue
            saved[name] = original
            setattr(torch._C._nn, name, _resize(name, kernel.default, original))
        yield
    finally:
        for name, original in saved.items():
            setattr(torch._C._nn, name, original)


def _op_name(func: Any) -> str:
    name = getattr(func, "__name__", None) or str(func)
    module = getattr(func, "__module__", None) or "torch"
    return f"{module}.{name}"


class _Functions(TorchFunctionMode):
    """Names the torch function that raised before any aten op of its own ran (a C++ composite that wants
    concrete ints) as the culprit of :class:`_LastOp`."""

    def __init__(self, ops: _LastOp) -> None:
        super().__init__()
        self.ops = ops

    def __torch_function__(self, func, types, args=(), kwargs=None):
        seen = self.ops.count
        try:
            return func(*args, **(kwargs or {}))
        except Exception:
            if self.ops.culprit is None or self.ops.count == seen:  # nothing of its own ran: this one
                self.ops.culprit = _op_name(func)
            raise


class _LastOp(TorchDispatchMode):
    """Remembers the aten op that raised (``culprit``, to name the op that stopped a symbolic run), the
    number of ops run, and the first op whose output has a data-dependent size."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.culprit: str | None = None
        self.data_dependent: str | None = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        self.culprit = None  # a failure caught by the module itself does not count
        name = f"aten.{func.overloadpacket.__name__}"
        kernel = _DECOMPOSE.get(func, func)  # a composite that wants concrete ints: its Python reference
        try:
            try:
                out = kernel(*args, **(kwargs or {}))
            except RuntimeError as e:
                if "expected to contain only concrete integers" not in str(e):
                    raise
                with enable_python_dispatcher():  # a meta kernel calling a C++ composite: the Python one
                    out = kernel(*args, **(kwargs or {}))
        except Exception:
            if self.culprit is None:
                self.culprit = name
            raise
        if self.data_dependent is None:
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor) and any(
                    isinstance(s, torch.SymInt) and s.node.expr.free_symbols
                    and any(str(x).startswith("u") for x in s.node.expr.free_symbols)
                    for s in t.shape
                ):  # fmt: skip
                    self.data_dependent = name
        return out


def _input(
    fake: FakeTensorMode, channels: int, size: tuple[int, int], batch: int, batch_symbol: bool
) -> torch.Tensor:
    """The fake input, its sizes named from a fixed source: torch then gives H and W the same symbols in
    every run, so SymPy's cache of what an earlier run built is reused."""
    from torch._dynamo.source import ConstantSource

    dyn, static = DimDynamic.DYNAMIC, DimDynamic.STATIC
    ctx = StatelessSymbolicContext(dynamic_sizes=[dyn if batch_symbol else static, static, dyn, dyn])
    x = torch.empty(batch, channels, *size)
    return fake.from_tensor(x, symbolic_context=ctx, source=ConstantSource("input"))


def symbolic_run(
    factory: Factory,
    channels: int,
    size: tuple[int, int],
    batch: int,
    mode: str,
    batch_symbol: bool,
    measure: Callable[[Callable[[], Any]], Any],
    layout: str = "map",
) -> tuple[Any, ShapeEnv, dict[sympy.Symbol, sympy.Symbol]]:
    """Run ``measure(step)`` once on a fake ``(batch, channels, *size)`` input whose H and W (and B, with
    ``batch_symbol``) are dynamic sizes; ``step`` is the ``mode`` protocol step of ``factory()``.

    Returns ``measure``'s result (expressions in torch's size symbols), the shape env holding the guards
    torch recorded, and the map from torch's symbols to ``H``, ``W`` (``B``) for :func:`translate`.
    ``layout="tokens"``: the module is fed ``(batch, H*W, channels)`` instead.
    ``NotSymbolic`` naming the op where the run stopped or whose output shape is data-dependent; a
    ``ValueError`` for a size torch does not keep symbolic (0 and 1 are specialised)."""
    if min(size) < 2:
        raise ValueError(
            f"size {size[0]}x{size[1]}: torch treats sizes 0 and 1 as constants, so H and W cannot be "
            "traced as symbols there; trace at a size of at least 2x2 (--size)"
        )
    with torch.device("meta"):
        module = factory()
    env = ShapeEnv(duck_shape=False)
    fake = FakeTensorMode(shape_env=env, allow_non_fake_inputs=True)
    with fake:
        module = module.to_empty(device="cpu")
    x = _input(fake, channels, size, batch, batch_symbol)
    names = {x.shape[2].node.expr: H, x.shape[3].node.expr: W}
    if batch_symbol:
        names[x.shape[0].node.expr] = B
    last = _LastOp()
    quiet = logging.getLogger("torch._subclasses.fake_tensor")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # it logs a traceback before raising what we report in one line
    try:
        with fake:
            if layout == "tokens":  # (B, H*W, C): N = H*W stays an expression in the symbols
                x = x.flatten(2).transpose(1, 2).contiguous()
            fn = step(module, x, mode)
            with last, _Functions(last), _symbolic_resizes():
                result = measure(fn)
    except NotSymbolic:
        raise
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - whatever stopped torch, named by the op it stopped at
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        culprit = last.culprit or "before any aten op"
        raise NotSymbolic(f"op {culprit} cannot run on symbolic sizes: {type(e).__name__}: {first}") from None
    finally:
        quiet.setLevel(level)
    if last.data_dependent is not None:
        raise NotSymbolic(f"op {last.data_dependent} has a data-dependent output shape")
    return result, env, names


def _expr(value: Any) -> Any:
    return value.node.expr if isinstance(value, torch.SymInt) else value


def count_flops_symbolic(fn: Callable[[], Any]) -> tuple[Any, tuple[str, ...]]:
    """FLOPs of ``fn()`` as torch's expression (never through ``int()``, which would specialise), and the
    matmul-like ops that have no formula."""
    counter = _flops.flop_counter_mode()  # isaprof's formulas (fused attention ops) as a custom mapping
    recorder = _flops.UncountedRecorder(counter.flop_registry)
    with recorder, counter:
        fn()
    total: Any = 0
    for v in counter.flop_counts.get("Global", {}).values():
        total = total + _expr(v)
    return total, tuple(sorted(recorder.calls))


class MomentTracker(StorageTracker):
    """A :class:`StorageTracker` that records (op, live bytes) after each op instead of comparing."""

    def __init__(self) -> None:
        super().__init__(round_to=1)
        self.moments: list[tuple[str, Any]] = []

    def _sample(self, func: Any) -> None:
        current = self.current
        self.moments.append((str(func.overloadpacket.__name__), current))


@dataclass(frozen=True)
class Measured:
    """What one run of a step measured at once: ``flops`` (an int, or torch's expression on symbolic
    sizes), ``uncounted`` (matmul-like ops without a FLOP formula), ``bytes_moved`` (None: not asked) and
    ``moments`` ((op, live bytes) after each op, the storage tracker's; None: not asked)."""

    flops: Any
    uncounted: tuple[str, ...]
    bytes_moved: Any = None
    moments: tuple[tuple[str, Any], ...] | None = None


def measure_all(fn: Callable[[], Any], bytes_moved: bool = True, moments: bool = True) -> Measured:
    """FLOPs, and optionally bytes moved and the tracker's moments, of ``fn()`` from one run: the modes
    stacked so each sees the ops it sees alone (the storage tracker and the traffic counter above the FLOP
    counter, whose decompositions only the uncounted-op recorder below it sees)."""
    counter = _flops.flop_counter_mode()
    recorder = UncountedRecorder(counter.flop_registry)
    traffic = TrafficCounter() if bytes_moved else None
    tracker = MomentTracker() if moments else None
    with contextlib.ExitStack() as stack:
        for m in (recorder, counter, traffic, tracker):  # the last entered sees each op first
            if m is not None:
                stack.enter_context(m)
        out = fn()
    del out  # the output is counted while it lives, like track_peak's
    total: Any = 0
    for v in counter.flop_counts.get("Global", {}).values():
        total = total + _expr(v)
    return Measured(
        total,
        tuple(sorted(recorder.calls)),
        None if traffic is None else _expr(traffic.result().total),
        None if tracker is None else tuple((op, _expr(v)) for op, v in tracker.moments),
    )


def recorded_guards(
    env: ShapeEnv, names: dict[sympy.Symbol, sympy.Symbol], memo: dict[Any, sympy.Basic] | None = None
) -> list[sympy.Basic]:
    """The guards torch recorded in ``env`` during :func:`symbolic_run`, translated (:func:`translate`,
    sharing ``memo``) and put in canonical form (:func:`isaprof.symbolic.canonical.conditions`), without
    duplicates, constants, and guards on data-dependent sizes."""
    found, seen = [], set()
    memo = {} if memo is None else memo
    for g in env.guards:
        try:
            t = translate(g.expr, names, memo)
        except NotSymbolic:
            continue
        if t in (sympy.true, sympy.false) or str(t) in seen:
            continue
        seen.add(str(t))
        found.append(t)
    return conditions(found)


# ---- numeric ground truth ----


@contextlib.contextmanager
def _fake_step(
    factory: Factory, channels: int, size: tuple[int, int], batch: int, mode: str, layout: str
) -> Iterator[Callable[[], Any]]:
    """One protocol step of a fresh module at a concrete size, on fake tensors: built on meta, placed
    empty, its (B, C, H, W) input (``layout="tokens"``: (B, H*W, C)) fake; the fake mode stays active
    while the caller runs it."""
    with torch.device("meta"):
        module = factory()
    with FakeTensorMode(allow_non_fake_inputs=True):
        module = module.to_empty(device="cpu")
        tokens = (batch, size[0] * size[1], channels)
        x = torch.empty(tokens if layout == "tokens" else (batch, channels, *size))  # fake
        yield step(module, x, mode)


def numeric_count(
    factory: Factory,
    channels: int,
    size: tuple[int, int],
    batch: int,
    mode: str,
    what: str = "macs",
    layout: str = "map",
) -> int:
    """MACs (``what="macs"``), bytes moved (``"bytes_moved"``) or peak bytes (``"peak_bytes"``) of one
    protocol step at a concrete size, on fake (meta) tensors (``layout="tokens"``: a (B, H*W, C) input)."""
    from isaprof.measure.memory import track_peak

    with _fake_step(factory, channels, size, batch, mode, layout) as fn:
        if what == "macs":
            return _flops.count_flops(fn).flops // 2
        if what == "peak_bytes":
            return track_peak(fn).peak
        return int(count_bytes_moved(fn).total)


def numeric_counts(
    factory: Factory, channels: int, size: tuple[int, int], batch: int, mode: str, layout: str = "map"
) -> dict[str, int]:
    """:func:`numeric_count`'s three counts (``"macs"``, ``"bytes_moved"``, ``"peak_bytes"``) from one run
    on fake tensors, the counters stacked as in :func:`measure_all`."""
    with _fake_step(factory, channels, size, batch, mode, layout) as fn:
        counter, traffic, tracker = _flops.flop_counter_mode(), TrafficCounter(), StorageTracker()
        with counter, traffic, tracker:
            out = fn()
        peak = tracker.result().peak
        del out
    return {"macs": int(counter.get_total_flops()) // 2, "bytes_moved": int(traffic.result().total),
            "peak_bytes": peak}  # fmt: skip


class Truth:
    """Numeric counts at concrete points of ``symbols`` (:func:`numeric_counts`, all three from one run,
    cached): ``truth.of(what)`` is the ``point -> count`` a :func:`closed_form` checks against; None
    where the module rejects the size (outside its domain)."""

    def __init__(
        self,
        factory: Factory,
        channels: int,
        batch: int,
        mode: str,
        layout: str,
        symbols: tuple[sympy.Symbol, ...],
    ) -> None:
        self.factory, self.channels, self.batch, self.mode, self.layout = (
            factory,
            channels,
            batch,
            mode,
            layout,
        )
        self.symbols = symbols
        self.cache: dict[tuple[int, ...], dict[str, int] | None] = {}

    def counts(self, point: tuple[int, ...]) -> dict[str, int] | None:
        """The three counts at ``point`` (None outside the module's domain)."""
        if point not in self.cache:
            hw, b = _at(point, self.symbols)
            try:
                self.cache[point] = numeric_counts(
                    self.factory, self.channels, hw, b or self.batch, self.mode, self.layout
                )
            except Exception:  # noqa: BLE001 - the module rejects this size: outside its domain
                self.cache[point] = None
        return self.cache[point]

    def of(self, what: str) -> Callable[[tuple[int, ...]], int | None]:
        """``point -> count`` of ``what`` (``"macs"``, ``"bytes_moved"`` or ``"peak_bytes"``)."""

        def truth(point: tuple[int, ...]) -> int | None:
            found = self.counts(point)
            return None if found is None else found[what]

        return truth


# ---- grid evaluation ----


class SizeGrid:
    """Integer sizes (H, W[, B]) as numpy arrays, and vectorised evaluation of expressions on them.

    ``symbols`` orders the axes; H and W run over ``[1, top]``, B over :data:`BATCHES`. ``values[k]`` holds
    every point's value of ``symbols[k]`` (one entry per point of the grid, in ``meshgrid`` order)."""

    def __init__(self, symbols: tuple[sympy.Symbol, ...], top: int) -> None:
        axes = [np.arange(1, top + 1) if s is not B else np.array(BATCHES) for s in symbols]
        mesh = np.meshgrid(*axes, indexing="ij")
        self.symbols = symbols
        self.values = [m.ravel().astype(np.int64) for m in mesh]
        self._cache: dict[sympy.Basic, np.ndarray] = {}

    def eval(self, expr: sympy.Basic) -> np.ndarray:
        """``expr`` at every point (float64; a relation gives booleans), read-only; exact
        (:mod:`isaprof.symbolic.evaluate`) where it can be, else through ``lambdify``; remembered."""
        found = self._cache.get(expr)
        if found is None:
            found = np.broadcast_to(self._eval(expr), self.values[0].shape)
            found.flags.writeable = False
            if len(self._cache) >= CACHE:
                self._cache.clear()
            self._cache[expr] = found
        return found

    def eval_replaced(self, expr: sympy.Basic, replace: dict[sympy.Basic, sympy.Basic]) -> np.ndarray | None:
        """The values of ``expr.xreplace(replace)`` without building it; None where the exact evaluator
        does not apply (:mod:`isaprof.symbolic.evaluate`)."""
        try:
            return evaluate(expr, self.symbols, self.values, replace)
        except Unsupported:
            return None

    def _eval(self, expr: sympy.Basic) -> np.ndarray:
        if expr is sympy.true or expr is sympy.false:
            return np.full(self.values[0].shape, bool(expr))
        try:
            return evaluate(expr, self.symbols, self.values)
        except Unsupported:
            pass
        vmax, vmin = sympy.Function("vmax"), sympy.Function("vmin")
        e = expr.replace(sympy.Max, lambda *a: vmax(*a)).replace(sympy.Min, lambda *a: vmin(*a))
        mods = {
            "vmax": lambda *a: functools.reduce(np.maximum, a),
            "vmin": lambda *a: functools.reduce(np.minimum, a),
        }
        fn = sympy.lambdify(self.symbols, e, modules=[mods, "numpy"])
        with np.errstate(all="ignore"):
            out = fn(*[v.astype(np.float64) for v in self.values])
        return np.asarray(out)

    def point(self, i: int) -> tuple[int, ...]:
        """The sizes of point ``i``, in the order of ``symbols``."""
        return tuple(int(v[i]) for v in self.values)


def holds(guards: Iterable[sympy.Basic], values: dict[sympy.Symbol, int]) -> bool | None:
    """Whether every one of ``guards`` holds at ``values``; None where one cannot be evaluated there (a
    ``Mod`` or division by a size expression that is zero at that point): such a point is skipped."""
    try:
        results = [g.subs(values) for g in guards]
    except (ZeroDivisionError, TypeError, ValueError):
        return None
    if any(r not in (sympy.true, sympy.false) and not isinstance(r, bool) for r in results):
        return None  # nan, zoo or an unevaluated relation
    return all(bool(r) for r in results)


def _at(point: tuple[int, ...], symbols: tuple[sympy.Symbol, ...]) -> tuple[tuple[int, int], int]:
    vals = dict(zip(symbols, point, strict=True))
    return (vals[H], vals[W]), vals.get(B, 0)


# ---- guards and simplification ----


def _minimise(
    expr: sympy.Expr,
    guards: list[sympy.Basic],
    grid: SizeGrid,
    truth: Callable[[tuple[int, ...]], int | None],
) -> list[sympy.Basic]:
    """The guards that change ``expr`` (module docstring, step 2), by counterexample: for each guard, probe
    sizes allowed by the guards kept so far where it fails; a probe where the numeric count differs from
    ``expr`` is excluded by keeping the weakest guard (true on most of the grid) that fails there."""
    held = [grid.eval(g).astype(bool) for g in guards]
    weight = [int(h.sum()) for h in held]
    values = grid.eval(expr)
    region = np.ones(values.shape, dtype=bool)
    kept: list[int] = []
    cleared: set[int] = set()
    added = True
    while added:
        added = False
        for i in range(len(guards)):
            if i in kept or i in cleared:
                continue
            test = region & ~held[i]
            bad = None if not test.any() else next(
                (p for p in _probes(test, grid) if truth(grid.point(p)) != values[p]), None
            )  # fmt: skip
            if bad is None:
                cleared.add(i)
                continue
            j = max(
                (j for j in range(len(guards)) if j not in kept and not held[j][bad]), key=weight.__getitem__
            )
            kept.append(j)
            region &= held[j]
            added = True
    for i in sorted(kept, key=lambda i: -weight[i]):  # then drop what the others make unnecessary
        rest = np.ones(values.shape, dtype=bool)
        for j in kept:
            if j != i:
                rest &= held[j]
        test = rest & ~held[i]
        if not test.any() or all(truth(grid.point(p)) == values[p] for p in _probes(test, grid)):
            kept.remove(i)
    return [guards[i] for i in sorted(kept)]


def _relax(
    expr: sympy.Expr,
    kept: list[sympy.Basic],
    grid: SizeGrid,
    truth: Callable[[tuple[int, ...]], int | None],
) -> list[sympy.Basic]:
    """``kept`` with each guard relating two or more sizes (``W >= H``: Python's ``min(H, W)`` in the
    module's code compares them) replaced by the lower bounds on each size it implies with the others,
    where numeric runs at the sizes that wider region adds (:func:`_probes`) agree with ``expr``; then
    minimised again, so a bound the code does not need goes too. A guard the cost depends on stays."""
    values = grid.eval(expr)
    changed = False
    for g in [g for g in kept if len(g.free_symbols) >= 2]:
        if g not in kept:
            continue
        region = allowed_region(kept, grid)
        others = [k for k in kept if k is not g]
        wider = allowed_region(others, grid)
        bounds = []
        if region.any():
            for s, v in zip(grid.symbols, grid.values, strict=True):
                b = s >= int(v[region].min())
                if not np.all(grid.eval(b).astype(bool)[wider]):
                    bounds.append(b)
                    wider = wider & grid.eval(b).astype(bool)
        test = wider & ~region
        if test.any() and any(truth(grid.point(p)) != values[p] for p in _probes(test, grid)):
            continue
        kept, changed = others + bounds, True
    return _minimise(expr, kept, grid, truth) if changed else kept


def _probes(region: np.ndarray, grid: SizeGrid) -> list[int]:
    """Two sizes of ``region`` to test a guard at: the smallest (by H W) with every size >= 2 (torch's own
    assumption) where there is one, and one of median H W."""
    idx = np.flatnonzero(region)
    big = idx[np.all([v[idx] >= 2 for v in grid.values], axis=0)]
    idx = big if big.size else idx
    area = np.prod([v[idx] for v in grid.values], axis=0)
    order = np.argsort(area, kind="stable")
    return sorted({int(idx[order[0]]), int(idx[order[len(order) // 2]])})


def allowed_region(guards: Iterable[sympy.Basic], grid: SizeGrid) -> np.ndarray:
    """Boolean mask of the points of ``grid`` where every one of ``guards`` holds."""
    mask = np.ones(grid.values[0].shape, dtype=bool)
    for g in guards:
        mask &= grid.eval(g).astype(bool)
    return mask


def simplify_on(expr: sympy.Expr, region: np.ndarray, grid: SizeGrid) -> sympy.Expr:
    """Replace floor/ceiling/Mod/Max/Min sub-expressions by a constant or their argument where ``expr``
    stays the same on ``region`` (module docstring, step 3)."""
    kinds = (sympy.floor, sympy.ceiling, sympy.Mod, sympy.Max, sympy.Min)
    target = grid.eval(expr)[region]
    changed = True
    while changed:
        changed = False
        atoms = sorted((a for a in expr.atoms(*kinds)), key=lambda a: -sympy.count_ops(a))  # outermost first
        for atom in atoms:
            vals = grid.eval(atom)[region]
            candidates: list[sympy.Expr] = []
            if vals.size and np.all(vals == vals[0]):
                candidates.append(sympy.Integer(int(round(float(vals[0])))))
            if isinstance(atom, (sympy.floor, sympy.ceiling)):
                candidates.append(atom.args[0])
            elif isinstance(atom, (sympy.Max, sympy.Min)):
                candidates.extend(atom.args)
            shorter = []
            k = sympy.fraction(sympy.together(atom.args[0]))[1] if atom.args else 1
            if isinstance(atom, sympy.floor) and k.is_Integer and k > 1:  # floor(n/k) = ceiling((n-k+1)/k)
                shorter.append(sympy.ceiling(atom.args[0] - sympy.Rational(k - 1, k)))
            for c in candidates + shorter:
                if c not in shorter:  # rejected ones are never built: their values are had without
                    values = grid.eval_replaced(expr, {atom: c})
                    if values is not None and not np.array_equal(values[region], target):
                        continue
                new = sympy.expand(expr.xreplace({atom: c}))
                if c in shorter and sympy.count_ops(new) >= sympy.count_ops(expr):
                    continue
                if np.array_equal(grid.eval(new)[region], target):
                    expr, changed = new, True
                    break
            if changed:
                break
    return sympy.expand(expr)


def ceiling_form(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` with each ``Mod(k s, m)`` (``s`` a symbol, ``k = -1 mod m``: the padding ``-s % m``) written
    ``m ceiling(s / m) - s`` where that makes it shorter: ``1536 (H + Mod(3 H, 4)) (W + Mod(3 W, 4))``
    expanded becomes ``24576 ceiling(H/4) ceiling(W/4)``. An identity: equal at every size."""
    reps = {}
    for a in expr.atoms(sympy.Mod):
        p, m = a.args
        k, s = p.as_coeff_Mul()
        if m.is_Integer and m > 1 and s.is_Symbol and k.is_Integer and (k + 1) % m == 0:
            reps[a] = m * sympy.ceiling(s / m) - s
    if not reps:
        return expr
    new = sympy.expand(expr.xreplace(reps))
    return new if sympy.count_ops(new) < sympy.count_ops(expr) else expr


def _describe(guards: list[sympy.Basic], expr: sympy.Expr, grid: SizeGrid) -> list[sympy.Basic]:
    """Each kept guard in simpler words where an equivalent one (on the grid) is found: divisibility by the
    denominators inside floors/ceilings and the moduli of ``Mod``, lower bounds."""
    dens = sorted(
        {
            int(d)
            for a in itertools.chain(*(e.atoms(sympy.floor, sympy.ceiling) for e in [expr, *guards]))
            for d in [sympy.fraction(sympy.together(a.args[0]))[1]]
            if d.is_Integer and d > 1
        }
        | {
            int(a.args[1])
            for a in itertools.chain(*(e.atoms(sympy.Mod) for e in [expr, *guards]))
            if a.args[1].is_Integer and a.args[1] > 1
        }
    )  # fmt: skip
    out: list[sympy.Basic] = []
    for g in guards:
        mask = grid.eval(g).astype(bool)
        lib: list[sympy.Basic] = []
        for s in grid.symbols:
            lib += [sympy.Eq(sympy.Mod(s, d), 0) for d in dens]
            vals = grid.values[grid.symbols.index(s)]
            if mask.any():
                lib.append(s >= int(vals[mask].min()))
        if mask.any() and len(grid.symbols) >= 2:
            hw = grid.values[grid.symbols.index(H)] * grid.values[grid.symbols.index(W)]
            lib.append(H * W >= int(hw[mask].min()))
        implied = [c for c in lib if c not in (sympy.true,) and np.all(grid.eval(c).astype(bool)[mask])]
        both = np.ones_like(mask)
        for c in implied:
            both &= grid.eval(c).astype(bool)
        if implied and np.array_equal(both, mask):
            # keep only the implied conditions that are needed
            needed = list(implied)
            for c in list(needed):
                rest = np.ones_like(mask)
                for d in needed:
                    if d is not c:
                        rest &= grid.eval(d).astype(bool)
                if np.array_equal(rest, mask):
                    needed.remove(c)
            out += [c for c in needed if c != sympy.true]
        else:
            out.append(sympy.simplify(g))
    unique: list[sympy.Basic] = []
    for g in out:
        if g not in unique and g is not sympy.true:
            unique.append(g)
    return unique


def leading_term(expr: sympy.Expr) -> tuple[sympy.Expr | None, sympy.Rational | None, bool]:
    """(leading term(s), exponent in N = H W, whether that exponent holds on square maps only).

    Floors and ceilings are dropped (they change the cost by lower-order terms); ``B`` is a coefficient.
    """
    e = expr.replace(sympy.floor, lambda a: a).replace(sympy.ceiling, lambda a: a)
    if e.atoms(sympy.Mod, sympy.Max, sympy.Min):
        return None, None, False
    e = sympy.expand(e)
    try:
        poly = sympy.Poly(e, H, W)
    except sympy.PolynomialError:
        return None, None, False
    terms = poly.terms()
    if not terms:
        return sympy.Integer(0), sympy.Integer(0), False
    top = max(a + b for (a, b), _ in terms)
    lead = [(m, c) for m, c in terms if sum(m) == top]
    leading = sympy.Add(*(c * H**a * W**b for (a, b), c in lead))
    square = any(a != b for (a, b), _ in lead)
    return leading, sympy.Rational(top, 2), square


# ---- public entry points ----


def closed_form(
    raw: sympy.Expr,
    guards: list[sympy.Basic],
    symbols: tuple[sympy.Symbol, ...],
    size: tuple[int, int],
    truth: Callable[[tuple[int, ...]], int | None],
) -> Derived:
    """``raw`` (an expression in ``symbols``, traced at ``size``) reduced to a :class:`Derived`: its
    ``guards`` minimised, the expression simplified on the region they allow, the kept guards described
    in simpler words, its leading term, and the whole confirmed against ``truth`` (the numeric count at a
    point, None outside the module's domain) at up to five sizes (module docstring, steps 2 to 4).
    ``ValueError`` naming the first size where a numeric run disagrees."""
    grid = SizeGrid(symbols, max(GRID_MIN, 2 * max(size)))
    implicit = [H >= 2, W >= 2] + ([B >= 2] if B in symbols else [])  # torch specialises sizes 0 and 1
    candidates = [g for g in guards if g not in implicit] + implicit  # torch's own assumptions last
    kept = _minimise(raw, candidates, grid, truth)
    region = allowed_region(kept, grid)
    expr = simplify_on(sympy.expand(raw), region, grid) if region.any() else sympy.expand(raw)
    expr = sympy.expand(canonical(ceiling_form(expr)))
    kept = _minimise(expr, kept, grid, truth)  # the simpler expression may need fewer
    kept = _relax(expr, kept, grid, truth)
    valid = conditions(_describe(kept, expr, grid))
    leading, exponent, square = leading_term(expr)
    checked = _confirm(expr, valid, symbols, size, truth)
    return Derived(
        expr, tuple(valid), leading, exponent, square, tuple(str(s) for s in symbols), checked,
        len(candidates) - len(kept),
    )  # fmt: skip


def _confirm(
    expr: sympy.Expr,
    valid: list[sympy.Basic],
    symbols: tuple[sympy.Symbol, ...],
    size: tuple[int, int],
    truth: Callable[[tuple[int, ...]], int | None],
) -> tuple[tuple[int, ...], ...]:
    """Numeric runs at up to five sizes of the region (the traced one, small ones, beyond the grid, odd
    and even):
    ``ValueError`` naming the first size where the expression is wrong."""
    top = max(GRID_MIN, 2 * max(size))
    tries = [size, (3, 5), (7, 6), (top + 5, top + 3), (2 * top + 2, top + 9), (size[0] + 1, size[1] + 2)]
    tries += [(2 * size[0] - 1, 2 * size[1] - 3)]  # odd, just below twice a size that divisibility allows
    tries += [(size[0] * k, size[1] * j) for k, j in ((2, 3), (3, 1), (5, 2))]
    done: list[tuple[int, ...]] = []
    for h, w in tries:
        point = tuple({H: h, W: w, B: 2}[s] for s in symbols)
        subs = dict(zip(symbols, point, strict=True))
        if not holds(valid, subs) or point in done:
            continue
        try:
            got = expr.subs(subs)
        except (ZeroDivisionError, TypeError, ValueError):  # not defined at this point: skipped
            continue
        want = truth(point)
        if want is None or got != want:
            raise ValueError(f"derived {expr} is {got} at {point} where a numeric run counts {want}")
        done.append(point)
        if len(done) == 5:
            break
    return tuple(done)


class Traced:
    """What one symbolic run measured (:class:`Measured`, in torch's expressions), with its shape env and
    symbol map; translates them (:func:`translate`, sharing one memo) and holds the recorded guards,
    translated once for every cost derived from the run."""

    def __init__(self, measured: Measured, env: ShapeEnv, names: dict[sympy.Symbol, sympy.Symbol]) -> None:
        self.measured, self.env, self.names = measured, env, names
        self.memo: dict[Any, sympy.Basic] = {}
        self._guards: list[sympy.Basic] | None = None

    def translate(self, expr: Any) -> sympy.Basic:
        """``expr`` in SymPy's functions and H, W (B) (:func:`translate`), in canonical form
        (:func:`isaprof.symbolic.canonical.canonical`)."""
        return canonical(translate(expr, self.names, self.memo))

    def guards(self) -> list[sympy.Basic]:
        """:func:`recorded_guards` of the run (translated on the first call)."""
        if self._guards is None:
            self._guards = recorded_guards(self.env, self.names, self.memo)
        return list(self._guards)


def trace_costs(
    factory: Factory,
    channels: int,
    size: tuple[int, int],
    *,
    batch: int = 1,
    mode: str = "inference",
    batch_symbol: bool = False,
    layout: str = "map",
    bytes_moved: bool = True,
    moments: bool = False,
) -> Traced:
    """One :func:`symbolic_run` measuring FLOPs and, as asked, bytes moved and the tracker's moments
    (:func:`measure_all`)."""

    def measure(fn: Callable[[], Any]) -> Measured:
        return measure_all(fn, bytes_moved, moments)

    return Traced(*symbolic_run(factory, channels, size, batch, mode, batch_symbol, measure, layout))


def derive(
    factory: Factory,
    channels: int,
    size: tuple[int, int] = (64, 64),
    *,
    batch: int = 1,
    mode: str = "inference",
    batch_symbol: bool = False,
    bytes_moved: bool = True,
    layout: str = "map",
) -> Derivation:
    """MACs (and, with ``bytes_moved``, the bytes its ops move: :mod:`isaprof.measure.traffic`) of one
    protocol step of ``factory()`` as closed forms in H, W (and B); traced at ``size`` (a size the module
    accepts). ``layout="tokens"``: the module takes ``(B, H*W, C)``. One symbolic run measures both.

    ``NotSymbolic`` (a ``ValueError``) with one line naming the op that stopped the symbolic run.
    """
    symbols = (B, H, W) if batch_symbol else (H, W)
    truth = Truth(factory, channels, batch, mode, layout, symbols)

    def run(with_bytes: bool) -> Traced:
        return trace_costs(
            factory, channels, size, batch=batch, mode=mode, batch_symbol=batch_symbol, layout=layout,
            bytes_moved=with_bytes,
        )  # fmt: skip

    try:
        return derivation(run(bytes_moved), size, truth)
    except NotSymbolic:
        if not bytes_moved:
            raise
    # the run stopped or the MACs failed: the MACs alone, then the bytes alone, each failing as it does alone
    d = derivation(run(False), size, truth)
    try:
        traced = run(True)
    except ValueError as e:
        return dataclasses.replace(d, notes=(*d.notes, f"bytes moved: {e}"))
    notes: list[str] = []
    moved = _bytes_moved(traced, size, truth, notes)
    return dataclasses.replace(d, bytes_moved=moved, notes=(*d.notes, *notes))


def derivation(traced: Traced, size: tuple[int, int], truth: Truth) -> Derivation:
    """The :class:`Derivation` of what one symbolic run measured (:func:`trace_costs`), traced at ``size``
    and checked against ``truth``. ``NotSymbolic`` where an op has no FLOP formula or SymPy cannot reduce
    the MACs."""
    symbols, measured = truth.symbols, traced.measured
    if measured.uncounted:
        op = measured.uncounted[0]
        op = op if op.startswith("aten.") else f"aten.{op}"
        raise NotSymbolic(f"op {op} multiplies matrices but has no FLOP formula")
    macs_raw = sympy.expand(traced.translate(measured.flops) / 2)
    try:
        macs = closed_form(macs_raw, traced.guards(), symbols, size, truth.of("macs"))
    except (NotImplementedError, TypeError, ZeroDivisionError, RecursionError) as e:
        raise NotSymbolic(f"SymPy could not reduce the MAC expression: {type(e).__name__}: {e}") from None
    notes: list[str] = []
    moved = None
    if measured.bytes_moved is not None:
        moved = _bytes_moved(traced, size, truth, notes)
    return Derivation(macs, moved, tuple(str(s) for s in symbols), size, tuple(notes))


def _bytes_moved(traced: Traced, size: tuple[int, int], truth: Truth, notes: list[str]) -> Derived | None:
    """The bytes moved of ``traced`` as a :class:`Derived`, or None with the reason appended to ``notes``."""
    try:
        raw = sympy.expand(traced.translate(traced.measured.bytes_moved))
        if not raw.free_symbols:
            notes.append("bytes moved: the counter turned the sizes into ints (specialised); no closed form")
            return None
        return closed_form(raw, traced.guards(), truth.symbols, size, truth.of("bytes_moved"))
    except ValueError as e:
        notes.append(f"bytes moved: {e}")
    except (NotImplementedError, TypeError, ZeroDivisionError, RecursionError) as e:
        notes.append(f"bytes moved: SymPy could not reduce the expression: {type(e).__name__}: {e}")
    return None
