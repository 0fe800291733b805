"""DataFrame transformations of the job, chained with ``df.transform(...)``."""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from alm_spark.rows import KIND_ENTRY, KIND_REJECTED, RESULT_COUNT_COLUMNS, RESULT_DURATION_COLUMNS


def result_metrics() -> list[Column]:
    """Aggregates over the processing step's rows, for ``DataFrame.observe``.

    Computed on the executors while the output is written; only one row of
    totals reaches the driver.
    """
    kind = F.col("kind")
    exprs = [
        F.count(F.when(kind == KIND_ENTRY, 1)).alias("entries_written"),
        F.count(F.when(kind == KIND_REJECTED, 1)).alias("lines_rejected"),
    ]
    exprs += [F.coalesce(F.sum(name), F.lit(0)).alias(name) for name in RESULT_COUNT_COLUMNS]
    exprs += [F.coalesce(F.sum(name), F.lit(0.0)).alias(name) for name in RESULT_DURATION_COLUMNS]
    return exprs


def with_earlier_lines(blocks_df: DataFrame) -> DataFrame:
    """Add ``offset``: the lines in earlier splits of the same file.

    Args:
        blocks_df: One row per split: ``source, block_start, lines``.
    """
    earlier = (
        Window.partitionBy("source")
        .orderBy("block_start")
        .rowsBetween(Window.unboundedPreceding, -1)
    )
    return blocks_df.withColumn("offset", F.coalesce(F.sum("lines").over(earlier), F.lit(0)))


def with_line_numbers(rejected_df: DataFrame, blocks_df: DataFrame) -> DataFrame:
    """Turn "row k of the split at byte B" into the line's 1-based number in its file.

    Args:
        rejected_df: Staged rejected records (``source, block_start, row, error, raw``).
        blocks_df: Staged split records (``source, block_start, lines``), from the same job.

    Returns:
        ``source, line, error, raw``.
    """
    offsets_df = blocks_df.transform(with_earlier_lines).select("source", "block_start", "offset")
    return rejected_df.join(offsets_df, ["source", "block_start"], "left").select(
        "source",
        (F.coalesce(F.col("offset"), F.lit(0)) + F.col("row") + 1).alias("line"),
        "error",
        "raw",
    )


def sum_figures(figures_df: DataFrame) -> DataFrame:
    """Sum the tasks' report figures by metric and key."""
    values = [c for c in figures_df.columns if c.startswith("v")]
    return figures_df.groupBy("metric", "key").agg(*(F.sum(c).alias(c) for c in values))
