"""Benchmarks: timing helpers and the scripts that write reports/."""
