"""Audio: cutting kept windows into clips, tar shards, and the executor tasks that do it.

Cutting (:mod:`~alm_spark.audio.cut`) and shards (:mod:`~alm_spark.audio.shards`) never
import pyspark.
"""
