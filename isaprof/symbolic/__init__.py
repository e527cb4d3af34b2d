"""isaprof/symbolic"""
