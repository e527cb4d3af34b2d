"""isaprof's tests: one folder per package layer (``tests/<layer>/test_<module>.py``)."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent  # the checkout: reference/, examples/, Makefile
