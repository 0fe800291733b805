"""The audio step's committed rows read back on the driver.

Each task attempt writes its shards and returns one ``shard`` row per file; those rows
are written through Spark's commit protocol, so the rows that reach the scratch folder
are exactly the committed attempts'. :func:`committed_shards` names only their files.
"""

from __future__ import annotations

from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from alm_spark.engines.transforms import sums_or_zero
from alm_spark.names import AUDIO_COUNTS, AUDIO_SECONDS
from alm_spark.rows import KIND_AUDIO_FIGURES, KIND_CLIP, KIND_SHARD, KIND_WAITING
from alm_spark.storage.fs import FileSystem
from alm_spark.storage.io import escape_glob
from alm_spark.storage.schemas import (
    AUDIO_FIGURES_SCHEMA,
    CLIP_SCHEMA,
    SHARD_SCHEMA,
    WAITING_SCHEMA,
)


def sum_audio_figures(spark: SparkSession, staged_dir: str) -> dict[str, Any]:
    """The step's figures summed over the committed tasks (one row reaches the driver)."""
    where = escape_glob(f"{staged_dir}/kind={KIND_AUDIO_FIGURES}")
    figures_df = spark.read.schema(AUDIO_FIGURES_SCHEMA).json(where)
    (row,) = figures_df.agg(*sums_or_zero([*AUDIO_COUNTS, *AUDIO_SECONDS])).collect()
    return row.asDict()


def clips_per_bucket(ordered_df: DataFrame) -> dict[int, int]:
    """Ordered clip rows counted per shuffle bucket (a few thousand numbers reach the driver)."""
    counted = ordered_df.groupBy("bucket").count().collect()
    return {int(row["bucket"]): int(row["count"]) for row in counted}


def first_pass_shards(
    spark: SparkSession, fs: FileSystem, staged_dir: str
) -> list[tuple[str, int, int]]:
    """The committed first-pass shards as ``(name, clips, bytes)`` (one row per shard)."""
    rows = _shard_rows(spark, fs, staged_dir)
    return [(row["name"], int(row["clips"]), int(row["bytes"])) for row in rows]


def _shard_rows(spark: SparkSession, fs: FileSystem, staged_dir: str) -> list[dict[str, Any]]:
    """The committed attempts' ``shard`` rows, by name (one small row per shard)."""
    return _committed_rows(spark, fs, staged_dir, KIND_SHARD, SHARD_SCHEMA)


def _committed_rows(
    spark: SparkSession, fs: FileSystem, staged_dir: str, kind: str, schema: Any
) -> list[dict[str, Any]]:
    """The committed attempts' small rows of ``kind``, by name (none: no folder)."""
    where = f"{staged_dir}/kind={kind}"
    if not fs.exists(where):
        return []
    rows_df = spark.read.schema(schema).json(escape_glob(where))
    # Sorted here: a few rows, where Spark's orderBy would run a job to sample them first.
    return sorted((row.asDict() for row in rows_df.collect()), key=lambda row: row["name"])


def committed_shards(spark: SparkSession, fs: FileSystem, staged_dir: str) -> list[dict[str, Any]]:
    """The shards the committed attempts wrote into the output, in name order.

    Files of failed, killed or speculative attempts are not among them; the step
    deletes them by its name prefix.

    Returns:
        One ``{name, clips, bytes, seconds, manifest}`` per shard, paths relative to the
        output.
    """
    shards = _shard_rows(spark, fs, staged_dir)
    return sorted(shards, key=lambda s: (len(s["name"]), s["name"]))  # audio_2 < audio_10


def read_clip_rows(spark: SparkSession, staged_dir: str) -> DataFrame:
    """The first pass's committed ``clip`` rows (:data:`~alm_spark.rows.CLIP`)."""
    return spark.read.schema(CLIP_SCHEMA).json(escape_glob(f"{staged_dir}/kind={KIND_CLIP}"))


def waiting_clip_rows(spark: SparkSession, rows_files: list[str]) -> DataFrame:
    """The ``clip`` rows of clips earlier steps left waiting (their files' full paths)."""
    return spark.read.schema(CLIP_SCHEMA).json([escape_glob(path) for path in rows_files])


def waiting_tars(clips_df: DataFrame) -> list[tuple[str, int, int]]:
    """The waiting tars as ``(name, clips, bytes)``, from their clip rows (a row each)."""
    counted = clips_df.groupBy("shard").agg(F.count("*").alias("n"), F.sum("size").alias("b"))
    return [(row["shard"], int(row["n"]), int(row["b"])) for row in counted.collect()]


def committed_waiting(spark: SparkSession, fs: FileSystem, staged_dir: str) -> list[str]:
    """The files the committed attempts wrote for clips left waiting (tar, rows)."""
    found = _committed_rows(spark, fs, staged_dir, KIND_WAITING, WAITING_SCHEMA)
    return sorted(path for row in found for path in (row["name"], row["rows"]))
