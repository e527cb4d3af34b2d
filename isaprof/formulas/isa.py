"""Placeholder: formula not written yet."""
