"""Process Arrow batches of manifest lines: the function ``mapInArrow`` runs.

A plain function over ``pyarrow.RecordBatch`` iterators, testable without Spark.
One manifest line is one complete entry, so all the work for a line happens where
the line was read: no shuffle carries recordings anywhere.

Rows of one input split arrive in file order, so the function also counts the
lines of every split it sees. Those counts (``block`` rows) let the driver turn
"row k of the split starting at byte B" into a line number for rejected lines.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from alm_spark.config import BuilderConfig, OverlapConfig
from alm_spark.process import EntryProcessor, encode_json, escape_lone_surrogates
from alm_spark.schemas import (
    KIND_BLOCK,
    KIND_ENTRY,
    KIND_REJECTED,
    RESULT_ARROW_SCHEMA,
    RESULT_COUNT_COLUMNS,
    RESULT_DURATION_COLUMNS,
)


def _is_blank(text: str | None) -> bool:
    return not text or text.isspace()


class _BatchBuilder:
    """Accumulates output rows column by column."""

    def __init__(self) -> None:
        self.kind: list[str] = []
        self.line: list[str] = []
        self.counts: dict[str, list[int | None]] = {name: [] for name in RESULT_COUNT_COLUMNS}
        self.durations: dict[str, list[float | None]] = {
            name: [] for name in RESULT_DURATION_COLUMNS
        }

    def add(
        self,
        kind: str,
        line: str,
        counts: dict[str, int] | None = None,
        durations: dict[str, float] | None = None,
    ) -> None:
        self.kind.append(kind)
        self.line.append(line)
        counts = counts or {}
        durations = durations or {}
        for name, column in self.counts.items():
            column.append(counts.get(name))
        for name, dcolumn in self.durations.items():
            dcolumn.append(durations.get(name))

    def build(self) -> pa.RecordBatch:
        try:
            lines = pa.array(self.line, type=pa.string())
        except UnicodeEncodeError:
            lines = pa.array([escape_lone_surrogates(t) for t in self.line], type=pa.string())
        arrays: list[Any] = [pa.array(self.kind, type=pa.string()), lines]
        arrays += [pa.array(self.counts[name], type=pa.int64()) for name in RESULT_COUNT_COLUMNS]
        arrays += [
            pa.array(self.durations[name], type=pa.float64()) for name in RESULT_DURATION_COLUMNS
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=RESULT_ARROW_SCHEMA)


def process_line_batches(
    batches: Iterator[pa.RecordBatch], builder: BuilderConfig, overlap: OverlapConfig
) -> Iterator[pa.RecordBatch]:
    """Turn batches of ``(source, block_start, value)`` lines into result rows.

    Args:
        batches: Input lines (schema :data:`~alm_spark.schemas.MANIFEST_LINES_SCHEMA`),
            rows of one split contiguous and in file order, as Spark's scan yields them.
        builder: Builder settings.
        overlap: Overlap-filter settings.

    Yields:
        Batches of :data:`~alm_spark.schemas.RESULT_ARROW_SCHEMA`: one ``entry`` or
        ``rejected`` row per non-blank line, then one ``block`` row per split seen.
    """
    processor = EntryProcessor(builder, overlap)
    blocks: dict[tuple[str, int], list[int]] = {}
    current: tuple[str, int] | None = None
    row = -1
    tally = [0, 0]
    for batch in batches:
        out = _BatchBuilder()
        sources = batch.column("source").to_pylist()
        starts = batch.column("block_start").to_pylist()
        values = batch.column("value").to_pylist()
        for source, block_start, text in zip(sources, starts, values, strict=False):
            key = (source, block_start)
            if key != current:
                current, row = key, 0
                tally = blocks.setdefault(key, [0, 0])
            else:
                row += 1
            tally[0] += 1
            if _is_blank(text):
                tally[1] += 1
                continue
            outcome = processor.process(text)
            if outcome.line is not None:
                out.add(KIND_ENTRY, outcome.line, outcome.counts, outcome.durations)
            else:
                record = {
                    "source": source,
                    "block_start": block_start,
                    "row": row,
                    "error": outcome.error,
                    "raw": text,
                }
                out.add(
                    KIND_REJECTED, encode_json(record), {"internal_errors": int(outcome.internal)}
                )
        if out.kind:
            yield out.build()
    if blocks:
        out = _BatchBuilder()
        for (source, block_start), (lines, blank) in blocks.items():
            record = {"source": source, "block_start": block_start, "lines": lines}
            out.add(KIND_BLOCK, encode_json(record), {"lines": lines, "blank_lines": blank})
        yield out.build()
