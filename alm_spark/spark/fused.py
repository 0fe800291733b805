"""Process Arrow batches of manifest lines: the function ``mapInArrow`` runs.

A plain function over ``pyarrow.RecordBatch`` iterators, testable without Spark.
One manifest line is one complete entry, so all the work for a line happens where
the line was read: no shuffle carries recordings anywhere.

Rows of one input split arrive in file order, so the function also counts the
lines of every split it sees. Those counts (``block`` rows) let the driver turn
"row k of the split starting at byte B" into a line number for rejected lines.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol
from urllib.parse import unquote

import numpy as np
import pyarrow as pa

from alm_spark.core.config import BuilderConfig, OverlapConfig
from alm_spark.core.figures import FigureAccumulator, figure_record
from alm_spark.core.names import KIND_BLOCK, KIND_ENTRY, KIND_LOST, KIND_REJECTED, KIND_REPORT
from alm_spark.core.render import EntryRenderer, dumps
from alm_spark.spark.schemas import (
    RESULT_ARROW_SCHEMA,
    RESULT_COUNT_COLUMNS,
    RESULT_DURATION_COLUMNS,
)

#: Output rows are handed to Spark once they hold this many bytes (an output line can
#: be 10x its input line), which bounds the Python worker's memory.
OUTPUT_BATCH_BYTES = 64 * 1024 * 1024
#: Arrow string arrays use 32-bit offsets: one batch holds less than 2 GiB.
MAX_BATCH_BYTES = 2**31 - 1


class Counter(Protocol):
    """Something to report progress to (a Spark accumulator)."""

    def add(self, term: int) -> None:
        """Add processed lines."""


def _is_blank(text: object) -> bool:
    return not text or (isinstance(text, str) and text.isspace())


class _Undecodable:
    """A line whose bytes are not valid UTF-8 (the text reader passes them through)."""

    def __init__(self, raw: bytes, err: UnicodeDecodeError) -> None:
        self.text = raw.decode("utf-8", errors="replace")
        self.error = f"not valid UTF-8: byte 0x{raw[err.start]:02x} at offset {err.start}"


def _decode(raw: bytes | None) -> str | _Undecodable | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return _Undecodable(raw, err)


def _texts(column: pa.Array) -> list[str | _Undecodable | None]:
    """Line texts; a line with invalid UTF-8 must not fail the whole batch."""
    try:
        return column.to_pylist()  # type: ignore[no-any-return]
    except UnicodeDecodeError:
        return [_decode(raw) for raw in column.view(pa.binary()).to_pylist()]


def string_array(items: list[bytes]) -> pa.Array:
    """An Arrow UTF-8 array from encoded strings, without re-encoding them."""
    lengths = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
    offsets = np.zeros(len(items) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    buffers = [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(b"".join(items))]
    return pa.Array.from_buffers(pa.string(), len(items), buffers)


class _BatchBuilder:
    """Accumulates output rows column by column."""

    def __init__(self) -> None:
        self.kind: list[str] = []
        self.record: list[bytes] = []
        self.size = 0
        self.counts: dict[str, list[int | None]] = {name: [] for name in RESULT_COUNT_COLUMNS}
        self.durations: dict[str, list[float | None]] = {
            name: [] for name in RESULT_DURATION_COLUMNS
        }

    def add(
        self,
        kind: str,
        record: bytes,
        counts: dict[str, int] | None = None,
        durations: dict[str, float] | None = None,
    ) -> None:
        self.kind.append(kind)
        self.record.append(record)
        self.size += len(record)
        counts = counts or {}
        durations = durations or {}
        for name, column in self.counts.items():
            column.append(counts.get(name))
        for name, dcolumn in self.durations.items():
            dcolumn.append(durations.get(name))

    def room_for(self, size: int) -> bool:
        return not self.kind or self.size + size <= OUTPUT_BATCH_BYTES

    def build(self) -> pa.RecordBatch:
        arrays: list[pa.Array] = [pa.array(self.kind, type=pa.string()), string_array(self.record)]
        arrays += [pa.array(self.counts[name], type=pa.int64()) for name in RESULT_COUNT_COLUMNS]
        arrays += [
            pa.array(self.durations[name], type=pa.float64()) for name in RESULT_DURATION_COLUMNS
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=RESULT_ARROW_SCHEMA)


def _rejected(
    source: str, block_start: int, row: int, error: str, text: str, *, internal: bool = False
) -> tuple[str, bytes, dict[str, int], dict[str, float]]:
    record = {
        "source": unquote(source),
        "block_start": block_start,
        "row": row,
        "error": error,
        "raw": text,
    }
    return KIND_REJECTED, dumps(record), {"internal_errors": int(internal)}, {}


class _Task:
    """The state of one task: the renderer, figures, split counts, pending output."""

    def __init__(
        self,
        builder: BuilderConfig,
        overlap: OverlapConfig,
        lost_windows: str,
        line_offsets: Mapping[tuple[str, int], int] | None,
    ) -> None:
        self.renderer = EntryRenderer(builder, overlap, lost_windows)
        self.figures = FigureAccumulator(builder)
        self.line_offsets = line_offsets
        self.blocks: dict[tuple[str, int], list[int]] = {}
        self.out = _BatchBuilder()

    def emit(
        self, kind: str, record: bytes, counts: dict[str, int], durations: dict[str, float]
    ) -> Iterator[pa.RecordBatch]:
        if not self.out.room_for(len(record)):
            yield self.out.build()
            self.out = _BatchBuilder()
        self.out.add(kind, record, counts, durations)

    def render_line(
        self, source: str, block_start: int, row: int, text: object
    ) -> Iterator[pa.RecordBatch]:
        """Render one non-blank line into its output row (or its rejection)."""
        if not isinstance(text, str):
            assert isinstance(text, _Undecodable)
            self.figures.reject(text.error)
            yield from self.emit(*_rejected(source, block_start, row, text.error, text.text))
            return
        entry_key = None
        if self.line_offsets is not None:
            offset = self.line_offsets.get((source, block_start))
            if offset is None:
                raise RuntimeError(
                    f"no line count for the split of {source} at byte {block_start}: the input "
                    "was split differently when its lines were counted"
                )
            entry_key = (unquote(source), offset + row + 1)
        outcome = self.renderer.render(text, entry_key)
        if outcome.output is None or len(outcome.output) >= MAX_BATCH_BYTES:
            error = outcome.error or "the output line would exceed 2 GiB"
            self.figures.reject(error)
            yield from self.emit(
                *_rejected(source, block_start, row, error, text, internal=outcome.internal)
            )
            return
        self.figures.add(outcome)
        yield from self.emit(KIND_ENTRY, outcome.output, outcome.counts, outcome.durations)
        if outcome.lost_windows is not None:
            yield from self.emit(KIND_LOST, outcome.lost_windows, {}, {})

    def finish(self) -> Iterator[pa.RecordBatch]:
        """The split counts and figures, then whatever output is pending."""
        for (source, block_start), (lines, blank) in self.blocks.items():
            record = {"source": unquote(source), "block_start": block_start, "lines": lines}
            self.out.add(KIND_BLOCK, dumps(record), {"lines": lines, "blank_lines": blank})
        for figure in self.figures.rows() if self.blocks else ():
            self.out.add(KIND_REPORT, figure_record(figure))
        if self.out.kind:
            yield self.out.build()


def map_line_batches(
    batches: Iterator[pa.RecordBatch],
    builder: BuilderConfig,
    overlap: OverlapConfig,
    *,
    lost_windows: str = "inline",
    line_offsets: Mapping[tuple[str, int], int] | None = None,
    progress: Counter | None = None,
) -> Iterator[pa.RecordBatch]:
    """Turn batches of ``(source, block_start, value)`` lines into result rows.

    Args:
        batches: Input lines (schema :data:`~alm_spark.spark.schemas.MANIFEST_LINES_SCHEMA`),
            rows of one split contiguous and in file order, as Spark's scan yields them.
        builder: Builder settings.
        overlap: Overlap-filter settings.
        lost_windows: ``inline``, ``separate`` or ``drop`` (``output.lost_window_details``).
        line_offsets: Lines before each ``(source, block_start)`` split, needed to key
            separate lost-window records by line number.
        progress: Counts processed non-blank lines, once per input batch.

    Yields:
        Batches of :data:`~alm_spark.spark.schemas.RESULT_ARROW_SCHEMA`: one ``entry`` or
        ``rejected`` row per non-blank line (plus a ``lost`` row per entry in separate
        mode), then one ``block`` row per split and the task's ``report`` rows.
    """
    if lost_windows == "separate" and line_offsets is None:
        raise ValueError("separate lost windows need line_offsets")
    task = _Task(builder, overlap, lost_windows, line_offsets)
    current: tuple[str, int] | None = None
    row = -1
    tally = [0, 0]
    for batch in batches:
        sources = batch.column("source").to_pylist()
        starts = batch.column("block_start").to_pylist()
        processed = 0
        for source, block_start, text in zip(
            sources, starts, _texts(batch.column("value")), strict=True
        ):
            if (source, block_start) != current:
                current, row = (source, block_start), 0
                tally = task.blocks.setdefault(current, [0, 0])
            else:
                row += 1
            tally[0] += 1
            if _is_blank(text):
                tally[1] += 1
                continue
            processed += 1
            yield from task.render_line(source, block_start, row, text)
        if progress is not None and processed:
            progress.add(processed)
    yield from task.finish()
