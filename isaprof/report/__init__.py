"""The report: reads saved result files (tidy CSV, machine JSON) and writes Markdown, tables and figures.

Never builds or runs a model (no import of ``isaprof.targets`` or ``isaprof.measure``), so a report is
redrawn from saved results in seconds.
"""

from isaprof.report.page import write_report

__all__ = ["write_report"]
