"""isaprof/studies"""
