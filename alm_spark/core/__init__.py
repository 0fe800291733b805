"""The core: window logic, line validation, rendering, figures and the report.

Plain Python and NumPy; nothing here imports pyspark, so every piece runs and is
tested without a JVM. :mod:`alm_spark.spark` builds on it, never the
other way round.
"""
