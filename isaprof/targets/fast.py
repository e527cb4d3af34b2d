"""Inference fast paths: the same function as a reference block, computed closer to the machine's limit.

``fast_inference(block)`` copies an eval-mode reference block and applies, in order:

1. generic transformations, valid for every block: each Conv2d -> BatchNorm2d pair (in a ``Sequential``
   such as ``ConvBNReLU``, or named by a handler) is folded into one biased convolution
   (w' = w g / sqrt(var + eps), b' = (b - mean) g / sqrt(var + eps) + beta; Jacob et al. 2018, eq. 8,
   computed in float64), and every submodule with an ``impl`` attribute is switched to ``"sdpa"`` (flash
   kernel on CPU);
2. with ``gemm=True``, the block's specialisation from the handler table (``@fast_path(name)``): 1x1
   convolutions as GEMMs on a token-major (positions, channels) layout, projections sharing an input fused
   into one GEMM, the regroupings as row copies of whole channel vectors, the NCHW <-> token-major transposes
   absorbed by the GEMMs (BLAS reads a transposed operand for free), and intermediates kept in a per-module
   workspace reused between calls (a fresh 32 MiB tensor costs ~50 ms of page faults on the 2-core reference
   VM, more than copying it);
3. with ``compile=True``, ``torch.compile`` of the result (compile time is paid on the first call).

The result is inference-only: ``train(True)`` raises ``ValueError`` and ``forward`` runs under ``no_grad``.
Peak-memory measurements of a fast module see only what a call allocates: its workspace persists between
calls. A fast module is not thread-safe (one workspace).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable

import torch
from torch import Tensor, nn

from isaprof.targets.blocks.common import SelfAttention2D, check_input, mask_bias
from isaprof.targets.blocks.isa import Partition
from isaprof.targets.registry import spec

Handler = Callable[[nn.Module], nn.Module]
_HANDLERS: dict[str, Handler] = {}
_FOLDS: dict[str, tuple[tuple[str, str], ...]] = {}


def fast_path(name: str, *, fold: tuple[tuple[str, str], ...] = ()) -> Callable[[Handler], Handler]:
    """Register ``handler(block) -> module`` as the specialised fast path of block ``name``.

    ``fold``: (conv attribute, BatchNorm attribute) pairs of the block outside any ``Sequential``, folded by
    the generic step (also with ``gemm=False``). The handler receives a private, eval-mode copy with every
    BatchNorm already folded and impls set to sdpa.
    """

    def deco(handler: Handler) -> Handler:
        if name in _HANDLERS:
            raise ValueError(f"fast path for {name!r} is registered twice")
        _HANDLERS[name], _FOLDS[name] = handler, fold
        return handler

    return deco


def specialised() -> list[str]:
    """Names of the blocks with a specialised (handler) fast path."""
    return list(_HANDLERS)


class FastInference(nn.Module):
    """Eval-only wrapper of a fast path; ``block_name`` is the reference block's registry name."""

    def __init__(self, inner: nn.Module, block_name: str | None) -> None:
        super().__init__()
        self.inner = inner
        self.block_name = block_name
        super().train(False)

    def train(self, mode: bool = True) -> FastInference:
        if mode:
            raise ValueError(
                "a fast_inference module is inference-only (BatchNorm is folded, buffers are reused); "
                "train the reference block and call fast_inference(block.eval()) again"
            )
        return super().train(False)

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.inner(x)  # (B, C, H, W)


def fast_inference(module: nn.Module, *, compile: bool = False, gemm: bool = True) -> FastInference:
    """An inference-only module computing the same function as the eval-mode reference ``module``.

    ``gemm``: use the block's specialised token-major GEMM path when one is registered (``False``: only fold
    BatchNorm and switch to sdpa, keeping the reference forward and its Conv2d's). ``compile``: wrap the
    result in ``torch.compile`` (needs a C++ compiler on CPU). ``module`` itself is not modified.
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"fast_inference needs an nn.Module (a built block), got {type(module).__name__}")
    if module.training:
        raise ValueError("fast_inference needs the reference block in eval mode: call block.eval() first")
    for what, val in (("compile", compile), ("gemm", gemm)):
        if not isinstance(val, bool):
            raise ValueError(f"fast_inference: {what} must be True or False, got {val!r}")
    name = getattr(module, "block_name", None)
    inner = _copy(module).eval()
    fold_batchnorms(inner)
    for conv_name, bn_name in _FOLDS.get(name, ()):
        fold_pair(inner, conv_name, bn_name)
    use_sdpa(inner)
    if gemm and name in _HANDLERS:
        inner = _HANDLERS[name](inner)
    if compile:
        inner = torch.compile(inner, dynamic=False)
    return FastInference(inner, name)


def _copy(module: nn.Module) -> nn.Module:
    """``copy.deepcopy(module)``. NB: under fake tensors (``--device meta``) deepcopy reads each tensor's
    ``data_ptr()`` for its memo and torch warns that this is "almost definitely a bug": harmless here
    (the copy is of fake storage; nothing is computed from the pointer), so that one warning is muted."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Accessing the data pointer of FakeTensor")
        return copy.deepcopy(module)


# --- generic transformations ------------------------------------------------------------------------------


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A biased Conv2d equal to ``bn(conv(x))`` in eval mode; computed in float64, stored in conv's dtype."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm2d without running statistics (track_running_stats=False)")
    w = conv.weight.detach().double()  # (Co, Ci/groups, kh, kw)
    b = conv.bias.detach().double() if conv.bias is not None else w.new_zeros(w.shape[0])
    gain = bn.weight.detach().double() if bn.weight is not None else torch.ones_like(b)  # (Co,)
    shift = bn.bias.detach().double() if bn.bias is not None else torch.zeros_like(b)  # (Co,)
    s = gain / torch.sqrt(bn.running_var.double() + bn.eps)  # (Co,)
    fused = _copy(conv)
    if fused.bias is None:
        fused.bias = nn.Parameter(torch.empty(w.shape[0], dtype=conv.weight.dtype, device=w.device))
    with torch.no_grad():
        fused.weight.copy_(w * s[:, None, None, None])  # (Co, Ci/groups, kh, kw)
        fused.bias.copy_((b - bn.running_mean.double()) * s + shift)  # (Co,)
    return fused


def fold_pair(parent: nn.Module, conv_name: str, bn_name: str) -> None:
    """Fold ``parent.<bn_name>`` into ``parent.<conv_name>`` in place; the BN becomes ``nn.Identity``."""
    conv, bn = getattr(parent, conv_name), getattr(parent, bn_name)
    if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
        raise ValueError(f"fold_pair: {conv_name}/{bn_name} are not Conv2d/BatchNorm2d")
    setattr(parent, conv_name, fold_conv_bn(conv, bn))
    setattr(parent, bn_name, nn.Identity())


def fold_batchnorms(module: nn.Module) -> int:
    """Fold every Conv2d directly followed by a BatchNorm2d inside an ``nn.Sequential``; returns the count."""
    count = 0
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        keys = list(seq._modules)
        for a, b in zip(keys[:-1], keys[1:], strict=True):
            if isinstance(seq._modules[a], nn.Conv2d) and isinstance(seq._modules[b], nn.BatchNorm2d):
                fold_pair(seq, a, b)
                count += 1
    return count


def use_sdpa(module: nn.Module) -> int:
    """Set ``impl = "sdpa"`` on every submodule whose ``impl`` is ``"naive"`` and that accepts sdpa."""
    count = 0
    for m in module.modules():
        if getattr(m, "impl", None) == "naive" and _accepts_sdpa(m):
            m.impl = "sdpa"
            count += 1
    return count


def _accepts_sdpa(m: nn.Module) -> bool:
    name = getattr(m, "block_name", None)
    return isinstance(m, SelfAttention2D) or (name is not None and "sdpa" in spec(name).impls)


# --- workspace --------------------------------------------------------------------------------------------


class Workspace:
    """Named scratch tensors reused between calls while their shape, dtype and device stay the same.

    Under ``torch.compile`` it hands out fresh tensors: inductor plans the memory itself, and a mutated cache
    would fail the compiled graph's guards (a recompile per call).
    """

    def __init__(self) -> None:
        self._bufs: dict[str, Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        if torch.compiler.is_compiling():
            return torch.empty(shape, dtype=like.dtype, device=like.device)
        buf = self._bufs.get(name)
        if buf is None or buf.shape != shape or buf.dtype != like.dtype or buf.device != like.device:
            buf = torch.empty(shape, dtype=like.dtype, device=like.device)
            self._bufs[name] = buf
        return buf


# --- token-major engine for the SelfAttention2D blocks (dense, isa, axial) --------------------------------


def _linear(conv: nn.Conv2d) -> tuple[Tensor, Tensor | None]:
    """(weight (Co, Ci), bias (Co,) or None) of a 1x1 convolution."""
    if not isinstance(conv, nn.Conv2d) or conv.kernel_size != (1, 1) or conv.groups != 1:
        raise ValueError(f"fast path: expected a 1x1 ungrouped Conv2d, got {conv}")
    return conv.weight.detach()[:, :, 0, 0], None if conv.bias is None else conv.bias.detach()


def _layers(module: nn.Module) -> list[tuple[Tensor, Tensor | None, bool]]:
    """A folded projection (nested Sequentials of 1x1 Conv2d, Identity, ReLU) as (weight, bias, relu)."""
    if isinstance(module, nn.Conv2d):
        return [(*_linear(module), False)]
    if isinstance(module, nn.Sequential):
        out: list[tuple[Tensor, Tensor | None, bool]] = []
        for m in module:
            if isinstance(m, nn.ReLU) and out:
                out[-1] = (out[-1][0], out[-1][1], True)
            elif not isinstance(m, nn.Identity):
                out += _layers(m)
        return out
    raise ValueError(f"fast path: cannot read {type(module).__name__} as 1x1 projection layers")


def _linear_biased(conv: nn.Conv2d) -> tuple[Tensor, Tensor]:
    w, b = _linear(conv)
    return w, torch.zeros(w.shape[0], dtype=w.dtype, device=w.device) if b is None else b


def _gemm(rows: Tensor, w_t: Tensor, b: Tensor | None, relu: bool, out: Tensor) -> Tensor:
    """out = [ReLU](rows @ w_t + b); rows (R, Ci) may be a strided view, out (R, Co).

    NB: one call for all rows. Row chunks sized for the cache (bias fill, GEMM, ReLU on a hot chunk) were
    2-4x slower on the shared 2-core VM: each chunk is an OpenMP region, which a descheduled thread stalls.
    """
    if b is None:
        torch.mm(rows, w_t, out=out)
    else:
        torch.addmm(b, rows, w_t, out=out)  # the bias is broadcast into out first (one pass)
    return out.relu_() if relu else out


class TokenStage(nn.Module):
    """A folded :class:`~isaprof.targets.blocks.common.SelfAttention2D` stage as token-major GEMMs.

    The first layers of the query, key and value projections read the same input: one GEMM with their weights
    concatenated (``w_in``, (C_in, sum of widths)); the further layers of each branch (``rest``) and the
    output projection (``out``, BN folded) are one GEMM each. ``segments``: (width, ReLU?) of w_in's outputs.
    """

    def __init__(self, stage: nn.Module) -> None:
        super().__init__()
        branches = [_layers(stage.f_query), _layers(stage.f_key), _layers(stage.f_value)]
        firsts = [br[0] for br in branches]
        self.segments = [(w.shape[0], relu) for w, _, relu in firsts]
        self.register_buffer("w_in", torch.cat([w for w, _, _ in firsts]).t().contiguous())  # (C_in, sum Co)
        biases = [b if b is not None else torch.zeros(w.shape[0], dtype=w.dtype) for w, b, _ in firsts]
        has_bias = any(b is not None for _, b, _ in firsts)
        self.register_buffer("b_in", torch.cat(biases) if has_bias else None)  # (sum Co,)
        self.rest = [[self._layer(w, b, r) for w, b, r in br[1:]] for br in branches]
        self.out = [self._layer(w, b, r) for w, b, r in _layers(stage.W)]
        self.ck, self.cv = branches[0][-1][0].shape[0], branches[2][-1][0].shape[0]

    def _layer(self, w: Tensor, b: Tensor | None, relu: bool) -> tuple[str, str, bool]:
        """Register w^T (Ci, Co) and the bias as buffers (so ``.to()`` moves them); return their names."""
        i = len(self._buffers)
        self.register_buffer(f"w{i}", w.t().contiguous())
        self.register_buffer(f"b{i}", b)
        return (f"w{i}", f"b{i}", relu)

    def layer(self, names: tuple[str, str, bool]) -> tuple[Tensor, Tensor | None, bool]:
        """(w^T (Ci, Co), bias (Co,) or None, relu) of a layer registered by ``_layer``."""
        return self._buffers[names[0]], self._buffers[names[1]], names[2]

    def attend(self, y: Tensor, groups: int, bias: Tensor | None, ws: Workspace, tag: str) -> Tensor:
        """y: (G N, sum Co) first-layer outputs, rows grouped -> (G, 1, N, Cv) by sdpa (flash if Ck == Cv)."""
        heads, off = [], 0
        for i, (width, _) in enumerate(self.segments):
            h = y[:, off : off + width]  # (G N, Co) strided view
            for j, names in enumerate(self.rest[i]):
                w_t, b, relu = self.layer(names)
                h = _gemm(h, w_t, b, relu, ws.get(f"{tag}r{i}{j}", (y.shape[0], w_t.shape[1]), y))
            heads.append(
                h.view(groups, 1, -1, h.shape[-1]) if h.is_contiguous() else self._grouped(h, groups)
            )
            off += width
        q, k, v = heads  # (G, 1, N, Ck | Ck | Cv)
        return nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.ck**-0.5)

    @staticmethod
    def _grouped(h: Tensor, groups: int) -> Tensor:
        """A (G N, C) column slice (row stride > C) as a (G, 1, N, C) view, no copy."""
        n = h.shape[0] // groups
        return h.as_strided((groups, 1, n, h.shape[1]), (n * h.stride(0), 0, h.stride(0), 1))


def _order_shape(dims: tuple[int, ...], order: tuple[int, ...]) -> list[int]:
    return [dims[i] for i in order]


def _regroup(
    src: Tensor,
    dims: tuple[int, ...],
    src_order: tuple[int, ...],
    dst_order: tuple[int, ...],
    out: Tensor,
    segments: list[tuple[int, bool]] | None = None,
) -> Tensor:
    """Copy token-major rows from ``src_order`` to ``dst_order`` (whole channel vectors move), ReLU on the
    ``segments`` (width, relu) that ask for it on the way. src, out: (prod(dims), E)."""
    e = src.shape[-1]
    rel = [src_order.index(d) for d in dst_order]
    s = src.view(*_order_shape(dims, src_order), e).permute(*rel, len(dims))  # (*dst dims, E), strided
    o = out.view(*_order_shape(dims, dst_order), e)  # (*dst dims, E)
    off = 0
    for width, relu in segments or [(e, False)]:
        if relu:
            torch.clamp_min(s[..., off : off + width], 0, out=o[..., off : off + width])
        else:
            o[..., off : off + width].copy_(s[..., off : off + width])
        off += width
    return out


class TokenChain(nn.Module):
    """Stages applied in sequence, stage i attending within the groups of ``orders[i]``.

    The (padded) map is viewed as token dims ``dims`` (natural NCHW position order, batch first); an order is
    a permutation of those dims whose first ``n_group_dims[i]`` dims index the groups, the rest the positions
    attended over. Input and output NCHW; in between everything is token-major (rows = positions).
    """

    def __init__(self, stages: list[TokenStage]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.ws = Workspace()

    def run(
        self,
        x: Tensor,
        dims: tuple[int, ...],
        orders: list[tuple[int, ...]],
        n_group_dims: list[int],
        biases: list[Tensor | None],
    ) -> Tensor:
        b, c = x.shape[:2]
        rows, nat, ws = x.numel() // c, tuple(range(len(dims))), self.ws
        xt = x.reshape(b, c, -1).transpose(1, 2)  # (B, HW, C) view: BLAS reads it transposed, no copy
        first = self.stages[0]
        y = ws.get("y0", (b, rows // b, first.w_in.shape[1]), x)  # (B, HW, sum Co) natural order
        for i in range(b):
            _gemm(xt[i], first.w_in, first.b_in, False, y[i])
        y = y.view(rows, -1)  # (B HW, sum Co)
        if orders[0] == nat:
            y = self._relu_segments(y, first.segments)
        else:
            y = _regroup(y, dims, nat, orders[0], ws.get("y0r", tuple(y.shape), x), first.segments)
        for s, stage in enumerate(self.stages):
            groups = 1
            for d in orders[s][: n_group_dims[s]]:
                groups *= dims[d]
            o = stage.attend(y, groups, biases[s], ws, f"s{s}").view(rows, stage.cv)  # (rows, Cv) orders[s]
            last = s + 1 == len(self.stages)
            dst = nat if last else orders[s + 1]
            if dst != orders[s]:
                o = _regroup(o, dims, orders[s], dst, ws.get(f"o{s}", tuple(o.shape), x))
            for j, names in enumerate(stage.out[:-1] if last else stage.out):
                w_t, bias, relu = stage.layer(names)
                o = _gemm(o, w_t, bias, relu, ws.get(f"s{s}out{j}", (rows, w_t.shape[1]), x))
            if last:
                return self._project_out(o, stage.layer(stage.out[-1]), b)
            nxt = self.stages[s + 1]
            y = _gemm(o, nxt.w_in, nxt.b_in, False, ws.get(f"y{s + 1}", (rows, nxt.w_in.shape[1]), x))
            y = self._relu_segments(y, nxt.segments)  # (rows, sum Co) in the next stage's order
        raise AssertionError("unreachable")

    @staticmethod
    def _relu_segments(y: Tensor, segments: list[tuple[int, bool]]) -> Tensor:
        off = 0
        for width, relu in segments:
            if relu:
                y[:, off : off + width].relu_()
            off += width
        return y

    @staticmethod
    def _project_out(o: Tensor, layer: tuple[Tensor, Tensor | None, bool], b: int) -> Tensor:
        """Last layer straight into NCHW: out[i] = [ReLU](w o[i]^T + bias), (C, HW) per batch element."""
        w_t, bias, relu = layer  # (Cv, C), (C,) | None
        out = torch.empty((b, w_t.shape[1], o.shape[0] // b), dtype=o.dtype, device=o.device)  # (B, C, HW)
        ob = o.view(b, -1, o.shape[-1])  # (B, HW, Cv)
        for i in range(b):
            _gemm(w_t.t(), ob[i].t(), None if bias is None else bias[:, None], False, out[i])  # (C, HW)
        return out.relu_() if relu else out


# --- the handlers -----------------------------------------------------------------------------------------


class _FastDense(nn.Module):
    """dense: one stage over all H W positions; zero copies (both transposes absorbed by the GEMMs)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.channels = block.channels
        self.chain = TokenChain([TokenStage(block.attention)])

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.channels, "dense")
        b, c, h, w = x.shape
        return self.chain.run(x, (b, h, w), [(0, 1, 2)], [1], [None]).view(b, c, h, w)


class _FastAxial(nn.Module):
    """axial: rows are contiguous token runs (no copy), columns one regroup of the Cv-wide context."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.channels = block.channels
        self.chain = TokenChain([TokenStage(block.row), TokenStage(block.column)])

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.channels, "axial")
        b, c, h, w = x.shape
        out = self.chain.run(x, (b, h, w), [(0, 1, 2), (0, 2, 1)], [2, 2], [None, None])  # (B, C, HW)
        return out.view(b, c, h, w)


class _FastISA(nn.Module):
    """isa: token dims (B, Q_h, P_h, Q_w, P_w); long range groups (B, P_h, P_w), short range (B, Q_h, Q_w).

    Copies: the fused q/k/v of the long stage into group order (Ck + Cv wide), the long context into short
    order and the short context back to map order (Cv wide each); the NCHW transposes ride on the GEMMs.
    """

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.channels, self.factor, self.masked = block.channels, block.factor, block.masked
        self.chain = TokenChain([TokenStage(block.long_range), TokenStage(block.short_range)])

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.channels, "isa")
        n, c, h, w = x.shape
        part = Partition.of(h, w, self.factor)
        feats = part.pad(x)  # (n, c, Qh Ph, Qw Pw)
        masks = part.key_masks(n, x.device) if self.masked else (None, None)  # (G, 1, M) each
        biases = [None if m is None else mask_bias(m, x.dtype).unsqueeze(1) for m in masks]  # (G, 1, 1, M)
        dims = (n, part.qh, part.ph, part.qw, part.pw)
        out = self.chain.run(feats, dims, [(0, 2, 4, 1, 3), (0, 1, 3, 2, 4)], [3, 3], biases)
        out = out.view(n, c, part.qh * part.ph, part.qw * part.pw)  # (n, c, H', W')
        return part.crop(out)  # (n, c, H, W)


class _FastResidual(nn.Module):
    """x + BN(out(softmax(theta(x) phi(x_s)^T / sqrt(Ck)) g(x_s))) with BN folded, x_s = x at ``positions``
    (all positions for non_local, the sampled ones for sparse_nonlocal); phi and g fused into one GEMM."""

    def __init__(
        self,
        block: nn.Module,
        theta: nn.Conv2d,
        phi: nn.Conv2d,
        g: nn.Conv2d,
        out: nn.Conv2d,
        positions: Callable[[int], list[int]] | None,
    ) -> None:
        super().__init__()
        self.channels, self.block_name, self.positions = block.channels, block.block_name, positions
        (wq, bq), (wk, bk), (wv, bv), (wo, bo) = (_linear_biased(m) for m in (theta, phi, g, out))
        self.ck = wq.shape[0]
        self.register_buffer("w_q", wq.t().contiguous())  # (C, Ck)
        self.register_buffer("b_q", bq.contiguous())
        self.register_buffer("w_kv", torch.cat([wk, wv]).t().contiguous())  # (C, Ck + Cv)
        self.register_buffer("b_kv", torch.cat([bk, bv]).contiguous())
        self.register_buffer("w_out", wo.contiguous())  # (C, Cv)
        self.register_buffer("b_out", bo.contiguous()[:, None])  # (C, 1)
        self.ws = Workspace()

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.channels, self.block_name)
        b, c, h, w = x.shape
        xt = x.reshape(b, c, h * w).transpose(1, 2)  # (B, N, C) view
        q = self.ws.get("q", (b, h * w, self.ck), x)  # (B, N, Ck)
        idx = None if self.positions is None else torch.tensor(self.positions(h * w), device=x.device)
        m = h * w if idx is None else idx.numel()
        kv = self.ws.get("kv", (b, m, self.w_kv.shape[1]), x)  # (B, M, Ck + Cv)
        for i in range(b):
            torch.addmm(self.b_q, xt[i], self.w_q, out=q[i])  # (N, Ck)
            xs = xt[i] if idx is None else xt[i].index_select(0, idx)  # (M, C)
            torch.addmm(self.b_kv, xs, self.w_kv, out=kv[i])  # (M, Ck + Cv)
        k, v = kv[..., : self.ck].unsqueeze(1), kv[..., self.ck :].unsqueeze(1)  # (B, 1, M, Ck|Cv)
        y = nn.functional.scaled_dot_product_attention(
            q.unsqueeze(1), k, v, scale=self.ck**-0.5
        )  # (B,1,N,Cv)
        out = torch.empty_like(x).view(b, c, h * w)  # (B, C, N)
        for i in range(b):
            torch.addmm(x[i].view(c, h * w), self.w_out, y[i, 0].t(), out=out[i])  # x + W y^T, (C, N)
        return out.add_(self.b_out).view(b, c, h, w)  # (B, C, H, W)


@fast_path("dense")
def _dense(block: nn.Module) -> nn.Module:
    return _FastDense(block)


@fast_path("axial")
def _axial(block: nn.Module) -> nn.Module:
    return _FastAxial(block)


@fast_path("isa")
def _isa(block: nn.Module) -> nn.Module:
    return _FastISA(block)


@fast_path("non_local", fold=(("conv_out", "norm"),))
def _non_local(block: nn.Module) -> nn.Module:
    if block.sub_sample:  # max-pooled keys: the folded reference forward is kept
        return block
    return _FastResidual(block, block.theta, block.phi, block.g, block.conv_out, None)


@fast_path("sparse_nonlocal", fold=(("conv_out", "norm"),))
def _sparse_nonlocal(block: nn.Module) -> nn.Module:
    return _FastResidual(block, block.theta, block.phi, block.g, block.conv_out, block.positions)
