"""The fused engine: every line's whole job in one ``mapInArrow`` where it was read.

:func:`map_line_batches` is a plain function over ``pyarrow.RecordBatch`` iterators,
testable without Spark. One manifest line is one complete entry, so all the work for a
line happens in the task that read it: decode, build windows, filter overlaps, render.
No shuffle carries recordings anywhere.

Rows of one input split arrive in file order, so the function also counts the lines
of every split it sees. Those counts (``block`` rows) let the driver turn "row k of the
split starting at byte B" into a line number for rejected lines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
from pyspark.sql import DataFrame

from alm_spark.algorithm.encode import dumps
from alm_spark.algorithm.render import LineSettings
from alm_spark.engines.base import StagedBlocks, Steps
from alm_spark.engines.numbering import split_line_counts
from alm_spark.engines.results import Counter, LineTask, is_blank, texts
from alm_spark.engines.transforms import with_line_numbers
from alm_spark.errors import AlmSparkError
from alm_spark.rows import KIND_BLOCK
from alm_spark.storage.outputs import ResultFiles, writing
from alm_spark.storage.schemas import MANIFEST_LINES_SCHEMA, RESULT_SCHEMA
from alm_spark.worker import worker_task

#: A split: its file (as Spark names it, URL-encoded) and the byte its block starts at.
Split = tuple[str, int]


class _SplitTally:
    """Counts each split's lines and blank lines, and numbers rows within a split."""

    def __init__(self, line_offsets: Mapping[Split, int] | None) -> None:
        self.line_offsets = line_offsets
        self.counts: dict[Split, list[int]] = {}
        self.current: Split | None = None
        self.row = -1
        self.offset = 0

    def see(self, split: Split) -> list[int]:
        """Move to the next row (of ``split``); returns the split's ``[lines, blank]``."""
        if split == self.current:
            self.row += 1
            return self.counts[split]
        self.current, self.row = split, 0
        if self.line_offsets is not None:
            found = self.line_offsets.get(split)
            if found is None:
                raise RuntimeError(
                    f"no line count for the split of {split[0]} at byte {split[1]}: "
                    "the input was split differently when its lines were counted"
                )
            self.offset = found
        return self.counts.setdefault(split, [0, 0])

    def block_rows(self) -> Iterator[tuple[bytes, dict[str, int]]]:
        """One ``block`` record and its figures per split seen."""
        for (source, block_start), (lines, blank) in self.counts.items():
            record = {"source": unquote(source), "block_start": block_start, "lines": lines}
            yield dumps(record), {"lines": lines, "blank_lines": blank}


def map_line_batches(
    batches: Iterator[pa.RecordBatch],
    settings: LineSettings,
    *,
    line_offsets: Mapping[Split, int] | None = None,
    progress: Counter | None = None,
) -> Iterator[pa.RecordBatch]:
    """Turn batches of ``(source, block_start, value)`` lines into result rows.

    Args:
        batches: Input lines (:data:`~alm_spark.rows.MANIFEST_LINE`), rows of one split
            contiguous and in file order, as Spark's scan yields them.
        settings: The builder, the overlap filter and the records to emit.
        line_offsets: Lines before each ``(source, block_start)`` split, needed to key
            separate lost-window and windows-table records by line number.
        progress: Counts processed non-blank lines, once per input batch.

    Yields:
        Batches of :data:`~alm_spark.rows.RESULT`: one ``entry`` or ``rejected`` row per
        non-blank line (plus ``lost`` and ``window`` rows when asked for), then one
        ``block`` row per split and the task's ``report`` rows.

    Raises:
        RuntimeError: When a split has no line count (the input was split differently
            when its lines were counted).
    """
    keyed = settings.options.keyed
    if keyed and line_offsets is None:
        raise ValueError("separate lost windows and the windows table need line_offsets")
    task = LineTask(settings)
    tally = _SplitTally(line_offsets)
    for batch in batches:
        sources = batch.column("source").to_pylist()
        starts = batch.column("block_start").to_pylist()
        processed = 0
        for source, block_start, text in zip(
            sources, starts, texts(batch.column("value")), strict=True
        ):
            counts = tally.see((source, block_start))
            counts[0] += 1
            if text is None or is_blank(text):
                counts[1] += 1
                continue
            processed += 1
            path = unquote(source)
            location = {"source": path, "block_start": block_start, "row": tally.row}
            key = (path, tally.offset + tally.row + 1) if keyed else None
            yield from task.render_line(location, text, key)
        if progress is not None and processed:
            progress.add(processed)
    for record, figures in tally.block_rows():
        task.out.add(KIND_BLOCK, record, figures)
    yield from task.finish(seen_input=bool(tally.counts))


def map_lines_to_results(
    lines_df: DataFrame,
    settings: LineSettings,
    *,
    line_offsets: Mapping[Split, int] | None = None,
    progress: Counter | None = None,
    files: ResultFiles | None = None,
) -> DataFrame:
    """Build windows and filter overlaps for every line, where the line was read.

    Each manifest line is a complete, independent entry, so the builder and the
    overlap filter run per entry inside the partition that read it (``mapInArrow``):
    nothing is shuffled.

    Args:
        lines_df: Lines (:data:`~alm_spark.rows.MANIFEST_LINE`).
        settings: The builder, the overlap filter and the records to emit.
        line_offsets: Lines before each split, for keyed records
            (:attr:`~alm_spark.algorithm.render.RowOptions.keyed`).
        progress: An accumulator counting processed lines.
        files: Where the same tasks write the data files (then entry rows carry empty
            records: :func:`~alm_spark.storage.outputs.write_result_batches`).

    Returns:
        Rows of :data:`~alm_spark.rows.RESULT`: ``entry`` rows (output lines and their
        figures), ``rejected`` rows, ``lost`` and ``window`` rows when asked for,
        per-split ``block`` rows and each task's ``report`` rows.
    """
    process: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]] = partial(
        map_line_batches, settings=settings, line_offsets=line_offsets, progress=progress
    )
    if files is not None:
        process = writing(process, files)
    return lines_df.select(*MANIFEST_LINES_SCHEMA.names).mapInArrow(
        worker_task(process), RESULT_SCHEMA
    )


@dataclass
class FusedRun:
    """The fused engine's rows for one run (see :class:`~alm_spark.engines.base.EngineRun`).

    Attributes:
        results_df: The result rows.
        counted: Lines per split as the counting pass saw them (keyed runs only), to
            check the processing pass split the input alike.
    """

    results_df: DataFrame
    counted: dict[Split, int] | None = field(default=None)

    def finish(self, observed: dict[str, Any], staged_blocks: StagedBlocks) -> dict[str, Any]:
        """The totals: block rows counted the blank lines; keyed runs check the splits."""
        if self.counted is not None:
            seen = {(r["source"], r["block_start"]): r["lines"] for r in staged_blocks().collect()}
            if seen != self.counted:
                raise AlmSparkError(
                    "the input was split differently by the line count and by the processing "
                    "pass, so lost-window keys would be wrong; nothing was published (rerun, "
                    "or set spark.conf.spark.sql.files.minPartitionNum)"
                )
        return observed

    def numbered_rejected(self, rejected_df: DataFrame, staged_blocks: StagedBlocks) -> DataFrame:
        """Rejected rows say "row k of the split at byte B": numbered from the block rows."""
        return rejected_df.transform(with_line_numbers, staged_blocks())

    def release(self) -> None:
        """Nothing is cached."""


class FusedEngine:
    """One ``mapInArrow`` pass over the lines where they were read (the default)."""

    name = "fused"

    def start(
        self,
        lines_df: DataFrame,
        settings: LineSettings,
        steps: Steps,
        files: ResultFiles | None = None,
    ) -> FusedRun:
        """The result rows; keyed records first need every split's line count (one job)."""
        if not settings.options.keyed:
            return FusedRun(
                map_lines_to_results(lines_df, settings, progress=steps.counter, files=files)
            )
        steps.step("counting lines, to key records by line number")
        with steps.timed("count_lines"):
            splits = split_line_counts(lines_df)
        offsets = {split: before for split, (before, _) in splits.items()}
        counted = {(unquote(source), at): lines for (source, at), (_, lines) in splits.items()}
        results_df = map_lines_to_results(
            lines_df, settings, line_offsets=offsets, progress=steps.counter, files=files
        )
        return FusedRun(results_df, counted)
