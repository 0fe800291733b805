"""The ``dataframe`` engine: the job built from the public DataFrame API.

read -> number lines -> decode (:func:`~alm_spark.engines.frames.parse_manifests`) ->
explode segments -> builder (grouped pandas UDF) -> overlap filter (grouped pandas
UDF) -> one output line per entry. The last step joins each line's text with its
entry's rows, collected per entry in the JVM, and renders the line with the same
renderer as the fused engine, from those rows (the builder does not run again).

What it shuffles: the exploded segments (to the builder's groups), the window rows
(to the overlap filter's groups), and, for the join that renders the output, every
line's text and each entry's compact rows. The text is shuffled once; the builder's
rows are cached, as three steps read them. The fused engine shuffles nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from alm_spark.algorithm.render import LineSettings
from alm_spark.engines.base import StagedBlocks, Steps
from alm_spark.engines.frames import (
    ENTRY_KEY,
    build_entries,
    explode_segments,
    filter_overlaps,
    parse_manifests,
)
from alm_spark.engines.grouped import (
    KEPT_COLUMNS,
    ROW_STATS,
    ROW_WINDOW,
    STATS_COLUMNS,
    WINDOW_COLUMNS,
    rebuild_results,
)
from alm_spark.engines.numbering import number_lines, split_line_counts
from alm_spark.engines.results import Counter, LineTask, texts
from alm_spark.storage.outputs import ResultFiles, writing
from alm_spark.storage.schemas import RESULT_SCHEMA
from alm_spark.worker import worker_task


def render_joined_batches(
    batches: Iterator[pa.RecordBatch], settings: LineSettings, *, progress: Counter | None = None
) -> Iterator[pa.RecordBatch]:
    """Render each numbered line from its entry's DataFrame rows (``mapInArrow``).

    Args:
        batches: ``source, line, value, stats, windows, kept``: a line, its entry's
            statistics row and its lists of builder and kept windows (null for a
            line that was rejected, which is rejected here again with its reason).
        settings: The builder, the overlap filter and the records to emit.
        progress: Counts rendered lines, once per batch.

    Yields:
        Batches of :data:`~alm_spark.storage.schemas.RESULT_ARROW_SCHEMA`, as the fused
        engine's (without split counts: the lines are numbered already).
    """
    task = LineTask(settings)
    builder = settings.builder
    seen = False
    for batch in batches:
        columns = zip(
            batch.column("source").to_pylist(),
            batch.column("line").to_pylist(),
            texts(batch.column("value")),
            batch.column("stats").to_pylist(),
            batch.column("windows").to_pylist(),
            batch.column("kept").to_pylist(),
            strict=True,
        )
        for source, line, text, stats, windows, kept in columns:
            seen = True
            results = partial(
                _rebuilt, builder=builder, stats=stats, windows=windows or [], kept=kept or []
            )
            location = {"source": source, "line": line}
            yield from task.render_line(location, text or "", (source, line), results)
        if progress is not None and batch.num_rows:
            progress.add(batch.num_rows)
    yield from task.finish(seen_input=seen)


def _rebuilt(table: Any, **rows: Any) -> Any:
    return rebuild_results(table, rows["builder"], rows["stats"], rows["windows"], rows["kept"])


@dataclass
class DataFrameRun:
    """The result rows of a run and what must be released after writing them.

    Attributes:
        results_df: Rows of :data:`~alm_spark.storage.schemas.RESULT_SCHEMA`.
        total_lines: Physical lines in the input (blank ones included).
        cached: DataFrames persisted for the run.
    """

    results_df: DataFrame
    total_lines: int
    cached: list[DataFrame]

    def finish(self, observed: dict[str, Any], staged_blocks: StagedBlocks) -> dict[str, Any]:
        """The totals: blank lines never reach this engine's rows, so count them here."""
        del staged_blocks  # lines are numbered before processing: nothing to check
        written = observed["entries_written"] + observed["lines_rejected"]
        return {**observed, "blank_lines": self.total_lines - written}

    def numbered_rejected(self, rejected_df: DataFrame, staged_blocks: StagedBlocks) -> DataFrame:
        """Rejected rows carry their line number already."""
        del staged_blocks
        return rejected_df.select("source", "line", "error", "raw")

    def release(self) -> None:
        """Unpersist what the run cached."""
        for frame in self.cached:
            frame.unpersist()


def dataframe_results(
    lines_df: DataFrame,
    settings: LineSettings,
    *,
    progress: Counter | None = None,
    files: ResultFiles | None = None,
) -> DataFrameRun:
    """Chain the DataFrame API into the job's result rows.

    Args:
        lines_df: Physical lines (:data:`~alm_spark.storage.schemas.MANIFEST_LINES_SCHEMA`).
        settings: The builder, the overlap filter and the records to emit.
        progress: An accumulator counting rendered lines.
        files: Where the rendering tasks also write the data files (see
            :func:`~alm_spark.storage.outputs.write_result_batches`).
    """
    splits = split_line_counts(lines_df)
    numbered_df = number_lines(lines_df, splits)
    entries_df, _ = parse_manifests(numbered_df)
    built_df = build_entries(explode_segments(entries_df), settings.builder).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    key = list(ENTRY_KEY)
    windows_df = built_df.where(F.col("kind") == ROW_WINDOW).select(*key, *WINDOW_COLUMNS)
    stats_df = built_df.where(F.col("kind") == ROW_STATS).select(
        *key, F.struct(*STATS_COLUMNS).alias("stats")
    )
    kept_df = filter_overlaps(windows_df, settings.overlap)
    windows_per_entry = windows_df.groupBy(*key).agg(
        F.collect_list(F.struct(*WINDOW_COLUMNS)).alias("windows")
    )
    kept_per_entry = kept_df.groupBy(*key).agg(
        F.collect_list(F.struct(*KEPT_COLUMNS)).alias("kept")
    )
    compact_df = stats_df.join(windows_per_entry, key, "left").join(kept_per_entry, key, "left")
    joined_df = numbered_df.join(compact_df, key, "left").select(
        *key, "value", "stats", "windows", "kept"
    )
    render: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]] = partial(
        render_joined_batches, settings=settings, progress=progress
    )
    if files is not None:
        render = writing(render, files)
    total = sum(lines for _, lines in splits.values())
    return DataFrameRun(joined_df.mapInArrow(worker_task(render), RESULT_SCHEMA), total, [built_df])


class DataFrameEngine:
    """The job as chained DataFrame steps, with grouped maps per entry."""

    name = "dataframe"

    def start(
        self,
        lines_df: DataFrame,
        settings: LineSettings,
        steps: Steps,
        files: ResultFiles | None = None,
    ) -> DataFrameRun:
        """The result rows; numbering the lines first needs every split's line count."""
        with steps.timed("count_lines"):
            return dataframe_results(lines_df, settings, progress=steps.counter, files=files)
