"""Loaders for the benchmark data sets; the public face is `accjax.datasets`."""
