"""The "Training memory of whole networks" section from a side table (no torch run)."""

from __future__ import annotations

from pathlib import Path

from isaprof.report import training_memory as tm

COLUMNS = "id target size batch recipe unit published predicted ratio reason phase op".split()
ROWS = [
    ["a", "fcn_r50_d8", "512x1024", 2, "mmseg-2020", "MiB", 5700, 5579, 0.9788, "within 5%", "backward", "x"],
    [
        "b",
        "pspnet_r50_d8",
        "512x1024",
        2,
        "mmseg-2020",
        "MiB",
        6100,
        5536,
        0.9075,
        "cuDNN workspaces",
        "b",
        "y",
    ],
]
PARTS = {
    "resident": 776,
    "backbone": 3904,
    "heads": 432,
    "logits_loss": 304,
    "backward": 152,
    "allocator": 11,
}
CSV = (
    "\n".join([",".join([*COLUMNS, *PARTS]), *(",".join(map(str, [*r, *PARTS.values()])) for r in ROWS)])
    + "\n"
)


def test_section_table_figure_and_note(tmp_path: Path) -> None:
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / tm.TRAINING_FILE).write_text(CSV)
    notes: list[str] = []
    text = tm.section(tmp_path / "res", tmp_path / "out", notes)
    assert text.startswith("## Training memory of whole networks")
    assert "2 of 2 published training-memory figures are predicted within 10%" in text
    assert "cuDNN workspaces" in text and "pspnet_r50_d8" in text
    assert (tmp_path / "out" / "figures" / "training_memory.png").stat().st_size > 0
    assert (tmp_path / "out" / "tables" / tm.TRAINING_FILE).is_file() and not notes
    assert tm.section(tmp_path, tmp_path / "out", notes) == "" and "training memory" in notes[0]
