"""Attention blocks (``nn.Module``) and their registry. Imports torch and nothing else of isaprof."""

from isaprof.blocks.registry import BlockSpec, build, names, register, resolve_channels, spec

# Importing a block module registers it. Order here is the order in tables and plots.
from isaprof.blocks import dense  # noqa: E402,F401  isort: skip
from isaprof.blocks import non_local  # noqa: E402,F401  isort: skip
from isaprof.blocks import isa  # noqa: E402,F401  isort: skip
from isaprof.blocks import criss_cross  # noqa: E402,F401  isort: skip
from isaprof.blocks import axial  # noqa: E402,F401  isort: skip
from isaprof.blocks import channelized_axial  # noqa: E402,F401  isort: skip
from isaprof.blocks import sparse_nonlocal  # noqa: E402,F401  isort: skip
from isaprof.blocks import linear  # noqa: E402,F401  isort: skip

__all__ = ["BlockSpec", "build", "names", "register", "resolve_channels", "spec"]
