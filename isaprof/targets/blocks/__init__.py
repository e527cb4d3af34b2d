"""isaprof/targets/blocks"""
