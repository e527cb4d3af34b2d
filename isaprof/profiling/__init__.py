"""isaprof/profiling"""
