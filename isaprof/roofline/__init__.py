"""isaprof/roofline"""
