"""Fixtures shared by every test."""

from __future__ import annotations

import random

import pytest


@pytest.fixture(autouse=True)
def seeded_rng() -> None:
    """Every test starts from torch's and Python's RNGs seeded with 0: a test's random draws do not depend on
    which tests ran before it (or on the worker it runs on)."""
    import torch  # here, not at import: collecting the torch-free tests needs no torch

    torch.manual_seed(0)
    random.seed(0)
