"""Tests of isaprof.formulas; `config` builds their configurations by keyword."""

from __future__ import annotations

from typing import Any

from isaprof.config import Config


def config(block: str, size: tuple[int, int], **fields: Any) -> Config:
    """``Config(block=block, height=size[0], width=size[1], **fields)``: every other field by its name
    (batch, channels, key_channels, value_channels, dtype, impl, backend, options)."""
    height, width = size
    return Config(block=block, height=height, width=width, **fields)
