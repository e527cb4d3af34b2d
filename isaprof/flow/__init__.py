"""Information flow: does each block carry information between every pair of positions?

Two independent checks, compared:

* structural (:mod:`isaprof.flow.structural`): from the block's grouping, exact path counts through the
  composition of its stages; no module built, any map size;
* empirical (:mod:`isaprof.flow.empirical`): the support of the real module's position-to-position
  Jacobian, union over several random parameter draws, small maps only.

>>> from isaprof.flow import verify
>>> r = verify("isa", (8, 8), factor=(4, 2))
>>> r.fractions, r.paths_min, r.paths_max, r.agree
((0.125, 1.0), 1, 1, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from isaprof.flow.empirical import jacobian_support, runs
from isaprof.flow.structural import analyse, structure, support_matrix
from isaprof.targets import build, spec

EMPIRICAL_MAX_POSITIONS = 256  # auto mode runs the Jacobian check up to 16x16 positions
CHANNELS = 8  # channels of the empirical check
MIN_KEY_CHANNELS = (
    2  # with Ck = 1, linear attention's unit q, k are +-1 and 1 + q.k is exactly 0 for half the pairs
)


@dataclass(frozen=True)
class VerifyResult:
    """Both checks for one block configuration; fractions are over the N^2 (output, input) pairs.

    ``fractions[k]``: structural, after stages 1..k+1; ``alone[k]``: stage k+1 alone. ``paths_min`` /
    ``paths_max``: attention paths per pair through the whole block (``None`` without a structural model).
    ``empirical``: (run label, Jacobian-support fraction) per module run; ``agree``: every run's support
    equals the structural one (``None`` when either check did not run). ``advertised``: the registry's
    ``fully_connected``.
    """

    block: str
    size: tuple[int, int]
    options: tuple[tuple[str, Any], ...]
    advertised: bool
    modelled: bool
    stage_names: tuple[str, ...]
    fractions: tuple[float, ...]
    alone: tuple[float, ...]
    paths_min: int | None
    paths_max: int | None
    stages_needed: int | None
    residual: bool
    empirical: tuple[tuple[str, float], ...]
    agree: bool | None
    notes: tuple[str, ...]

    @property
    def fully_connected(self) -> bool | None:
        """Structural verdict for the whole block (``None`` without a structural model)."""
        return None if not self.modelled else self.fractions[-1] == 1.0

    @property
    def empirical_fraction(self) -> float | None:
        """Jacobian-support fraction of the whole block (the last run), ``None`` if not run."""
        return self.empirical[-1][1] if self.empirical else None

    @property
    def empirical_only(self) -> bool:
        """A target with no structural model (any module outside the registry): only its Jacobian speaks."""
        return not self.modelled and bool(self.empirical)

    @property
    def ok(self) -> bool:
        """Modelled, no disagreement, and fully connected wherever the registry advertises it; a target
        checked empirically only is ok unless it claims full connectivity its Jacobian does not show."""
        if self.empirical_only:
            return not (self.advertised and (self.empirical_fraction or 0.0) < 1.0)
        return (
            self.modelled and self.agree is not False and not (self.advertised and not self.fully_connected)
        )


def verify(
    name: str,
    size: tuple[int, int],
    *,
    empirical: bool | None = None,
    channels: int = CHANNELS,
    draws: int = 3,
    seed: int = 0,
    layout: str = "map",
    **options: Any,
) -> VerifyResult:
    """Structural and (where small enough, or ``empirical=True``) empirical connectivity of one block.

    ``size``: (H, W) of the input map; ``options``: the block's own options (``factor``, ``recurrence``...).
    ``empirical=None`` runs the Jacobian check only up to ``EMPIRICAL_MAX_POSITIONS`` positions.
    ``layout="tokens"``: the module takes ``(B, H*W, C)`` and returns ``(B, H*W, C')`` (a module outside
    the registry; position ``p = h * W + w`` is token ``p``). ``ValueError`` in one line for a module
    whose output is not one tensor of its input's layout.
    """
    from isaprof.config import LAYOUTS, check_choice

    check_choice("layout", layout, LAYOUTS)
    if layout == "tokens" and spec(name).standard_contract:
        raise ValueError(
            f"block {name!r} takes a map (B, C, H, W); layout 'tokens' (B, N, C) is for modules that take "
            "a sequence"
        )
    advertised = spec(name).advertises_full(options, size)  # ValueError listing the known blocks if unknown
    s = structure(name, size, **options)
    h, w = s.size if s is not None else size
    notes = [] if s is None else list(s.notes)
    if s is None:
        notes.append("no structural model")
        res = None
    else:
        res = analyse(s)
    run_emp = empirical if empirical is not None else h * w <= EMPIRICAL_MAX_POSITIONS
    if empirical is None and not run_emp:
        notes.append(f"empirical check skipped above {EMPIRICAL_MAX_POSITIONS} positions ({h}x{w})")
    if run_emp and s is not None:
        _check_comparable(s, size)  # refuse before the (slow, memory-hungry) Jacobians, not after
    emp, agree = (
        ([], None)
        if not run_emp
        else _empirical(name, s, (h, w), channels, draws, seed, options, notes, layout)
    )
    return VerifyResult(
        block=name,
        size=(h, w),
        options=tuple(sorted(options.items())),
        advertised=advertised,
        modelled=res is not None,
        stage_names=() if res is None else res.stage_names,
        fractions=() if res is None else tuple(c.fraction for c in res.cumulative),
        alone=() if res is None else tuple(a.fraction for a in res.alone),
        paths_min=None if res is None else res.cumulative[-1].paths_min,
        paths_max=None if res is None else res.cumulative[-1].paths_max,
        stages_needed=None if res is None else res.stages_needed,
        residual=False if s is None else s.residual,
        empirical=tuple(emp),
        agree=agree,
        notes=tuple(notes),
    )


def checked_forward(name: str, layout: str, size: tuple[int, int]) -> Any:
    """``forward(module, x)`` for a module outside the registry, on the map ``x`` (B, C, H, W) the
    Jacobian check differentiates: fed as tokens ``(B, H*W, C)`` for ``layout="tokens"`` and its tokens
    read back as a ``(B, C', N, 1)`` map; ``ValueError`` in one line when the forward fails or its output
    is not one tensor of the input's layout."""
    import torch

    h, w = size
    shown = "(B, N, C)" if layout == "tokens" else "(B, C, H, W)"

    def forward(module: Any, x: Any) -> Any:
        inp = x.flatten(2).transpose(1, 2) if layout == "tokens" else x  # (B, N, C) or (B, C, H, W)
        try:
            out = module(inp)
        except Exception as e:  # noqa: BLE001  the user's forward: one line, which and why
            text = str(e).strip().splitlines()[0] if str(e).strip() else ""
            other, its = ("tokens", "(B, N, C)") if layout == "map" else ("map", "(B, C, H, W)")
            raise ValueError(
                f"forward of {name!r} on an input of shape {shown} = {tuple(inp.shape)} failed: "
                f"{type(e).__name__}: {text} (if it takes {its}, use --layout {other})"
            ) from None
        rank = 3 if layout == "tokens" else 4
        if not isinstance(out, torch.Tensor) or out.dim() != rank or out.shape[0] != inp.shape[0]:
            got = f"tensor {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"verify needs {name!r} to map {shown} to one tensor of the same layout; it returned {got}"
            )
        return out.transpose(1, 2).unsqueeze(-1) if layout == "tokens" else out  # (B, C', N, 1)

    return forward


def _check_comparable(s: Any, size: tuple[int, int]) -> None:
    """``ValueError`` if the structural support the Jacobians are compared with would be too large."""
    from isaprof.flow.stages import DENSE_LIMIT, grid_size

    n = max(grid_size(st) for st in s.stages)
    if n > DENSE_LIMIT:
        raise ValueError(
            f"the empirical check at {size[0]}x{size[1]} compares grids of {n} positions (padded to the "
            f"factor), at most {DENSE_LIMIT} can be compared: use --no-empirical or a smaller factor/size"
        )


def _empirical(
    name: str,
    s: Any,
    size: tuple[int, int],
    channels: int,
    draws: int,
    seed: int,
    options: dict,
    notes: list,
    layout: str = "map",
) -> tuple[list[tuple[str, float]], bool | None]:
    """Jacobian support of every run; compare each with the structural support of the same stages."""
    key_channels = max(spec(name).default_key_channels(channels), MIN_KEY_CHANNELS)

    def make(**over: Any):
        return build(name, channels, key_channels, **{**options, **over})

    n_stages = len(s.stages) if s is not None else 1
    out, agree = [], None if s is None else True
    for run in runs(name if s is not None else "", n_stages, make):
        forward = None if spec(name).standard_contract else checked_forward(name, layout, size)
        emp = jacobian_support(run.make, size, channels, draws=draws, seed=seed, forward=forward)
        sup = emp.support  # (N, N)
        out.append((run.label, float(sup.mean())))
        if s is None:
            continue
        expect = support_matrix(s, list(run.stages))  # (N, N)
        if not np.array_equal(sup, expect):
            extra, missing = int((sup & ~expect).sum()), int((expect & ~sup).sum())
            if extra == 0 and not emp.stable:  # still growing: missing pairs may be unlucky draws
                agree = None if agree is not False else agree
                notes.append(
                    f"{run.label}: inconclusive: {missing} pairs not yet reached empirically after "
                    f"{emp.draws} draws (still growing); rerun with more --draws"
                )
                continue
            agree = False
            notes.append(
                f"{run.label}: {extra} pairs connected only empirically, {missing} only structurally "
                f"({emp.draws} draws)"
            )
    return out, agree
