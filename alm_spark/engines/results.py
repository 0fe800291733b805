"""Result rows, the common output of both engines: what a task emits and how.

Each engine ends in a ``mapInArrow`` whose task renders lines with
:class:`~alm_spark.algorithm.render.EntryRenderer` and emits rows of
:data:`~alm_spark.rows.RESULT` through a :class:`LineTask`:
output lines with their figures, rejected-line records, separate lost-window
records, windows-table records and, when the task ends, its summed report figures.
Plain functions over pyarrow, testable without Spark.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from alm_spark.algorithm.encode import dumps
from alm_spark.algorithm.process import ResultsProvider
from alm_spark.algorithm.render import EntryRenderer, LineSettings
from alm_spark.report.figures import FigureAccumulator, figure_record
from alm_spark.rows import (
    KIND_ENTRY,
    KIND_LOST,
    KIND_REJECTED,
    KIND_REPORT,
    KIND_WINDOW,
    RESULT,
    RESULT_COUNT_COLUMNS,
    RESULT_DURATION_COLUMNS,
)

#: Output rows are handed to Spark once they hold this many bytes (an output line can
#: be 10x its input line), which bounds the Python worker's memory.
OUTPUT_BATCH_BYTES = 64 * 1024 * 1024
#: Arrow string arrays use 32-bit offsets: one batch holds less than 2 GiB.
MAX_BATCH_BYTES = 2**31 - 1
_RESULT_ARROW = RESULT.arrow_schema()


class Counter(Protocol):
    """Something to report progress to (a Spark accumulator)."""

    def add(self, term: int) -> None:
        """Add processed lines."""


def is_blank(text: object) -> bool:
    """A line that is skipped, not rejected: empty or only whitespace."""
    return not text or (isinstance(text, str) and text.isspace())


class Undecodable:
    """A line whose bytes are not valid UTF-8 (the text reader passes them through)."""

    def __init__(self, raw: bytes, err: UnicodeDecodeError) -> None:
        """Keep a readable form of the line and the reason it is rejected."""
        self.text = raw.decode("utf-8", errors="replace")
        self.error = f"not valid UTF-8: byte 0x{raw[err.start]:02x} at offset {err.start}"


def _decode(raw: bytes | None) -> str | Undecodable | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        return Undecodable(raw, err)


def texts(column: pa.Array) -> list[str | Undecodable | None]:
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
        return pa.RecordBatch.from_arrays(arrays, schema=_RESULT_ARROW)


class LineTask:
    """One task's state: the renderer, its figures and the pending output rows.

    ``location`` arguments say where a line was, as the staged rejected record
    holds it: ``{"source", "line"}`` when the line number is known, or
    ``{"source", "block_start", "row"}`` to be numbered later from split counts;
    ``source`` is the file's path as written in records (not URL-encoded).
    """

    def __init__(self, settings: LineSettings) -> None:
        """Set up the renderer and the figures for the task's settings."""
        self.renderer = EntryRenderer(settings.builder, settings.overlap, settings.options)
        self.figures = FigureAccumulator(settings.builder)
        self.out = _BatchBuilder()
        self.lines = 0

    def emit(
        self,
        kind: str,
        record: bytes,
        counts: dict[str, int] | None = None,
        durations: dict[str, float] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Add one row, first handing Spark the pending rows when the batch is full."""
        if not self.out.room_for(len(record)):
            yield self.out.build()
            self.out = _BatchBuilder()
        self.out.add(kind, record, counts, durations)

    def reject(
        self, location: dict[str, Any], error: str, text: str, *, internal: bool = False
    ) -> Iterator[pa.RecordBatch]:
        """Emit a rejected-line record and count its reason."""
        self.figures.reject(error)
        record = {**location, "error": error, "raw": text}
        yield from self.emit(KIND_REJECTED, dumps(record), {"internal_errors": int(internal)})

    def render_line(
        self,
        location: dict[str, Any],
        text: str | Undecodable,
        key: tuple[str, int] | None = None,
        results: ResultsProvider | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """Render one non-blank line into its output rows, or its rejection.

        Args:
            location: Where the line was (see the class docstring).
            text: The line, or the undecodable bytes standing for it.
            key: The line's file and number, for keyed records.
            results: The entry's builder and overlap results, when already known.
        """
        self.lines += 1
        if isinstance(text, Undecodable):
            yield from self.reject(location, text.error, text.text)
            return
        outcome = self.renderer.render(text, key, results)
        if outcome.output is None or len(outcome.output) >= MAX_BATCH_BYTES:
            error = outcome.error or "the output line would exceed 2 GiB"
            yield from self.reject(location, error, text, internal=outcome.internal)
            return
        self.figures.add(outcome)
        yield from self.emit(KIND_ENTRY, outcome.output, outcome.counts, outcome.durations)
        if outcome.lost_windows is not None:
            yield from self.emit(KIND_LOST, outcome.lost_windows)
        for row in outcome.window_rows:
            yield from self.emit(KIND_WINDOW, row)

    def finish(self, seen_input: bool) -> Iterator[pa.RecordBatch]:
        """The task's report figures (when it saw any input), then the pending rows."""
        for figure in self.figures.rows() if seen_input else ():
            self.out.add(KIND_REPORT, figure_record(figure))
        if self.out.kind:
            yield self.out.build()
