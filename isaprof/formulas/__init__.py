"""Closed-form costs (parameters, MACs, element-wise work, peak bytes) of every block.

Pure Python: this package imports no torch and of isaprof only the configuration type, so each formula
can be checked with pencil and paper. See :mod:`isaprof.formulas.base` for the counting convention.
"""

from isaprof.formulas.base import DTYPE_BYTES, Config, Cost, Tolerance, cost, find, formula, known

from isaprof.formulas import dense  # noqa: E402,F401  isort: skip
from isaprof.formulas import non_local  # noqa: E402,F401  isort: skip
from isaprof.formulas import isa  # noqa: E402,F401  isort: skip
from isaprof.formulas import criss_cross  # noqa: E402,F401  isort: skip
from isaprof.formulas import axial  # noqa: E402,F401  isort: skip
from isaprof.formulas import channelized_axial  # noqa: E402,F401  isort: skip
from isaprof.formulas import sparse_nonlocal  # noqa: E402,F401  isort: skip
from isaprof.formulas import linear  # noqa: E402,F401  isort: skip


__all__ = ["DTYPE_BYTES", "Config", "Cost", "Tolerance", "cost", "find", "formula", "known"]
