"""The job as DataFrames: manifests, segments, windows, statistics, kept windows.

The shape of the design card: manifests are read into a DataFrame, the builder runs
as a grouped pandas UDF over exploded segments, and the overlap filter as a grouped
pandas UDF per entry. Each step is a public function a notebook or a chispa test can
call on its own; the ``dataframe`` engine (``spark.engine``) chains them::

    entries_df, rejected_df = read_manifests(spark, "/data/manifests")
    segments_df = entries_df.transform(explode_segments)
    windows_df = build_windows(segments_df, BuilderConfig())
    kept_df = filter_overlaps(windows_df, OverlapConfig())

An entry is one manifest line, identified by ``source`` (its file) and ``line``
(its 1-based line number there); ``audio_filepath`` repeats and is never a key.
Every function takes ``key`` to name other identifying columns, for manifests that
come from a table rather than files (:func:`parse_manifests`).

The typed columns come from the same Python decoder that validates a line
(:mod:`alm_spark.algorithm.entry`), not from Spark's ``from_json``, which accepts ``NaN``,
turns a mistyped value into null and gives up on deep nesting.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import pandas as pd
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DoubleType,
    LongType,
    MapType,
    StringType,
    StructField,
    StructType,
)

from alm_spark.algorithm.entry import decode_line, parse_entry
from alm_spark.algorithm.process import rejection_reason
from alm_spark.config import BuilderConfig, OverlapConfig
from alm_spark.engines.grouped import (
    BUILT_COLUMNS,
    KEPT_COLUMNS,
    ROW_STATS,
    ROW_WINDOW,
    STATS_COLUMNS,
    WINDOW_COLUMNS,
    build_entry,
    filter_entry,
    segment_fields,
)
from alm_spark.engines.numbering import number_lines
from alm_spark.engines.results import Undecodable, texts
from alm_spark.names import LOSS_COUNTERS
from alm_spark.storage.fs import filesystem_for
from alm_spark.storage.io import read_manifest_lines, resolve_manifest_paths
from alm_spark.worker import ready_worker, worker_task

#: The columns that identify an entry read from files.
ENTRY_KEY = ("source", "line")

#: One segment as the builder reads it (``segments[]`` of :data:`MANIFEST_SCHEMA`).
SEGMENT_STRUCT = StructType(
    [
        StructField("start", DoubleType(), False),
        StructField("end", DoubleType(), False),
        StructField("speaker", StringType(), True),
        StructField("has_speaker", BooleanType(), False),
        StructField("bandwidth", DoubleType(), False),
        StructField("word_ends", ArrayType(DoubleType(), False), True),
        StructField("words", ArrayType(StringType(), True), True),
    ]
)

#: What an entry holds besides its key: the line as read and the fields the
#: algorithm reads, typed. ``audio_filepath`` and ``swift_audio_filepath`` are null
#: when missing or not text; ``audio_sample_rate`` is null when missing (the builder
#: reads it as 0). In a segment, ``speaker`` is null when missing or null,
#: ``has_speaker`` tells which; ``bandwidth`` is ``metrics.bandwidth``, 0 when
#: missing; ``word_ends`` and ``words`` are the words' ``end`` and ``word`` values
#: (null without a ``words`` key; a ``word`` that is not text is null).
ENTRY_FIELDS = [
    StructField("value", StringType(), False),
    StructField("audio_filepath", StringType(), True),
    StructField("audio_sample_rate", DoubleType(), True),
    StructField("swift_audio_filepath", StringType(), True),
    StructField("segments", ArrayType(SEGMENT_STRUCT, False), False),
]

#: Entries read from files: :func:`read_manifests`'s first DataFrame.
MANIFEST_SCHEMA = StructType(
    [
        StructField("source", StringType(), False),
        StructField("line", LongType(), False),
        *ENTRY_FIELDS,
    ]
)

#: Why a line was not an entry: the key, the reason and the line as read.
REJECTED_FIELDS = [
    StructField("error", StringType(), False),
    StructField("raw", StringType(), True),
]

#: One builder window (:func:`build_windows`): ``window`` is its index in the entry's
#: ``windows``; ``start``/``end`` the first segment's start and the last's end (the
#: truncated end when ``truncated``); ``speakers`` maps each label to its summed
#: speech, ``speaker_durations`` is the reference's top-5 list, ``speech`` the sum of
#: ``speakers``; the window holds segments ``first_segment..last_segment``.
WINDOW_FIELDS = [
    StructField("window", LongType(), False),
    StructField("start", DoubleType(), False),
    StructField("end", DoubleType(), False),
    StructField("duration", DoubleType(), False),
    StructField("speakers", MapType(StringType(), DoubleType(), False), False),
    StructField("speaker_durations", ArrayType(DoubleType(), False), False),
    StructField("first_segment", LongType(), False),
    StructField("last_segment", LongType(), False),
    StructField("truncated", BooleanType(), False),
    StructField("speech", DoubleType(), False),
]

#: A kept window (:func:`filter_overlaps`): a builder window, and ``filtered``: its own
#: ``[end, start]`` pair survived the filter (it is in the reference's ``filtered``);
#: false for a window that came back because its rounded pair equals a survivor's.
KEPT_FIELDS = [*WINDOW_FIELDS, StructField("filtered", BooleanType(), False)]

#: One lost window start: whole segments ``index..stop-1``, then the truncated part
#: of segment ``stop`` when ``truncated``; the loss record's ``next_seg`` is segment
#: ``next_index``.
LOST_WINDOW_STRUCT = StructType(
    [
        StructField("index", LongType(), False),
        StructField("stop", LongType(), False),
        StructField("truncated", BooleanType(), False),
        StructField("next_index", LongType(), False),
    ]
)

#: An entry's statistics (:func:`entry_stats`): the reference's ``stats`` counters and
#: durations, whether the entry was below ``min_sample_rate``, its
#: ``truncation_events`` and its lost window starts.
STATS_FIELDS = [
    StructField("total_segments", LongType(), False),
    StructField("total_dur", DoubleType(), False),
    StructField("below_sample_rate", BooleanType(), False),
    StructField("truncation_events", LongType(), False),
    *(StructField(name, LongType(), False) for name in LOSS_COUNTERS),
    *(StructField(f"dur_{name}", DoubleType(), False) for name in LOSS_COUNTERS),
    StructField("lost_windows", ArrayType(LOST_WINDOW_STRUCT, False), False),
]

_BUILT_FIELDS = {field.name: field for field in [*WINDOW_FIELDS, *STATS_FIELDS]}


def _key_fields(df: DataFrame, key: Sequence[str]) -> list[StructField]:
    missing = [name for name in key if name not in df.columns]
    if missing:
        raise ValueError(f"key column(s) {', '.join(missing)} not in {df.columns}")
    return [df.schema[name] for name in key]


def _nullable(fields: Sequence[StructField]) -> list[StructField]:
    return [StructField(f.name, f.dataType, True) for f in fields]


# --- reading ----------------------------------------------------------------------


def _decode_row(text: str | Undecodable | None) -> dict[str, Any]:
    """The typed fields of one line, or ``{"error": reason}``."""
    if isinstance(text, Undecodable):
        return {"error": text.error}
    if text is None:
        return {"error": "not a JSON object (got nothing)"}
    try:
        data = decode_line(text)
        table = parse_entry(data).table
        segments = [
            segment_fields(segment, bandwidth)
            for segment, bandwidth in zip(table.segments, table.bandwidth.tolist(), strict=True)
        ]
        rate = data.get("audio_sample_rate")
    except Exception as err:
        return {"error": rejection_reason(err)[0]}
    path = data.get("audio_filepath")
    swift = data.get("swift_audio_filepath")
    return {
        "audio_filepath": path if isinstance(path, str) else None,
        "audio_sample_rate": None if rate is None else _to_double(rate),
        "swift_audio_filepath": swift if isinstance(swift, str) else None,
        "segments": segments,
    }


def _to_double(value: Any) -> float:
    try:
        return float(value)
    except OverflowError:
        return float("inf") if value > 0 else float("-inf")


def _decode_batches(
    batches: Iterator[pa.RecordBatch], arrow_schema: pa.Schema, key: Sequence[str], value: str
) -> Iterator[pa.RecordBatch]:
    typed = [f.name for f in ENTRY_FIELDS if f.name != "value"]
    for batch in batches:
        rows = [_decode_row(text) for text in texts(batch.column(value))]
        columns: list[pa.Array] = [batch.column(name) for name in key]
        columns.append(batch.column(value).cast(pa.string()))
        for name in typed:
            field = arrow_schema.field(name)
            columns.append(pa.array([r.get(name) for r in rows], type=field.type))
        columns.append(pa.array([r.get("error") for r in rows], type=pa.string()))
        yield pa.RecordBatch.from_arrays(columns, schema=arrow_schema)


def parse_manifests(
    df: DataFrame, *, value: str = "value", key: Sequence[str] = ENTRY_KEY
) -> tuple[DataFrame, DataFrame]:
    """Decode and validate manifest objects held as JSON text, one per row.

    This is how to start from a table (a Delta table of manifests) rather than files:
    name the string column that holds the JSON and the column(s) that identify an
    entry. Use columns that are part of the data; a generated id such as
    ``monotonically_increasing_id`` changes between runs.

    Args:
        df: One manifest object per row.
        value: The column holding the JSON text.
        key: The columns that identify an entry (unique per row).

    Returns:
        ``(entries_df, rejected_df)``: entries are the key, ``value`` (the JSON as
        read) and the typed fields of :data:`MANIFEST_SCHEMA`; rejected rows are the
        key, ``error`` (spec §4 reasons, naming the JSON path) and ``raw``. Both come
        from one decoding pass; using both runs it twice unless ``df`` is cached.
    """
    key = tuple(key)
    key_fields = _key_fields(df, key)
    schema = StructType([*key_fields, *_nullable(ENTRY_FIELDS), StructField("error", StringType())])
    from pyspark.sql.pandas.types import to_arrow_schema

    decode = partial(_decode_batches, arrow_schema=to_arrow_schema(schema), key=key, value=value)
    decoded_df = df.select(*key, F.col(value).cast("string").alias(value)).mapInArrow(
        worker_task(decode), schema
    )
    entries_df = decoded_df.where(F.col("error").isNull()).select(
        *key, *(F.col(f.name) for f in ENTRY_FIELDS)
    )
    rejected_df = decoded_df.where(F.col("error").isNotNull()).select(
        *key, "error", F.col("value").alias("raw")
    )
    return entries_df, rejected_df


def read_manifests(spark: SparkSession, paths: str | Sequence[str]) -> tuple[DataFrame, DataFrame]:
    """Read manifest files into entries and rejected lines.

    Paths follow the job's input rules (files, directories searched recursively for
    ``.jsonl``/``.json`` and their ``.gz`` forms, globs, lists, URIs). Counting each
    split's lines for the line numbers runs one cheap job now (see
    :func:`number_lines`); the rest is lazy.

    Args:
        spark: The session.
        paths: One path or several.

    Returns:
        ``(entries_df, rejected_df)`` as :func:`parse_manifests` gives them, keyed by
        ``source`` (the file) and ``line`` (1-based line number; blank lines are
        skipped but counted).

    Raises:
        InputError: When a path is missing or holds no manifest files.
    """
    items = [paths] if isinstance(paths, str) else list(paths)
    sources = resolve_manifest_paths(filesystem_for(spark), items)
    numbered_df = number_lines(read_manifest_lines(spark, sources))
    return parse_manifests(numbered_df)


# --- the builder and the overlap filter -------------------------------------------


def explode_segments(entries_df: DataFrame, key: Sequence[str] = ENTRY_KEY) -> DataFrame:
    """One row per segment, with ``segment``: its index in the entry's ``segments``.

    An entry without segments keeps one row with a null ``segment``, so that it
    still reaches the builder (its statistics are part of the output). No Python runs.

    Args:
        entries_df: Entries (:data:`MANIFEST_SCHEMA`, or any key).
        key: The columns that identify an entry.

    Returns:
        The key, ``audio_sample_rate``, ``segment`` and the segment's fields
        (:data:`SEGMENT_STRUCT`).
    """
    key = tuple(key)
    exploded = entries_df.select(
        *key, "audio_sample_rate", F.posexplode_outer("segments").alias("segment", "s")
    )
    return exploded.select(
        *key,
        "audio_sample_rate",
        F.col("segment").cast("long").alias("segment"),
        *(F.col(f"s.{f.name}").alias(f.name) for f in SEGMENT_STRUCT.fields),
    )


def build_entries(
    segments_df: DataFrame, builder: BuilderConfig, key: Sequence[str] = ENTRY_KEY
) -> DataFrame:
    """The builder as a grouped pandas UDF: windows and statistics rows together.

    Groups by entry; each group (one entry's segments, a few thousand rows at most
    in real manifests) is sorted by ``segment`` and built with the same NumPy logic
    as the fused engine (:func:`~alm_spark.engines.grouped.build_entry`).

    Returns:
        The key, ``kind`` (``window`` or ``stats``) and the columns of both
        :func:`build_windows` and :func:`entry_stats` (null where they do not apply).
    """
    key = tuple(key)
    fields = [
        *_key_fields(segments_df, key),
        StructField("kind", StringType(), False),
        *(_nullable([_BUILT_FIELDS[name]])[0] for name in BUILT_COLUMNS[1:]),
    ]

    def build(group: tuple[Any, ...], pdf: pd.DataFrame) -> pd.DataFrame:
        ready_worker()
        return build_entry(group, pdf, key, builder)

    return segments_df.groupBy(*key).applyInPandas(build, StructType(fields))


def build_windows(
    segments_df: DataFrame, builder: BuilderConfig, key: Sequence[str] = ENTRY_KEY
) -> DataFrame:
    """One row per builder window (the entry's ``windows``), spec §1.

    Args:
        segments_df: From :func:`explode_segments`.
        builder: Builder settings.
        key: The columns that identify an entry.

    Returns:
        The key and :data:`WINDOW_FIELDS`.
    """
    built_df = build_entries(segments_df, builder, key)
    return built_df.where(F.col("kind") == ROW_WINDOW).select(*key, *WINDOW_COLUMNS)


def entry_stats(
    segments_df: DataFrame, builder: BuilderConfig, key: Sequence[str] = ENTRY_KEY
) -> DataFrame:
    """One row per entry: the builder's loss counters and durations (spec §1).

    Args:
        segments_df: From :func:`explode_segments`.
        builder: Builder settings.
        key: The columns that identify an entry.

    Returns:
        The key and :data:`STATS_FIELDS`.
    """
    built_df = build_entries(segments_df, builder, key)
    return built_df.where(F.col("kind") == ROW_STATS).select(*key, *STATS_COLUMNS)


def filter_overlaps(
    windows_df: DataFrame, overlap: OverlapConfig, key: Sequence[str] = ENTRY_KEY
) -> DataFrame:
    """The overlap filter as a grouped pandas UDF per entry (spec §2).

    Args:
        windows_df: From :func:`build_windows`.
        overlap: Overlap-filter settings.
        key: The columns that identify an entry.

    Returns:
        Exactly the rows of each entry's ``filtered_windows`` (its windows in window
        order whose rounded ``(end, start)`` pair equals a surviving pair), with
        ``filtered`` true for the survivors themselves (:data:`KEPT_FIELDS`).
    """
    key = tuple(key)
    schema = StructType([*_key_fields(windows_df, key), *KEPT_FIELDS])

    def keep(group: tuple[Any, ...], pdf: pd.DataFrame) -> pd.DataFrame:
        ready_worker()
        return filter_entry(group, pdf, key, overlap)

    return windows_df.select(*key, *WINDOW_COLUMNS).groupBy(*key).applyInPandas(keep, schema)


__all__ = [
    "ENTRY_KEY",
    "KEPT_COLUMNS",
    "MANIFEST_SCHEMA",
    "SEGMENT_STRUCT",
    "build_entries",
    "build_windows",
    "entry_stats",
    "explode_segments",
    "filter_overlaps",
    "parse_manifests",
    "read_manifests",
]
