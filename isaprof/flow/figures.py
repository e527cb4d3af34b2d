"""Connectivity pictures from the structural model (no module is built): for one query position, the input
positions it draws from after each stage of several blocks, as a grid of small heatmaps (colour = number of
attention paths; white = not reached; the query is outlined in red)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from isaprof.flow.structural import Structure, reach, structure


def _panels(size: tuple[int, int], factor: tuple[int, int]) -> list[tuple[str, Structure, int | None]]:
    """(title, structure, stages taken: ``None`` = whole block) for each heatmap."""
    isa = structure("isa", size, factor=factor)
    short_only = dataclasses.replace(isa, stages=isa.stages[1:])
    cc1, cc2 = structure("criss_cross", size, recurrence=1), structure("criss_cross", size, recurrence=2)
    axial = structure("axial", size)
    ph, pw = factor
    return [
        ("dense (1 stage)", structure("dense", size), None),
        (f"ISA {ph}x{pw}: long-range", isa, 1),
        (f"ISA {ph}x{pw}: short-range alone", short_only, None),
        (f"ISA {ph}x{pw}: both stages", isa, None),
        ("criss-cross R=1", cc1, None),
        ("criss-cross R=2", cc2, None),
        ("axial: row", axial, 1),
        ("axial: row + column", axial, None),
    ]


def reach_grid(
    path: str | Path,
    size: tuple[int, int] = (16, 16),
    query: tuple[int, int] = (5, 6),
    factor: tuple[int, int] = (4, 4),
) -> Path:
    """Write a PNG of the positions ``query`` (h, w) draws from, per block and stage, at ``size`` (H, W);
    ISA panels use ``factor`` (P_h, P_w). Returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Rectangle

    panels = _panels(size, factor)
    maps = [reach(s, query, upto) for _, s, upto in panels]  # each (H, W) path counts
    vmax = max(int(m.max()) for m in maps)
    cols = 4
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.0 * cols, 3.2 * rows), squeeze=False, layout="constrained"
    )
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")
    image = None
    for ax, (title, _, _), counts in zip(axes.flat, panels, maps, strict=False):
        shown = np.ma.masked_equal(counts, 0)  # (H, W), unreached positions white
        image = ax.imshow(shown, cmap=cmap, norm=LogNorm(1, max(vmax, 2)), interpolation="nearest")
        qh, qw = query
        ax.add_patch(Rectangle((qw - 0.5, qh - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
        share = (counts > 0).mean()
        ax.set_title(f"{title}\n{share:.0%} of positions reached", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    h, w = size
    fig.suptitle(f"Input positions that reach output {query} (red) on a {h}x{w} map", fontsize=11)
    fig.colorbar(image, ax=axes, shrink=0.8, label="attention paths (log scale)")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
