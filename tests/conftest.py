"""Fixtures and settings shared by every test."""

from __future__ import annotations

import os
import random

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """On a pytest-xdist worker, torch gets its share of the cores (cores // workers threads): two workers
    of two OpenMP threads each on two cores spin-wait on each other and run many times slower."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        import torch

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        torch.set_num_threads(max(1, cores // int(workers)))


@pytest.fixture(autouse=True)
def seeded_rng() -> None:
    """Every test starts from torch's and Python's RNGs seeded with 0: a test's random draws do not depend on
    which tests ran before it (or on the worker it runs on)."""
    import torch  # here, not at import: collecting the torch-free tests needs no torch

    torch.manual_seed(0)
    random.seed(0)
