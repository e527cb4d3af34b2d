"""Per-module breakdown of one protocol step: parameters, MACs, self MACs and peak bytes per submodule.

Attribution (the rules, stated once):

* **forward**: an op belongs to the innermost module whose ``forward`` is running (module pre/post
  forward hooks keep a stack, as ``torch.utils.module_tracker.ModuleTracker`` does); ops outside the
  root's forward (e.g. the protocol's ``ones_like`` seed gradient) belong to the root ``""``.
* **backward**: an op belongs to the module whose forward *created the autograd node* being run
  (``torch._C._current_autograd_node()``). Nodes are assigned when a module's forward returns: every
  node reachable from its outputs not yet assigned (to a child, or to the caller before the module's
  forward began) is the module's. So a conv's weight and input gradients are the conv's; BN's backward
  is BN's. This differs from ModuleTracker's backward hooks, which mark a module active between the
  gradients of its outputs and of its inputs and so also charge it for its children's backward ops.
* **self MACs**: MACs of the ops attributed to the module itself; ``macs``: self MACs of the module
  and all its descendants. The self MACs of all rows sum exactly to the total MACs.
* **peak bytes**: of the storage live at the (first) peak of :class:`~isaprof.measure.memory.
  StorageTracker`, the bytes each module allocated (same attribution: the module running the allocating
  op). Self, not inclusive: the rows sum exactly to the peak.
* **params**: parameters of the module and its descendants (``sum(p.numel())``), shared ones once.

MACs come from a pass under ``FlopCounterMode`` (with :data:`~isaprof.measure.flops.FORMULAS`), peak
bytes from a second pass without it, exactly as :func:`~isaprof.measure.flops.count_flops` and
:func:`~isaprof.measure.memory.track_peak` measure them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from isaprof.measure.flops import flop_counter_mode
from isaprof.measure.memory import StorageTracker


@dataclass(frozen=True)
class ModuleRow:
    """One submodule's share of a step. ``module``: dotted name (root ``""``); ``depth``: 0 for the root;
    ``params``: count (inclusive); ``macs`` (inclusive) / ``self_macs``: MAC; ``peak_bytes``: byte (self)."""

    module: str
    depth: int
    params: int
    macs: int
    self_macs: int
    peak_bytes: int

    def as_dict(self) -> dict[str, Any]:
        """The ``by_module`` JSON entry."""
        return {k: getattr(self, k) for k in ("module", "depth", "params", "macs", "self_macs", "peak_bytes")}


@dataclass(frozen=True)
class ModuleBreakdown:
    """Rows in ``named_modules`` order (pre-order) and the totals they sum to (MACs, bytes)."""

    rows: tuple[ModuleRow, ...]
    macs: int
    peak_bytes: int


class _Attribution:
    """Who is running: the module stack in forward, the autograd node's creator in backward."""

    def __init__(self, root: nn.Module) -> None:
        self.names = {m: name for name, m in root.named_modules()}
        self.stack: list[str] = []
        self.node_owner: dict[Any, str] = {}

    def current(self) -> str:
        node = torch._C._current_autograd_node()
        if node is not None:
            return self.node_owner.get(node, "")
        return self.stack[-1] if self.stack else ""

    def _claim(self, tree: Any, owner: str) -> None:
        """Assign every unassigned autograd node reachable from the tensors in ``tree`` to ``owner``."""
        todo = [t.grad_fn for t in tree_leaves(tree) if isinstance(t, torch.Tensor) and t.grad_fn is not None]
        while todo:
            node = todo.pop()
            if node is None or node in self.node_owner:
                continue
            self.node_owner[node] = owner
            todo.extend(n for n, _ in node.next_functions)

    def pre(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        self._claim((args, kwargs), self.current())  # made by the caller before this call
        self.stack.append(self.names[module])

    def post(self, module: nn.Module, args: Any, kwargs: Any, out: Any) -> None:
        self._claim(out, self.names[module])
        self.stack.pop()

    @contextmanager
    def hooks(self) -> Iterator[None]:
        handles = []
        for m in self.names:
            handles.append(m.register_forward_pre_hook(self.pre, with_kwargs=True))
            handles.append(m.register_forward_hook(self.post, with_kwargs=True, always_call=True))
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            self.stack.clear()
            self.node_owner.clear()


class _MacsByModule(TorchDispatchMode):
    """Below a FlopCounterMode: the FLOPs of each op it counts (same formulas), charged to the owner."""

    def __init__(self, registry: dict[Any, Any], owner: Callable[[], str]) -> None:
        super().__init__()
        self.registry, self.owner = registry, owner
        self.flops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = self.registry.get(getattr(func, "_overloadpacket", None))
        if formula is not None:
            self.flops[self.owner()] += int(formula(*args, **kwargs, out_val=out))
        return out


def breakdown(module: nn.Module, run: Callable[[], Any]) -> ModuleBreakdown:
    """Per-submodule costs of ``run()``, a protocol step of ``module`` (e.g. ``measure.step(module, x,
    mode)``). Works on real and fake tensors; ``run`` is called twice (MACs, then peak bytes).

    Raises ``RuntimeError`` if the per-op MACs do not add up to the counter's total (a formula the
    breakdown could not apply): the sums are exact by construction otherwise.
    """
    who = _Attribution(module)
    counter = flop_counter_mode()
    by_op = _MacsByModule(counter.flop_registry, who.current)
    with who.hooks(), by_op, counter:
        run()
    total_flops = int(counter.get_total_flops())
    if sum(by_op.flops.values()) != total_flops:
        raise RuntimeError(f"per-module FLOPs {sum(by_op.flops.values())} != counted {total_flops}")
    tracker = StorageTracker(owner=who.current)
    with who.hooks(), tracker:
        out = run()
    del out
    self_macs = {name: f // 2 for name, f in by_op.flops.items()}
    rows = []
    for name, m in module.named_modules():
        inside = [n for n in self_macs if _within(n, name)]
        rows.append(
            ModuleRow(
                module=name,
                depth=0 if not name else name.count(".") + 1,
                params=sum(p.numel() for p in m.parameters()),
                macs=sum(self_macs[n] for n in inside),
                self_macs=self_macs.get(name, 0),
                peak_bytes=tracker.peak_by_owner.get(name, 0),
            )
        )
    return ModuleBreakdown(tuple(rows), total_flops // 2, tracker.peak)


def _within(name: str, ancestor: str) -> bool:
    return not ancestor or name == ancestor or name.startswith(ancestor + ".")


def table(b: ModuleBreakdown, max_depth: int | None = None) -> str:
    """A plain-text table of a breakdown (raw integers; ``max_depth`` hides deeper rows, their costs
    stay in their ancestors' ``macs``)."""
    head = f"{'module':<44} {'params':>12} {'MACs':>16} {'self MACs':>16} {'peak bytes':>14}"
    lines = [head]
    for r in b.rows:
        if max_depth is not None and r.depth > max_depth:
            continue
        name = "  " * r.depth + (r.module or "(root)")
        lines.append(f"{name:<44} {r.params:>12,} {r.macs:>16,} {r.self_macs:>16,} {r.peak_bytes:>14,}")
    lines.append(f"{'total':<44} {'':>12} {b.macs:>16,} {b.macs:>16,} {b.peak_bytes:>14,}")
    return "\n".join(lines)
