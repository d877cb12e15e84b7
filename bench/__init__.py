"""Benchmarks (``make bench``): each prints its measurement next to a baseline and the ratio."""
