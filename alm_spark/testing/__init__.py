"""Seeded test manifests and audio, and spec §3 output comparison.

Used by the tests, the benchmarks, the README examples and ``alm-spark compare``.
"""
