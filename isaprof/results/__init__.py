"""isaprof/results"""
