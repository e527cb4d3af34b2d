"""Costs as closed forms in H and W, derived from the code by one symbolic run on fake tensors.

:mod:`~isaprof.symbolic.trace` (MACs and bytes moved, guards, simplification), :mod:`~isaprof.symbolic.peak`
(peak memory) and :mod:`~isaprof.symbolic.optima` (ISA's best factorization from its own MAC expression);
:mod:`~isaprof.symbolic.canonical` (exact rewrites of sizes and conditions into what a reader checks).
"""
