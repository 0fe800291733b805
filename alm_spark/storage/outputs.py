"""What a task writes into the output: entry lines, lost windows, windows-table rows.

:func:`write_result_batches` sits at the end of a task's rows
(:data:`~alm_spark.rows.RESULT`): it writes the big records into data files of their
own under final names (:class:`~alm_spark.storage.datafiles.DataFile`), and passes on
what the driver still needs: entry rows keep their figures with an empty record (the
run's totals are observed on them), ``rejected``, ``block`` and ``report`` rows stay as
they are, and one ``data_file`` row names each file written. :func:`write_line_batches`
does the same for rows that are already output lines (the numbered rejected lines).

Plain pyarrow: testable without Spark, used by every engine.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from alm_spark.rows import (
    DATA_FILE,
    KIND_DATA_FILE,
    KIND_ENTRY,
    KIND_LOST,
    KIND_REJECTED,
    KIND_WINDOW,
    RESULT,
    WINDOW,
    RowKind,
)
from alm_spark.storage.datafiles import DataFile, StepNames, task_attempt

#: Figures kept beside each entry in parquet output, for filtering without JSON.
PARQUET_FIGURES = (
    "total_segments",
    "windows",
    "filtered_windows",
    "filtered_pairs",
    "truncation_events",
    "total_dur",
    "filtered_dur",
)
#: Line-file suffixes by codec (Hadoop's, so readers that go by suffix still know them).
_LINE_SUFFIXES = {"none": ".jsonl", "gzip": ".jsonl.gz", "zstd": ".jsonl.zst"}
#: Parquet-file suffixes by codec (as Spark names its Parquet files).
_TABLE_SUFFIXES = {
    "snappy": ".snappy.parquet", "gzip": ".gz.parquet", "zstd": ".zstd.parquet", "none": ".parquet"
}  # fmt: skip
#: A row group of the windows table is written at this many rows or JSON bytes queued,
#: whichever comes first (a window of a rich line can be large).
_WINDOW_GROUP_ROWS = 20_000
_WINDOW_GROUP_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class FileNames:
    """Where a step's tasks put one kind of data file, and how they name it.

    Attributes:
        root: The output, as fsspec opens it.
        folder: The folder inside the output (``""`` for the output itself).
        names: The step's naming.
    """

    root: str
    folder: str
    names: StepNames

    def relative(self, task: int, attempt: int, suffix: str) -> str:
        """The path inside the output of one attempt's file."""
        name = self.names.name(task, attempt, suffix)
        return f"{self.folder}/{name}" if self.folder else name

    @property
    def fence(self) -> str:
        """The file that must exist for the step's files to be committed."""
        return self.names.fence(self.root)


@dataclass(frozen=True)
class ResultFiles:
    """What a step's tasks write, and where (picklable: it travels to the executors).

    Attributes:
        entries: Where entry files go (the output itself).
        lost: Where separate lost-window files go; None when they are not written.
        windows: Where windows-table files go; None when there is no table.
        format: ``jsonl`` or ``parquet``: the form of entry and lost-window files.
        codec: The output's compression (``none``, ``gzip``, ``zstd``, ``snappy``).
        pass_windows: Also pass the window rows on (the audio step reads them).
    """

    entries: FileNames
    lost: FileNames | None
    windows: FileNames | None
    format: str
    codec: str
    pass_windows: bool = False


class _LineFile:
    """A data file of lines, compressed as asked."""

    def __init__(self, url: str, codec: str, fence: str | None) -> None:
        self.file = DataFile(url, fence=fence)
        self.rows = 0
        self.compressor: Any = None
        if codec == "gzip":
            self.compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # a gzip stream
        elif codec == "zstd":
            self.compressor = _ZstdStream(self.file)

    def add(self, lines: Sequence[bytes]) -> None:
        data = b"\n".join(lines) + b"\n"
        self.rows += len(lines)
        if isinstance(self.compressor, _ZstdStream):
            self.compressor.write(data)
        elif self.compressor is not None:
            self.file.write(self.compressor.compress(data))
        else:
            self.file.write(data)

    def commit(self) -> int:
        if isinstance(self.compressor, _ZstdStream):
            self.compressor.close()
        elif self.compressor is not None:
            self.file.write(self.compressor.flush())
        return self.file.commit()

    def abort(self) -> None:
        if isinstance(self.compressor, _ZstdStream):
            self.compressor.drop()
        self.file.abort()


class _Forward:
    """A write-only stream into a :class:`DataFile` that Arrow may close harmlessly.

    Once the file is aborted, writes are dropped: a writer Arrow still holds (a Parquet
    footer, a zstd frame's end) must not reach an aborted file.
    """

    def __init__(self, file: DataFile) -> None:
        self.file = file
        self.closed = False
        self.dropping = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        if not self.dropping:
            self.file.write(bytes(view))
        return view.nbytes

    def flush(self) -> None:
        """Nothing is buffered here."""

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True


class _ZstdStream:
    """One zstd frame written through Arrow's codec (no extra dependency)."""

    def __init__(self, file: DataFile) -> None:
        self.forward = _Forward(file)
        self.stream = pa.CompressedOutputStream(pa.PythonFile(self.forward, mode="w"), "zstd")

    def write(self, data: bytes) -> None:
        self.stream.write(data)

    def close(self) -> None:
        self.stream.close()

    def drop(self) -> None:
        """Close the stream into nothing (its file is being aborted)."""
        self.forward.dropping = True
        self.stream.close()


class _TableFile:
    """A Parquet data file written a row group at a time."""

    def __init__(self, url: str, schema: pa.Schema, codec: str, fence: str | None) -> None:
        self.file = DataFile(url, fence=fence)
        self.forward = _Forward(self.file)
        self.sink = pa.PythonFile(self.forward, mode="w")
        self.writer = pq.ParquetWriter(self.sink, schema, compression=codec)
        self.rows = 0

    def add_table(self, table: pa.Table) -> None:
        self.writer.write_table(table)
        self.rows += table.num_rows

    def commit(self) -> int:
        self.writer.close()
        self.sink.close()
        return self.file.commit()

    def abort(self) -> None:
        self.forward.dropping = True
        self.writer.close()  # into nothing: no footer reaches the aborted file
        self.file.abort()


_ENTRY_PARQUET = pa.schema(
    [pa.field("entry", pa.string())]
    + [RESULT.arrow_schema().field(name) for name in PARQUET_FIGURES]
)


class _TaskFiles:
    """One task attempt's open data files, opened when their first row comes."""

    def __init__(self, files: ResultFiles) -> None:
        self.files = files
        self.task, self.attempt = task_attempt()
        self.open: dict[str, tuple[str, Any]] = {}  # holds -> (path in the output, file)
        self.pending_windows: list[dict[str, Any]] = []
        self.pending_bytes = 0

    def _get(self, holds: str, where: FileNames, make: Callable[[str, str], Any]) -> Any:
        """The open file for ``holds``, opened (``make(url, fence)``) on first use."""
        if holds not in self.open:
            relative = where.relative(self.task, self.attempt, self._suffix(holds))
            self.open[holds] = (relative, make(f"{where.root}/{relative}", where.fence))
        return self.open[holds][1]

    def _suffix(self, holds: str) -> str:
        if holds == KIND_WINDOW:
            return _TABLE_SUFFIXES["snappy"]
        if self.files.format == "parquet":
            return _TABLE_SUFFIXES[self.files.codec]
        return _LINE_SUFFIXES[self.files.codec]

    def add_lines(self, holds: str, where: FileNames, batch: pa.RecordBatch) -> None:
        """Write the ``record`` of every row of ``batch`` as a line (or a Parquet row)."""
        if self.files.format == "parquet":
            table = pa.Table.from_batches([batch]).select(["record", *PARQUET_FIGURES])
            table = table.rename_columns(_ENTRY_PARQUET.names).cast(_ENTRY_PARQUET)
            codec = self.files.codec
            self._get(
                holds, where, lambda url, fence: _TableFile(url, _ENTRY_PARQUET, codec, fence)
            ).add_table(table)
            return
        lines = batch.column("record").view(pa.binary()).to_pylist()
        self._get(holds, where, lambda url, fence: _LineFile(url, self.files.codec, fence)).add(
            lines
        )

    def add_windows(self, where: FileNames, records: list[bytes]) -> None:
        """Queue windows-table rows; a row group is written when enough are queued."""
        self.pending_windows.extend(json.loads(record) for record in records)
        self.pending_bytes += sum(map(len, records))
        full = self.pending_bytes >= _WINDOW_GROUP_BYTES
        if full or len(self.pending_windows) >= _WINDOW_GROUP_ROWS:
            self._flush_windows(where)

    def _flush_windows(self, where: FileNames) -> None:
        if not self.pending_windows:
            return
        schema = WINDOW.arrow_schema()
        table = pa.Table.from_pylist(self.pending_windows, schema=schema)
        self._get(
            KIND_WINDOW, where, lambda url, fence: _TableFile(url, schema, "snappy", fence)
        ).add_table(table)
        self.pending_windows = []
        self.pending_bytes = 0

    def commit(self) -> list[dict[str, Any]]:
        """Make every file appear; one :data:`~alm_spark.rows.DATA_FILE` dict per file."""
        if self.files.windows is not None:
            self._flush_windows(self.files.windows)
        written = []
        for holds, (path, file) in self.open.items():
            size = file.commit()
            written.append(DATA_FILE.record(
                {"path": path, "holds": holds, "rows": file.rows, "bytes": size}
            ))  # fmt: skip
        return written

    def abort(self) -> None:
        """Remove every file this attempt opened."""
        for _, file in self.open.values():
            file.abort()


def _kind_mask(batch: pa.RecordBatch, kind: str) -> pa.Array:
    return pc.equal(batch.column("kind"), kind)


def _data_file_batch(written: list[dict[str, Any]]) -> pa.RecordBatch:
    """``data_file`` rows in the :data:`~alm_spark.rows.RESULT` schema."""
    schema = RESULT.arrow_schema()
    columns = {
        "kind": pa.array([KIND_DATA_FILE] * len(written), pa.string()),
        "record": pa.array([json.dumps(row) for row in written], pa.string()),
    }
    arrays = [columns.get(item.name, pa.nulls(len(written), item.type)) for item in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def write_result_batches(
    batches: Iterator[pa.RecordBatch], files: ResultFiles
) -> Iterator[pa.RecordBatch]:
    """Write a task's entry, lost-window and window rows into data files (module doc).

    Args:
        batches: The task's :data:`~alm_spark.rows.RESULT` rows.
        files: Where each kind goes.

    Yields:
        :data:`~alm_spark.rows.RESULT` rows: entries with an empty record, the rows
        the driver still reads, then one ``data_file`` row per file written.
    """
    task = _TaskFiles(files)
    try:
        for batch in batches:
            yield from _write_batch(task, files, batch)
        written = task.commit()
    except BaseException:
        task.abort()
        raise
    if written:
        yield _data_file_batch(written)


def writing(
    make_rows: Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]],
    files: ResultFiles,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """``make_rows`` followed, in the same task, by :func:`write_result_batches`."""

    def make_and_write(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return write_result_batches(make_rows(batches), files)

    return make_and_write


def _write_batch(
    task: _TaskFiles, files: ResultFiles, batch: pa.RecordBatch
) -> Iterator[pa.RecordBatch]:
    """Write one batch's big records; yield what is passed on."""
    is_entry = _kind_mask(batch, KIND_ENTRY)
    if pc.any(is_entry).as_py():
        task.add_lines(KIND_ENTRY, files.entries, batch.filter(is_entry))
    is_lost = _kind_mask(batch, KIND_LOST)
    if files.lost is not None and pc.any(is_lost).as_py():
        task.add_lines(KIND_LOST, files.lost, batch.filter(is_lost))
    is_window = _kind_mask(batch, KIND_WINDOW)
    if files.windows is not None and pc.any(is_window).as_py():
        windows = batch.filter(is_window).column("record").view(pa.binary()).to_pylist()
        task.add_windows(files.windows, windows)
    dropped = pc.or_(is_lost, is_window) if not files.pass_windows else is_lost
    kept = batch.filter(pc.invert(dropped))
    if kept.num_rows:
        emptied = pc.if_else(_kind_mask(kept, KIND_ENTRY), "", kept.column("record"))
        yield kept.set_column(1, kept.schema.field("record"), emptied)


def write_empty_table(where: FileNames, kind: RowKind) -> str:
    """Write a Parquet file of no rows with ``kind``'s columns; returns its path.

    Written on the driver when no task wrote a row, so that readers of the folder find
    its columns.
    """
    relative = where.relative(0, 0, _TABLE_SUFFIXES["snappy"])
    file = _TableFile(f"{where.root}/{relative}", kind.arrow_schema(), "snappy", where.fence)
    file.commit()
    return relative


def write_line_batches(
    batches: Iterator[pa.RecordBatch], where: FileNames, codec: str, holds: str = KIND_REJECTED
) -> Iterator[pa.RecordBatch]:
    """Write every ``value`` as a line of one data file; yield its ``data_file`` row.

    Args:
        batches: Rows with a ``value`` string column (each already an output line).
        where: Where the file goes and how it is named.
        codec: ``none``, ``gzip`` or ``zstd``.
        holds: The row kind the file holds.

    Yields:
        One batch of :data:`~alm_spark.rows.DATA_FILE` rows (none when there were no
        lines).
    """
    task, attempt = task_attempt()
    relative = where.relative(task, attempt, _LINE_SUFFIXES[codec])
    file: _LineFile | None = None
    try:
        for batch in batches:
            if batch.num_rows:
                file = file or _LineFile(f"{where.root}/{relative}", codec, where.fence)
                file.add(batch.column("value").view(pa.binary()).to_pylist())
        size = file.commit() if file is not None else 0
    except BaseException:
        if file is not None:
            file.abort()
        raise
    if file is not None:
        row = {"path": relative, "holds": holds, "rows": file.rows, "bytes": size}
        yield pa.RecordBatch.from_pylist([row], schema=DATA_FILE.arrow_schema())
