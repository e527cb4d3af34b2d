"""isaprof: what attention blocks for dense prediction really cost.

>>> import isaprof
>>> block = isaprof.build("isa", channels=64, factor=(8, 8))
"""

from isaprof.blocks import build, names

__all__ = ["build", "names", "profile"]


def __getattr__(name: str):  # lazy: profiling pulls in the measurement stack
    if name == "profile":
        from isaprof.profile import profile

        return profile
    raise AttributeError(name)
