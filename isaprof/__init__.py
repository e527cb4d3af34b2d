"""isaprof: what attention blocks for dense prediction really cost.

>>> import isaprof
>>> block = isaprof.build("isa", channels=64, factor=(8, 8))
>>> rec = isaprof.profile("isa", size=(97, 97), channels=64, device="meta", factor=(8, 8))
>>> rec.macs == rec.macs_analytic
True
"""

from isaprof.blocks import build, names

# NB: imported eagerly so that ``isaprof.profile`` is the function, not the submodule of the same name
# (importing a submodule binds its name on the package; binding the function afterwards wins).
from isaprof.profile import Record, profile

__all__ = ["Record", "build", "names", "profile"]
