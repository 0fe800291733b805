"""Numbering lines: every non-blank line gets its 1-based number in its file.

Spark reads a file in splits, each in its own task, so a line's number is the lines of
the file's earlier splits plus its row in its split. :func:`split_line_counts` counts
each split's lines in one JVM-only pass; :func:`number_lines` numbers the lines with
those counts and fails if Spark split the files differently the second time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import partial
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

from alm_spark.worker import worker_task

#: Non-blank lines with their place: :func:`number_lines`.
NUMBERED_LINES_SCHEMA = StructType(
    [
        StructField("source", StringType(), False),
        StructField("line", LongType(), False),
        StructField("value", StringType(), True),
    ]
)


def split_line_counts(lines_df: DataFrame) -> dict[tuple[str, int], tuple[int, int]]:
    """Lines before and in each input split, keyed by ``(source, block_start)``.

    One cheap job that counts lines in the JVM (no JSON is decoded); one small row per
    split reaches the driver.

    Args:
        lines_df: Physical lines (:data:`~alm_spark.storage.schemas.MANIFEST_LINES_SCHEMA`).
    """
    rows = lines_df.groupBy("source", "block_start").agg(F.count("*").alias("lines")).collect()
    counts: dict[tuple[str, int], tuple[int, int]] = {}
    before: dict[str, int] = {}
    for row in sorted(rows, key=lambda r: (r["source"], r["block_start"])):
        offset = before.get(row["source"], 0)
        counts[(row["source"], row["block_start"])] = (offset, row["lines"])
        before[row["source"]] = offset + row["lines"]
    return counts


_SPACE_LEADS = frozenset(b"\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \xc2\xe1\xe2\xe3")


def _blank_rows(values: pa.Array) -> list[bool]:
    """Exactly :func:`~alm_spark.engines.results.is_blank` per line, without decoding all.

    Only a line that is empty or starts with a byte that can begin a whitespace
    character (ASCII, or the lead byte of a Unicode space) is decoded and checked.
    """
    raw = values.view(pa.binary())
    leads = pc.binary_slice(raw, 0, 1).to_pylist()
    blank = [False] * len(leads)
    for i, lead in enumerate(leads):
        if lead is None or lead == b"" or lead[0] in _SPACE_LEADS:
            value = raw[i].as_py()
            try:
                blank[i] = value is None or not value or value.decode("utf-8").isspace()
            except UnicodeDecodeError:
                blank[i] = False
    return blank


def _number_batches(
    batches: Iterator[pa.RecordBatch], splits: Mapping[tuple[str, int], tuple[int, int]]
) -> Iterator[pa.RecordBatch]:
    """Give every non-blank line its 1-based number in its file (``mapInArrow``).

    Rows of one split arrive contiguous and in file order; each split's count is
    checked, so a split made differently from the counted one fails the task instead
    of numbering lines wrongly.
    """
    schema = pa.schema(
        [
            pa.field("source", pa.string(), nullable=False),
            pa.field("line", pa.int64(), nullable=False),
            pa.field("value", pa.string()),
        ]
    )
    current: tuple[str, int] | None = None
    row = offset = expected = 0

    def check() -> None:
        if current is not None and row != expected:
            raise RuntimeError(
                f"the split of {unquote(current[0])} at byte {current[1]} held {row} lines, "
                f"{expected} when counted: the input was split differently; read it again"
            )

    for batch in batches:
        sources = batch.column("source").to_pylist()
        starts = batch.column("block_start").to_pylist()
        blank = _blank_rows(batch.column("value"))
        keep: list[int] = []
        numbers: list[int] = []
        paths: list[str] = []
        path = ""
        for i, split in enumerate(zip(sources, starts, strict=True)):
            if split != current:
                check()
                current, row = split, 0
                found = splits.get(split)
                if found is None:
                    raise RuntimeError(
                        f"no line count for the split of {unquote(split[0])} at byte "
                        f"{split[1]}: the input was split differently; read it again"
                    )
                offset, expected = found
                path = unquote(split[0])
            row += 1
            if not blank[i]:
                keep.append(i)
                numbers.append(offset + row)
                paths.append(path)
        indices = pa.array(keep, type=pa.int64())
        yield pa.RecordBatch.from_arrays(
            [
                pa.array(paths, type=pa.string()),
                pa.array(numbers, type=pa.int64()),
                batch.column("value").take(indices),
            ],
            schema=schema,
        )
    check()


def number_lines(
    lines_df: DataFrame, splits: Mapping[tuple[str, int], tuple[int, int]] | None = None
) -> DataFrame:
    """The non-blank lines, each with its file and 1-based line number.

    Line numbers come from a count of every input split's lines
    (:func:`split_line_counts`, one JVM-only pass over the text, run now unless
    ``splits`` is given); the numbering pass checks that Spark split the files the
    same way and fails otherwise, so numbers are right whatever the session's split
    settings. Read the lines again after changing ``spark.sql.files.*`` settings.

    Args:
        lines_df: Physical lines (:data:`~alm_spark.storage.schemas.MANIFEST_LINES_SCHEMA`).
        splits: Counts from :func:`split_line_counts` over the same ``lines_df``.

    Returns:
        ``source, line, value`` (:data:`NUMBERED_LINES_SCHEMA`); ``source`` is the
        file's path, not URL-encoded.
    """
    counts = dict(splits) if splits is not None else split_line_counts(lines_df)
    return lines_df.select("source", "block_start", "value").mapInArrow(
        worker_task(partial(_number_batches, splits=counts)), NUMBERED_LINES_SCHEMA
    )
