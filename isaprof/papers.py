"""The papers' settings (``reference/papers.toml``), read once: the feature-map sizes and widths the ISA,
OCR and CCNet papers compare blocks on, and their published heads. No torch.

    python -m isaprof.papers sizes     # 97x97 128x128 (the Makefile's efficiency tables)
    python -m isaprof.papers channels  # 512
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isaprof.config import REFERENCE

PAPERS = REFERENCE / "papers.toml"


@dataclass(frozen=True)
class Setting:
    """One paper's feature map: ``size`` (H, W) at output stride 8 and ``what`` it is."""

    size: tuple[int, int]
    what: str

    @property
    def label(self) -> str:
        """``"97x97"``."""
        return f"{self.size[0]}x{self.size[1]}"


def load(path: Path | str = PAPERS) -> dict[str, Any]:
    """The TOML at ``path``; ``ValueError`` naming the file and what is missing."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    missing = [k for k in ("feature_map", "size", "head") if k not in doc]
    if missing:
        raise ValueError(f"{path}: missing the table(s) {', '.join(missing)}")
    return doc


def _head(entry: dict[str, Any], feature_map: dict[str, Any]) -> dict[str, Any]:
    """A ``[[head]]`` entry as :mod:`isaprof.studies.heads` takes it: lists as tuples (options' too), the
    feature map's ``in_channels`` / ``channels`` filled in where the entry leaves them."""
    out = {k: feature_map[k] for k in ("in_channels", "channels")}
    out.update({k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()})
    out["options"] = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.get("options", {}).items()}
    return out


_DOC = load()
FEATURE_MAP: dict[str, int] = dict(_DOC["feature_map"])
CHANNELS: int = FEATURE_MAP["channels"]  # C of the block's input
IN_CHANNELS: int = FEATURE_MAP["in_channels"]  # the backbone's output width, the head's input
BATCH: int = FEATURE_MAP["batch"]
SETTINGS: tuple[Setting, ...] = tuple(Setting(tuple(s["size"]), s["what"]) for s in _DOC["size"])
SIZES: tuple[tuple[int, int], ...] = tuple(s.size for s in SETTINGS)
HEADS: tuple[dict[str, Any], ...] = tuple(_head(h, FEATURE_MAP) for h in _DOC["head"])


def main(argv: list[str] | None = None) -> int:
    """Print the papers' ``sizes`` (``HxW``, space-separated) or ``channels``."""
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["sizes"]:
        print(" ".join(s.label for s in SETTINGS))
    elif argv == ["channels"]:
        print(CHANNELS)
    else:
        print("usage: python -m isaprof.papers {sizes|channels}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
