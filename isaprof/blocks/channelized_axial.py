"""Placeholder: block not written yet."""
