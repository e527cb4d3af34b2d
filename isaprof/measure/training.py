"""One steady-state training iteration of any module, in absolute bytes: what ``mode="step"`` runs.

Resident before the step (allocated once, alive across iterations): parameters, buffers, the gradients
where the optimizer keeps them (``zero_grad(set_to_none=False)``), the optimizer's state (SGD with
momentum: one buffer per parameter; AdamW: two, and a step count), data-parallel gradient buckets (DDP's
flat per-bucket copies of the gradients) and the batch with its int64 labels. The step:
``zero_grad`` (today's idiom: first, freeing the gradients unless kept), forward, loss, backward,
optimizer update.

The loss contract (:func:`loss_of`): a forward returning a scalar is the loss; a dict with ``"loss*"``
keys has them summed (mmseg's ``_parse_losses``); logits ``(B, K, h, w)``, or a dict / tuple of them
weighted by ``module.loss_weights`` (1 where it names none), get cross-entropy against ``(B, H, W)``
int64 labels at the input size: logits of another size resized bilinearly (``align_corners=False``) as
mmseg's decode heads do, ``log_softmax`` then ``nll_loss`` (what ``F.cross_entropy`` runs) with
``ignore_index=255``.

Every figure that changes the peak is a setting (:class:`StepOptions`); default: today's PyTorch.
:func:`mmseg_2020` bundles the settings of mmsegmentation's published training runs, each with its
source. No number here is fitted to a published figure.

Measured by :func:`measure_step`: one pass through :class:`~isaprof.measure.cuda_memory.CudaAllocatorModel`
(two iterations from an empty cache: the first creates gradients and optimizer state, as a real run's
first iteration does; ``max_memory_allocated`` is the maximum over both) and one more iteration under
:class:`PhaseTracker` (exact tensor bytes, which phase and op reach the peak, who allocated what is live
there). Works on real CPU tensors and on fake tensors alike (fake CUDA tensors abort under autograd on a
CPU-only torch: the CUDA figure is the allocator's rules replayed on the CPU step's allocation events).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from isaprof.config import OPTIMIZERS, RECIPES
from isaprof.measure.cuda_memory import CUBLAS_WORKSPACE_DEFAULT, CudaAllocatorModel, module_to_order
from isaprof.measure.memory import StorageTracker
from isaprof.measure.scratch import op_name

IGNORE_INDEX = 255  # mmseg's and torchvision's ignore label
MIB = 2**20


@dataclass(frozen=True)
class StepOptions:
    """The settings of one training step that change its memory (resolved; see :func:`resolve`).

    ``optimizer``: ``sgd`` (momentum 0.9, weight decay 5e-4: one buffer per parameter), ``adamw`` (two
    buffers and a 0-d step count per parameter) or ``none``. ``keep_grads``: gradients stay allocated
    between steps (``zero_grad(set_to_none=False)``). ``foreach``: the optimizer's multi-tensor update
    (with weight decay it forms the decayed gradients of all parameters at once). ``bucket_mib``: DDP's
    gradient buckets (0: no data parallelism); ``first_bucket_mib`` the first one's cap.
    ``softmax_saves_input``: ``softmax`` / ``log_softmax`` keep their input alive for backward besides
    their output. ``cublas_workspace``: bytes the first GEMM takes from the caching allocator.
    """

    optimizer: str = "sgd"
    keep_grads: bool = False
    foreach: bool = True
    bucket_mib: float = 0.0
    first_bucket_mib: float = 1.0
    softmax_saves_input: bool = False
    cublas_workspace: int = CUBLAS_WORKSPACE_DEFAULT
    recipe: str | None = None

    def describe(self) -> str:
        """One line naming each setting."""
        ddp = f"DDP buckets {self.bucket_mib:g} MiB" if self.bucket_mib else "no DDP"
        return (
            f"{self.recipe or 'today'}: optimizer {self.optimizer}{' foreach' if self.foreach else ''}, "
            f"grads {'kept' if self.keep_grads else 'freed'} between steps, {ddp}, softmax saves "
            f"{'input and output' if self.softmax_saves_input else 'output'}, cuBLAS workspace "
            f"{self.cublas_workspace / MIB:g} MiB"
        )


def today() -> StepOptions:
    """Today's PyTorch (2.x) defaults.

    * ``Optimizer.zero_grad`` sets gradients to None (``set_to_none=True`` default since torch 2.0), so they
      are freed before the forward.
    * On CUDA, ``torch.optim`` picks the foreach implementation (``_default_to_fused_or_foreach``).
    * ``softmax`` / ``log_softmax`` save only their output for backward (since PyTorch pull request 65242,
      which fixed issue 64000, autumn 2021).
    * The cuBLAS workspace comes from the caching allocator (``CublasHandlePool.cpp``), 4096 KiB x 2 +
      16 KiB x 8 by default (32 MiB on Hopper; see :mod:`isaprof.measure.cuda_memory`).
    * No data parallelism (one process).
    """
    return StepOptions()


def mmseg_2020() -> StepOptions:
    """The settings of mmsegmentation's model-zoo training runs (2020-2021, torch 1.x, mmcv 1.x).

    * ``optimizer = dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0005)``
      (mmseg ``configs/_base_/schedules/schedule_40k.py``): one momentum buffer per parameter.
    * Gradients kept: mmcv 1.x's ``OptimizerHook.after_train_iter`` calls ``runner.optimizer.zero_grad()``,
      whose torch 1.x default was ``set_to_none=False`` (zeroing in place; the default changed in torch 2.0).
    * No foreach: torch 1.x's ``torch.optim.SGD.step`` updated parameter by parameter (the multi-tensor
      path became the CUDA default in torch 2.0).
    * DDP with 25 MiB buckets: mmseg's ``train_segmentor`` wraps the model in mmcv's
      ``MMDistributedDataParallel`` (``torch.nn.parallel.DistributedDataParallel``; ``bucket_cap_mb=25``
      default, first bucket 1 MiB, ``dist._DEFAULT_FIRST_BUCKET_BYTES``), ``gradient_as_bucket_view=False``:
      the buckets are a flat copy of all gradients, allocated once.
    * ``softmax`` / ``log_softmax`` keep their input: before PyTorch pull request 65242 (issue 64000, autumn
      2021) ``derivatives.yaml`` computed their backward as ``_softmax_backward_data(grad, result, dim,
      self)``, so autograd saved ``self`` (the input) as well as the result.
    * No cuBLAS workspace through the caching allocator: torch 1.x's cuBLAS handles used cuBLAS's own
      workspace (``CublasHandlePool.cpp`` started taking it from the caching allocator after these runs).
    """
    return StepOptions(
        optimizer="sgd",
        keep_grads=True,
        foreach=False,
        bucket_mib=25.0,
        first_bucket_mib=1.0,
        softmax_saves_input=True,
        cublas_workspace=0,
        recipe="mmseg-2020",
    )


PRESETS: dict[str, Callable[[], StepOptions]] = {"mmseg-2020": mmseg_2020}
assert tuple(PRESETS) == RECIPES


def resolve(recipe: str | None = None, **given: Any) -> StepOptions:
    """The step's settings: ``recipe``'s (or :func:`today`'s) with each setting in ``given`` (not None)
    replacing it. ``ValueError`` for an unknown recipe, optimizer or setting."""
    if recipe is not None and recipe not in PRESETS:
        raise ValueError(f"unknown recipe {recipe!r}; allowed: {', '.join(PRESETS)}")
    base = PRESETS[recipe]() if recipe is not None else today()
    names = {f.name for f in dataclasses.fields(StepOptions)}
    unknown = sorted(set(given) - names)
    if unknown:
        raise ValueError(f"unknown step setting(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
    options = dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})
    if options.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {options.optimizer!r}; allowed: {', '.join(OPTIMIZERS)}")
    return options


# -- softmax keeping its input (torch 1.x's saved tensors) ---------------------------------------------
class _SoftmaxKeepingInput(torch.autograd.Function):
    """``softmax`` / ``log_softmax`` over ``dim`` saving input and output, as torch < PR 65242 did."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, dim: int, log: bool) -> Tensor:  # type: ignore[override]
        y = torch._log_softmax(x, dim, False) if log else torch._softmax(x, dim, False)
        ctx.save_for_backward(x, y)
        ctx.dim, ctx.log = dim, log
        return y

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        x, y = ctx.saved_tensors
        aten = torch.ops.aten
        fn = aten._log_softmax_backward_data if ctx.log else aten._softmax_backward_data
        return fn(grad, y, ctx.dim, x.dtype), None, None


_SOFTMAX = {torch.softmax, F.softmax, Tensor.softmax}
_LOG_SOFTMAX = {torch.log_softmax, F.log_softmax, Tensor.log_softmax}


class SoftmaxSavesInput(TorchFunctionMode):
    """While active, ``softmax`` / ``log_softmax`` of a tensor that requires grad save their input too
    (an explicit ``dtype`` or a missing ``dim`` falls through to today's op)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _SOFTMAX or func in _LOG_SOFTMAX:
            x = args[0]
            dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
            dtype = kwargs.get("dtype", args[2] if len(args) > 2 and func is not F.softmax else None)
            if func in (F.softmax, F.log_softmax):
                dtype = kwargs.get("dtype", args[3] if len(args) > 3 else None)
            if isinstance(x, Tensor) and x.requires_grad and torch.is_grad_enabled():
                if isinstance(dim, int) and dtype is None:
                    return _SoftmaxKeepingInput.apply(x, dim, func in _LOG_SOFTMAX)
        return func(*args, **kwargs)


# -- the loss contract ----------------------------------------------------------------------------------
def cross_entropy(logits: Tensor, labels: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Mean cross-entropy of ``(B, K, h, w)`` logits against ``(B, H, W)`` labels: logits of another size
    resized bilinearly to (H, W) first (``align_corners=False``), then ``log_softmax`` and ``nll_loss``
    (``F.cross_entropy``'s two ops, spelled out so that :class:`SoftmaxSavesInput` sees the softmax)."""
    if logits.dim() != 4:
        raise ValueError(f"step mode: logits must be (B, K, h, w), got shape {tuple(logits.shape)}")
    if tuple(logits.shape[2:]) != tuple(labels.shape[1:]):
        logits = F.interpolate(logits, size=tuple(labels.shape[1:]), mode="bilinear", align_corners=False)
    return F.nll_loss(F.log_softmax(logits, dim=1), labels, ignore_index=ignore_index)


def is_loss(out: Any) -> bool:
    """Whether a forward's output is already a loss: a scalar tensor or a dict with ``"loss*"`` keys."""
    if isinstance(out, Tensor):
        return out.dim() == 0
    return isinstance(out, Mapping) and any(str(k).startswith("loss") for k in out)


def loss_of(module: nn.Module, out: Any, labels: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """The scalar loss of a forward's output (the module docstring's contract); ``ValueError`` otherwise."""
    if isinstance(out, Tensor) and out.dim() == 0:
        return out
    if isinstance(out, Mapping) and any(str(k).startswith("loss") for k in out):
        parts = [v for k, v in out.items() if str(k).startswith("loss")]
        flat = [t for v in parts for t in (v if isinstance(v, (list, tuple)) else [v])]
        if not all(isinstance(t, Tensor) for t in flat):
            raise ValueError("step mode: every 'loss*' entry of the output must be a tensor")
        return sum(
            (t.mean() if t.dim() else t for t in flat[1:]), flat[0].mean() if flat[0].dim() else flat[0]
        )
    if isinstance(out, Tensor):
        return cross_entropy(out, labels, ignore_index)
    weights: Mapping[str, float] = getattr(module, "loss_weights", None) or {}
    if isinstance(out, Mapping):
        items = [(weights.get(k, 1.0), v) for k, v in out.items()]
    elif isinstance(out, (tuple, list)):
        items = [(1.0, v) for v in out]
    else:
        raise ValueError(
            f"step mode needs logits (B, K, h, w), a dict/tuple of them or a loss; got {type(out).__name__}"
        )
    if not items or not all(isinstance(v, Tensor) for _, v in items):
        raise ValueError("step mode: every output of the module must be a tensor")
    total: Tensor | None = None
    for w, logits in items:
        term = cross_entropy(logits, labels, ignore_index)
        term = term if w == 1.0 else w * term
        total = term if total is None else total + term
    assert total is not None
    return total


# -- the step -------------------------------------------------------------------------------------------
def bucket_sizes(params: Iterable[Tensor], cap_mib: float, first_mib: float = 1.0) -> list[int]:
    """Bytes of DDP's gradient buckets: parameters in reverse order (DDP's), a bucket closed once it
    reaches its cap (the first ``first_mib``, then ``cap_mib``), one per dtype at a time
    (``dist._compute_bucket_assignment_by_size``). Empty for ``cap_mib == 0``."""
    if not cap_mib:
        return []
    caps = [int(first_mib * MIB), int(cap_mib * MIB)]
    sizes: list[int] = []
    open_: dict[Any, int] = {}
    limit = caps[0]
    for p in reversed(list(params)):
        key = p.dtype
        open_[key] = open_.get(key, 0) + p.numel() * p.element_size()
        if open_[key] >= limit:
            sizes.append(open_.pop(key))
            limit = caps[1]
    sizes += [v for v in open_.values() if v]
    return sizes


def make_optimizer(module: nn.Module, options: StepOptions) -> torch.optim.Optimizer | None:
    """The configured optimizer over the trainable parameters (None for ``none``)."""
    params = [p for p in module.parameters() if p.requires_grad]
    if options.optimizer == "none" or not params:
        return None
    if options.optimizer == "sgd":
        return torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4, foreach=options.foreach)
    return torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, foreach=options.foreach)


class TrainingStep:
    """One training iteration of ``module`` on the batch ``x`` as a callable (returns the detached loss).

    Built once: the module in training mode, int64 labels ``(B, H, W)`` (random classes on real tensors
    once the logits' classes are known), the DDP buckets and the optimizer (its state appears at the first
    call, as in a real run). ``phase``: set to ``zero_grad``, ``forward``, ``loss``, ``backward``,
    ``optimizer`` as the step goes (a tracker reads it); ``on_phase`` is called with each.
    """

    def __init__(self, module: nn.Module, x: Tensor, options: StepOptions) -> None:
        self.module, self.x, self.options = module.train(), x, options
        self.x.requires_grad_(False)
        b, _, h, w = x.shape
        self.labels = torch.zeros((b, h, w), dtype=torch.int64, device=x.device)
        self.buckets = [
            torch.empty(n // p_size, dtype=dtype, device=x.device)
            for n, dtype, p_size in self._bucket_specs()
        ]
        self.optimizer = make_optimizer(module, options)
        self.phase = "idle"
        self.on_phase: Callable[[str], None] | None = None
        self._labelled = x.is_meta or _is_fake(x)

    def _bucket_specs(self) -> list[tuple[int, torch.dtype, int]]:
        params = [p for p in self.module.parameters() if p.requires_grad]
        if not params:
            return []
        dtype = params[0].dtype
        elem = params[0].element_size()
        return [
            (n, dtype, elem)
            for n in bucket_sizes(params, self.options.bucket_mib, self.options.first_bucket_mib)
        ]

    def _enter(self, phase: str) -> None:
        self.phase = phase
        if self.on_phase is not None:
            self.on_phase(phase)

    def resident(self) -> dict[str, int]:
        """Bytes alive between steps, by part: ``params``, ``buffers``, ``grads``, ``optimizer_state``,
        ``buckets``, ``batch`` (input and labels); each storage counted once."""
        seen: set[int] = set()

        def size(tensors: Iterable[Any]) -> int:
            total = 0
            for t in tensors:
                if not isinstance(t, Tensor):
                    continue
                s = t.untyped_storage()
                if s._cdata not in seen:
                    seen.add(s._cdata)
                    total += s.nbytes()
            return total

        params = list(self.module.parameters())
        state = self.optimizer.state.values() if self.optimizer is not None else []
        return {
            "params": size(params),
            "buffers": size(self.module.buffers()),
            "grads": size(p.grad for p in params if p.grad is not None),
            "optimizer_state": size(v for s in state for v in s.values()),
            "buckets": size(self.buckets),
            "batch": size([self.x, self.labels]),
        }

    def zero_grad(self) -> None:
        """The optimizer's (or, without one, the module's) ``zero_grad``: gradients set to None, or zeroed in
        place where kept."""
        target: Any = self.optimizer if self.optimizer is not None else self.module
        target.zero_grad(set_to_none=not self.options.keep_grads)

    def __call__(self) -> Tensor:
        self._enter("zero_grad")
        self.zero_grad()
        mode = SoftmaxSavesInput() if self.options.softmax_saves_input else None
        self._enter("forward")
        if mode is not None:
            with mode:
                out = self.module(self.x)
        else:
            out = self.module(self.x)
        self._enter("loss")
        self._label(out)
        if mode is not None:
            with mode:
                loss = loss_of(self.module, out, self.labels)
        else:
            loss = loss_of(self.module, out, self.labels)
        del out
        self._enter("backward")
        loss.backward()
        self._enter("optimizer")
        if self.optimizer is not None:
            self.optimizer.step()
        self._enter("idle")
        return loss.detach()

    def _label(self, out: Any) -> None:
        """On real tensors, random classes in [0, K) (K: the logits' channels) and a few ignored pixels,
        written in place once."""
        if self._labelled:
            return
        self._labelled = True
        first = (
            out if isinstance(out, Tensor) else next(iter(out.values() if isinstance(out, Mapping) else out))
        )
        if isinstance(first, Tensor) and first.dim() == 4 and not is_loss(out):
            with torch.no_grad():
                self.labels.random_(0, first.shape[1])
                self.labels.view(-1)[::7] = IGNORE_INDEX


def _is_fake(t: Tensor) -> bool:
    from torch._subclasses.fake_tensor import FakeTensor

    return isinstance(t, FakeTensor)


# -- measuring it ---------------------------------------------------------------------------------------
class PhaseTracker(StorageTracker):
    """A :class:`StorageTracker` that also records the phase and op at the peak and who allocated the
    bytes live there (``peak_by_owner``: ``forward:<child module>`` for the module's direct children,
    ``forward`` for its own ops, then ``loss``, ``backward``, ``optimizer``, ``zero_grad``)."""

    def __init__(self, step: TrainingStep, round_to: int = 1) -> None:
        super().__init__(round_to, owner=self.who)
        self.step = step
        self.child: str | None = None
        self.peak_phase = ""
        self.peak_op = ""
        self._hooks: list[Any] = []

    def who(self) -> str:
        phase = self.step.phase
        return f"forward:{self.child}" if phase == "forward" and self.child else phase

    def __enter__(self) -> PhaseTracker:
        for name, child in self.step.module.named_children():
            self._hooks.append(child.register_forward_pre_hook(self._pre(name)))
            self._hooks.append(child.register_forward_hook(self._post))
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        super().__exit__(*exc)

    def _pre(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            self.child = name

        return hook

    def _post(self, module: nn.Module, args: Any, out: Any) -> None:
        self.child = None

    def _sample(self, func: Any) -> None:
        before = self.peak
        super()._sample(func)
        if self.peak > before:
            self.peak_phase, self.peak_op = self.step.phase, op_name(func)


@dataclass(frozen=True)
class StepMemory:
    """Memory of one steady-state training step (bytes).

    ``total``: tensor bytes live at the peak, resident state included (``resident + peak``);
    ``resident``: by part (params, buffers, grads, optimizer_state, buckets, batch); ``peak``: above the
    resident state, modelled scratch of fused ops included (``tensor_peak`` without, ``scratch`` held at
    the peak); ``by_owner``: the bytes above resident live at the peak by who allocated them (forward by
    direct child module, loss, backward, optimizer); ``phase`` / ``op``: where the peak is reached.
    ``cuda_allocated``: the predicted ``max_memory_allocated()`` of a process that ran two such steps from
    an empty cache (absolute: resident state, allocator blocks, cuBLAS workspace); ``cuda_reserved``: the
    caching allocator's segments then (``max_memory_reserved()``). None where not predicted.
    """

    total: int
    resident: Mapping[str, int]
    peak: int
    tensor_peak: int
    scratch: int
    by_owner: Mapping[str, int]
    phase: str
    op: str
    cuda_allocated: int | None = None
    cuda_reserved: int | None = None
    options: StepOptions = field(default_factory=StepOptions)
    scratch_ops: Mapping[str, int] = field(default_factory=dict)
    unmodelled: Mapping[str, int] = field(default_factory=dict)

    @property
    def resident_total(self) -> int:
        return sum(self.resident.values())

    @property
    def activations(self) -> int:
        """Bytes live at the peak allocated by the forward and the loss (saved for backward, or outputs)."""
        return sum(v for k, v in self.by_owner.items() if k.startswith("forward") or k == "loss")

    @property
    def transient(self) -> int:
        """The rest of the peak above resident: backward's gradients in flight, the optimizer's temporaries,
        modelled scratch."""
        return self.peak - self.activations

    def parts(self) -> dict[str, Any]:
        """The JSON object of the peak's parts."""
        return {
            "resident": dict(self.resident),
            "resident_total": self.resident_total,
            "saved_activations": self.activations,
            "transient": self.transient,
            "scratch": self.scratch,
            "by_owner": dict(self.by_owner),
            "phase": self.phase,
            "op": self.op,
            "settings": dataclasses.asdict(self.options),
        }


def cuda_replay(
    step: TrainingStep, run: Callable[[], Any] | None = None, iterations: int = 2
) -> tuple[int, int]:
    """(max allocated, reserved) bytes predicted for ``iterations`` steps (``run``: the step, possibly
    wrapped) from an empty caching allocator: parameters and buffers in ``Module.to``'s order, then the DDP
    buckets, the batch and labels, then the steps (rules of :mod:`isaprof.measure.cuda_memory`)."""
    resident = [*module_to_order(step.module), *step.buckets, step.x, step.labels]
    model = CudaAllocatorModel(resident=resident, cublas_workspace=step.options.cublas_workspace)
    with model:
        for _ in range(iterations):
            (run or step)()
    return model.sim.peak, sum(b.size for b in model.sim.blocks)


def measure_step(step: TrainingStep, run: Callable[[], Any] | None = None, cuda: bool = True) -> StepMemory:
    """The :class:`StepMemory` of ``step`` (``run``: the callable actually run, e.g. ``step`` under an sdpa
    kernel choice; default ``step``). ``cuda``: also replay the CUDA allocator (two steps, first); without
    it one warm-up step creates the steady state. Then one step under :class:`PhaseTracker`."""
    run = run or step
    cuda_allocated = cuda_reserved = None
    if cuda:
        cuda_allocated, cuda_reserved = cuda_replay(step, run)
    else:
        run()
    step.zero_grad()  # the step's first act: gradients not kept are freed before anything is allocated
    resident = step.resident()
    tracker = PhaseTracker(step)
    with tracker:
        out = run()
    del out
    r = tracker.result()
    return StepMemory(
        total=sum(resident.values()) + r.tensor_peak,
        resident=resident,
        peak=r.peak,
        tensor_peak=r.tensor_peak,
        scratch=r.scratch,
        by_owner={k: v for k, v in sorted(tracker.peak_by_owner.items()) if v},
        phase=tracker.peak_phase,
        op=tracker.peak_op,
        cuda_allocated=cuda_allocated,
        cuda_reserved=cuda_reserved,
        options=step.options,
        scratch_ops=dict(r.scratch_ops),
        unmodelled=dict(r.unmodelled),
    )


def largest_batch(predict: Callable[[int], int], capacity: int, limit: int = 1 << 14) -> int:
    """The largest batch ``b`` (1..``limit``) with ``predict(b) <= capacity`` (0 if none), assuming
    ``predict`` grows with ``b``: a linear guess from ``predict(1)`` and ``predict(2)``, then bracketing
    and bisection, each batch predicted at most once."""
    cache: dict[int, int] = {}

    def fits(b: int) -> bool:
        if b not in cache:
            cache[b] = predict(b)
        return cache[b] <= capacity

    if not fits(1):
        return 0
    if not fits(2):
        return 1
    slope = max(cache[2] - cache[1], 1)
    guess = min(max(2, 1 + (capacity - cache[1]) // slope), limit)
    lo, hi = 2, None  # lo fits; hi (if known) does not
    if fits(guess):
        lo, step = guess, 1
        while hi is None:
            b = min(lo + step, limit)
            if b == lo:
                return lo
            if fits(b):
                lo, step = b, step * 2
            else:
                hi = b
    else:
        hi, step = guess, 1
        while True:
            b = max(hi - step, lo)
            if b == lo or fits(b):
                lo = b
                break
            hi, step = b, step * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


__all__ = [
    "IGNORE_INDEX",
    "PRESETS",
    "PhaseTracker",
    "SoftmaxSavesInput",
    "StepMemory",
    "StepOptions",
    "TrainingStep",
    "bucket_sizes",
    "cross_entropy",
    "cuda_replay",
    "is_loss",
    "largest_batch",
    "loss_of",
    "make_optimizer",
    "measure_step",
    "mmseg_2020",
    "resolve",
    "today",
]
