"""DataFrame transformations of the job, chained with ``df.transform(...)``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pyarrow as pa
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from alm_spark.config import BuilderConfig, OverlapConfig
from alm_spark.engines.fused import map_line_batches
from alm_spark.engines.results import Counter
from alm_spark.names import KIND_ENTRY, KIND_REJECTED
from alm_spark.storage.schemas import (
    MANIFEST_LINES_SCHEMA,
    RESULT_COUNT_COLUMNS,
    RESULT_DURATION_COLUMNS,
    RESULT_SCHEMA,
)


def map_lines_to_results(
    lines_df: DataFrame,
    builder: BuilderConfig,
    overlap: OverlapConfig,
    *,
    lost_windows: str = "inline",
    windows_table: bool = False,
    audio_path_field: str | None = None,
    line_offsets: Mapping[tuple[str, int], int] | None = None,
    progress: Counter | None = None,
) -> DataFrame:
    """Build windows and filter overlaps for every line, where the line was read.

    Each manifest line is a complete, independent entry, so the builder and the
    overlap filter run per entry inside the partition that read it
    (``mapInArrow``): nothing is shuffled.

    Args:
        lines_df: Lines with :data:`~alm_spark.storage.schemas.MANIFEST_LINES_SCHEMA`.
        builder: Builder settings.
        overlap: Overlap-filter settings.
        lost_windows: ``output.lost_window_details``.
        windows_table: Also emit windows-table records (``output.windows_table``).
        audio_path_field: With window rows, also carry this manifest field as ``audio_path``
            (``audio.path_field``, for the audio step).
        line_offsets: Lines before each split (:func:`with_split_offsets`), for
            ``lost_windows="separate"`` and the windows table.
        progress: An accumulator counting processed lines.

    Returns:
        Rows of :data:`~alm_spark.storage.schemas.RESULT_SCHEMA`: ``entry`` rows (output lines
        and their figures), ``rejected`` rows, ``lost`` rows (separate lost windows),
        per-split ``block`` rows and each task's ``report`` rows.
    """

    def process(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return map_line_batches(
            batches,
            builder,
            overlap,
            lost_windows=lost_windows,
            windows_table=windows_table,
            audio_path_field=audio_path_field,
            line_offsets=line_offsets,
            progress=progress,
        )

    return lines_df.select(*MANIFEST_LINES_SCHEMA.names).mapInArrow(process, RESULT_SCHEMA)


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


def with_split_offsets(lines_df: DataFrame) -> DataFrame:
    """Count the lines of each input split, and of the same file's earlier splits.

    Args:
        lines_df: Lines with :data:`~alm_spark.storage.schemas.MANIFEST_LINES_SCHEMA`.

    Returns:
        ``source, block_start, lines, offset``: one small row per split.
    """
    counts_df = lines_df.groupBy("source", "block_start").agg(F.count("*").alias("lines"))
    return counts_df.transform(with_earlier_lines)


def sum_figures(figures_df: DataFrame) -> DataFrame:
    """Sum the tasks' report figures by metric and key."""
    values = [c for c in figures_df.columns if c.startswith("v")]
    return figures_df.groupBy("metric", "key").agg(*(F.sum(c).alias(c) for c in values))
