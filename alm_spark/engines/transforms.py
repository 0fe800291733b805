"""DataFrame transformations of the job, chained with ``df.transform(...)``."""

from __future__ import annotations

from collections.abc import Iterable

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from alm_spark.rows import KIND_ENTRY, KIND_REJECTED, RESULT_COUNT_COLUMNS, RESULT_DURATION_COLUMNS


def sums_or_zero(names: Iterable[str], zero: str = "0") -> list[Column]:
    """``coalesce(sum(name), zero) AS name`` for each column.

    Written as SQL text, which Spark parses in one call from Python per column: built
    from ``F`` functions, each took about ten calls to the JVM, and summing a step's
    figures made thousands of them.

    Args:
        names: The columns to sum.
        zero: The SQL literal an empty sum becomes (``0``, or ``0D`` for doubles).
    """
    return [F.expr(f"coalesce(sum(`{name}`), {zero}) AS `{name}`") for name in names]


def result_metrics() -> list[Column]:
    """Aggregates over the processing step's rows, for ``DataFrame.observe``.

    Computed on the executors while the output is written; only one row of
    totals reaches the driver.
    """
    return [
        F.expr(f"count(CASE WHEN kind = '{KIND_ENTRY}' THEN 1 END) AS entries_written"),
        F.expr(f"count(CASE WHEN kind = '{KIND_REJECTED}' THEN 1 END) AS lines_rejected"),
        *sums_or_zero(RESULT_COUNT_COLUMNS),
        *sums_or_zero(RESULT_DURATION_COLUMNS, "0D"),
    ]


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
    return figures_df.groupBy("metric", "key").agg(
        *(F.expr(f"sum(`{c}`) AS `{c}`") for c in values)
    )


#: Spark's hash partitioning: ``pmod(murmur3(columns, seed 42), partitions)``.
_HASH_SEED = 42
_WORD = 0xFFFFFFFF


def _rotate(value: int, bits: int) -> int:
    return ((value << bits) | (value >> (32 - bits))) & _WORD


def hash_partition_of(value: int, partitions: int) -> int:
    """The partition ``repartition(partitions, column)`` sends ``value`` to, in an int column.

    Spark's Murmur3 of one 32-bit int (``Murmur3_x86_32.hashInt``, seed 42), taken
    modulo the partitions as ``pmod`` does (a long column hashes otherwise).
    """
    k1 = _rotate(((value & _WORD) * 0xCC9E2D51) & _WORD, 15) * 0x1B873593 & _WORD
    h1 = (_rotate(_HASH_SEED ^ k1, 13) * 5 + 0xE6546B64) & _WORD
    h1 ^= 4  # the length in bytes
    h1 = ((h1 ^ (h1 >> 16)) * 0x85EBCA6B) & _WORD
    h1 = ((h1 ^ (h1 >> 13)) * 0xC2B2AE35) & _WORD
    h1 ^= h1 >> 16
    signed = h1 - (1 << 32) if h1 >= 1 << 31 else h1
    return signed % partitions


def partition_keys(partitions: int) -> list[int]:
    """For each partition ``p``, the smallest int that hash partitioning sends to ``p``."""
    keys: dict[int, int] = {}
    value = 0
    while len(keys) < partitions:
        keys.setdefault(hash_partition_of(value, partitions), value)
        value += 1
    return [keys[p] for p in range(partitions)]


def in_tasks(df: DataFrame, column: str, tasks: int) -> DataFrame:
    """Repartition ``df`` into ``tasks`` partitions, the rows whose ``column`` is ``p`` in ``p``.

    Hashing the column's values themselves would put some in one partition and leave
    others empty, and a range partitioning runs a job over the rows first to sample
    them; instead each value is hashed as the key that lands it in its own partition.
    Were Spark's hash to differ, rows of one value would still share a partition, only
    less evenly spread.

    Args:
        df: Rows with an integer ``column`` in ``[0, tasks)``.
        column: The task of each row.
        tasks: The partitions.
    """
    keys = F.array(*(F.lit(key) for key in partition_keys(tasks)))
    key = F.element_at(keys, F.col(column).cast("int") + 1)
    return df.withColumn("_task_key", key).repartition(tasks, "_task_key").drop("_task_key")
