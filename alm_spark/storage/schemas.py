"""Schemas shared by the reader, the Arrow processing step and the writers.

Spark ``StructType`` constants and their pyarrow twins are defined side by side so
the two can never drift apart (``tests/test_schemas.py`` checks they agree).
"""

from __future__ import annotations

import pyarrow as pa
from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
)

from alm_spark.names import METRIC_COUNTS, METRIC_DURATIONS

#: One physical input line: the file it came from, the byte offset of the split
#: (Spark file block) that read it, and its text.
MANIFEST_LINES_SCHEMA = StructType(
    [
        StructField("source", StringType(), False),
        StructField("block_start", LongType(), False),
        StructField("value", StringType(), True),
    ]
)

#: Columns the processing step adds per row besides ``kind`` and ``line``.
#: Entry rows fill the entry figures; block rows fill ``lines``/``blank_lines``;
#: rejected rows fill ``internal_errors``.
RESULT_COUNT_COLUMNS = ("lines", "blank_lines", "internal_errors", *METRIC_COUNTS)
RESULT_DURATION_COLUMNS = METRIC_DURATIONS

#: Output of the processing step (``mapInArrow``).
RESULT_SCHEMA = StructType(
    [
        StructField("kind", StringType(), False),
        StructField("record", StringType(), False),
        *(StructField(name, LongType(), True) for name in RESULT_COUNT_COLUMNS),
        *(StructField(name, DoubleType(), True) for name in RESULT_DURATION_COLUMNS),
    ]
)

RESULT_ARROW_SCHEMA = pa.schema(
    [
        pa.field("kind", pa.string(), nullable=False),
        pa.field("record", pa.string(), nullable=False),
        *(pa.field(name, pa.int64()) for name in RESULT_COUNT_COLUMNS),
        *(pa.field(name, pa.float64()) for name in RESULT_DURATION_COLUMNS),
    ]
)

#: A staged rejected line: where it was (split and row within the split) and why.
STAGED_REJECTED_SCHEMA = StructType(
    [
        StructField("source", StringType(), True),
        StructField("block_start", LongType(), True),
        StructField("row", LongType(), True),
        StructField("line", LongType(), True),
        StructField("error", StringType(), True),
        StructField("raw", StringType(), True),
    ]
)

#: A staged split record: how many physical lines one split of a file held.
STAGED_BLOCK_SCHEMA = StructType(
    [
        StructField("source", StringType(), True),
        StructField("block_start", LongType(), True),
        StructField("lines", LongType(), True),
    ]
)

#: A task's report figure: a metric, a key (a bin, a sample rate, a reason) and sums.
STAGED_REPORT_SCHEMA = StructType(
    [
        StructField("metric", StringType(), True),
        StructField("key", StringType(), True),
        *(StructField(f"v{i}", DoubleType(), True) for i in range(5)),
    ]
)

#: A line of ``_rejected/``: file, 1-based line number, reason, and the line itself.
REJECTED_SCHEMA = StructType(
    [
        StructField("source", StringType(), True),
        StructField("line", LongType(), True),
        StructField("error", StringType(), True),
        StructField("raw", StringType(), True),
    ]
)

#: A row of ``_windows/`` (``output.windows_table``): one kept window (an item of its
#: entry's ``filtered_windows``), keyed by ``source`` and ``line`` like the rest of the
#: output. ``audio_filepath`` and ``swift_audio_filepath`` are the entry's (null when
#: missing or not text), ``audio_sample_rate`` too (null unless a finite number);
#: ``position`` is the row's index in ``filtered_windows`` (a window the reference's
#: rounded-pair matching kept twice has two rows); ``window`` is its index in ``windows``;
#: ``start``/``end`` are the first segment's start and the last segment's end;
#: ``speakers`` maps each label to its summed speech and ``speaker_durations`` is the
#: reference's top-5 list; ``segments`` are the window's output segments (a truncated
#: last segment as cut) and ``text`` their non-empty ``text`` values joined by spaces.
WINDOWS_TABLE_SCHEMA = StructType(
    [
        StructField("source", StringType(), False),
        StructField("line", LongType(), False),
        StructField("audio_filepath", StringType(), True),
        StructField("swift_audio_filepath", StringType(), True),
        StructField("audio_sample_rate", DoubleType(), True),
        StructField("position", LongType(), False),
        StructField("window", LongType(), False),
        StructField("start", DoubleType(), False),
        StructField("end", DoubleType(), False),
        StructField("duration", DoubleType(), False),
        StructField("speakers", MapType(StringType(), DoubleType(), False), False),
        StructField("speaker_durations", ArrayType(DoubleType(), False), False),
        StructField(
            "segments",
            ArrayType(
                StructType(
                    [
                        StructField("start", DoubleType(), False),
                        StructField("end", DoubleType(), False),
                        StructField("speaker", StringType(), True),
                        StructField("text", StringType(), True),
                    ]
                ),
                False,
            ),
            False,
        ),
        StructField("text", StringType(), False),
    ]
)
