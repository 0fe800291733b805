"""The public DataFrame API, each transform against exact expected rows (chispa)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DoubleType,
    LongType,
    StringType,
    StructField,
    StructType,
)

from alm_spark import BuilderConfig, OverlapConfig
from alm_spark.engines.frames import (
    KEPT_FIELDS,
    SEGMENT_STRUCT,
    WINDOW_FIELDS,
    build_windows,
    entry_stats,
    explode_segments,
    filter_overlaps,
    parse_manifests,
    read_manifests,
)
from tests.conftest import TWO_SPEAKER_ENTRY, write_jsonl

X = (0.0, 60.0, "x", True, 9000.0, None, None)
Y = (60.0, 119.0, "y", True, 9000.0, None, None)
LOSS = [(1, 2, False, 1)]


def _manifest(tmp_path: Path) -> Path:
    lines = [
        json.dumps(TWO_SPEAKER_ENTRY),
        "",
        "[1]",
        json.dumps({"audio_filepath": 5, "segments": []}),
    ]
    return write_jsonl(tmp_path / "in.jsonl", lines)


@pytest.fixture
def entries(spark, tmp_path: Path):
    return read_manifests(spark, str(_manifest(tmp_path)))


def test_read_manifests_types_entries_and_keeps_rejections(spark, entries) -> None:
    entries_df, rejected_df = entries
    schema = StructType(
        [
            StructField("line", LongType()),
            StructField("audio_filepath", StringType()),
            StructField("audio_sample_rate", DoubleType()),
            StructField("swift_audio_filepath", StringType()),
            StructField("segments", ArrayType(SEGMENT_STRUCT)),
        ]
    )
    expected_df = spark.createDataFrame(
        [(1, "/a.wav", 16000.0, None, [X, Y]), (4, None, None, None, [])], schema
    )
    assert_df_equality(
        entries_df.select(*schema.names),
        expected_df,
        ignore_row_order=True,
        ignore_nullable=True,
    )
    assert {r.source.rsplit("/", 1)[-1] for r in entries_df.select("source").collect()} == {
        "in.jsonl"
    }
    assert [r.value for r in entries_df.where("line = 1").select("value").collect()] == [
        json.dumps(TWO_SPEAKER_ENTRY)
    ]
    assert_df_equality(
        rejected_df.select("line", "error", "raw"),
        spark.createDataFrame(
            [(3, "not a JSON object (got array)", "[1]")], "line long, error string, raw string"
        ),
        ignore_nullable=True,
    )


def test_explode_segments_keeps_entries_without_segments(spark, entries) -> None:
    segments_df = explode_segments(entries[0]).drop("source")
    fields = [StructField(f.name, f.dataType) for f in SEGMENT_STRUCT.fields]
    schema = StructType(
        [
            StructField("line", LongType()),
            StructField("audio_sample_rate", DoubleType()),
            StructField("segment", LongType()),
            *fields,
        ]
    )
    expected_df = spark.createDataFrame(
        [(1, 16000.0, 0, *X), (1, 16000.0, 1, *Y), (4, None, None, *([None] * 7))], schema
    )
    assert_df_equality(segments_df, expected_df, ignore_row_order=True, ignore_nullable=True)


def test_build_windows_and_entry_stats(spark, entries) -> None:
    segments_df = explode_segments(entries[0])
    windows_df = build_windows(segments_df, BuilderConfig()).drop("source")
    window_schema = StructType([StructField("line", LongType()), *WINDOW_FIELDS])
    expected_df = spark.createDataFrame(
        [(1, 0, 0.0, 119.0, 119.0, {"x": 60.0, "y": 59.0}, [60.0, 59.0, 0.0, 0.0, 0.0],
          0, 1, False, 119.0)],
        window_schema,
    )  # fmt: skip
    assert_df_equality(windows_df, expected_df, ignore_nullable=True)

    stats_df = entry_stats(segments_df, BuilderConfig()).select(
        "line", "total_segments", "total_dur", "below_sample_rate", "lost_sr", "lost_win",
        "dur_lost_win", "lost_windows",
    )  # fmt: skip
    assert_df_equality(
        stats_df,
        spark.createDataFrame(
            [(1, 2, 119.0, False, 0, 1, 59.0, LOSS), (4, 0, 0.0, True, 0, 0, 0.0, [])],
            "line long, total_segments long, total_dur double, below_sample_rate boolean, "
            "lost_sr long, lost_win long, dur_lost_win double, "
            "lost_windows array<struct<index:long,stop:long,truncated:boolean,next_index:long>>",
        ),
        ignore_row_order=True,
        ignore_nullable=True,
    )


def _window(line: int, k: int, start: float, end: float) -> tuple:
    return ("f", line, k, start, end, end - start, {"a": 1.0}, [1.0, 0.0, 0.0, 0.0, 0.0], k, k,
            False, 1.0)  # fmt: skip


def test_filter_overlaps_returns_the_filtered_windows(spark) -> None:
    schema = StructType(
        [StructField("source", StringType()), StructField("line", LongType()), *WINDOW_FIELDS]
    )
    pairs = [(0.0, 100.0), (10.0, 130.0), (200.0, 320.0), (10.0, 130.0)]
    rows = [_window(1, k, s, e) for k, (s, e) in enumerate(pairs)]
    rows.append(_window(2, 0, 5.0, 125.0))  # another entry: never compared with line 1
    windows_df = spark.createDataFrame(rows, schema)
    kept_df = filter_overlaps(windows_df, OverlapConfig(overlap_percentage=50))
    expected_schema = StructType(
        [StructField("source", StringType()), StructField("line", LongType()), *KEPT_FIELDS]
    )
    expected_df = spark.createDataFrame(
        [
            (*_window(1, 1, 10.0, 130.0), True),
            (*_window(1, 2, 200.0, 320.0), True),
            (*_window(1, 3, 10.0, 130.0), False),
            (*_window(2, 0, 5.0, 125.0), True),
        ],
        expected_schema,
    )
    # Maps cannot be sorted, so rows are put in order by key instead of ignore_row_order.
    assert_df_equality(kept_df.orderBy("line", "window"), expected_df, ignore_nullable=True)


def test_a_table_of_manifests_with_its_own_key(spark) -> None:
    table_df = spark.createDataFrame(
        [("rec-1", json.dumps(TWO_SPEAKER_ENTRY)), ("rec-2", '{"segments": 3}')],
        "recording_id string, manifest string",
    )
    key = ("recording_id",)
    entries_df, rejected_df = parse_manifests(table_df, value="manifest", key=key)
    segments_df = explode_segments(entries_df, key=key)
    windows_df = build_windows(segments_df, BuilderConfig(), key=key)
    kept_df = filter_overlaps(windows_df, OverlapConfig(), key=key)
    assert_df_equality(
        kept_df.select("recording_id", "window", "start", "end", "filtered"),
        spark.createDataFrame(
            [("rec-1", 0, 0.0, 119.0, True)],
            "recording_id string, window long, start double, end double, filtered boolean",
        ),
        ignore_nullable=True,
    )
    assert [tuple(r) for r in rejected_df.collect()] == [
        ("rec-2", "segments: not an array (got number)", '{"segments": 3}')
    ]


def test_line_numbers_do_not_depend_on_split_settings(spark, tmp_path: Path) -> None:
    from alm_spark.run.session import scoped_conf

    lines = [json.dumps({**TWO_SPEAKER_ENTRY, "k": k, "pad": "x" * 200}) for k in range(40)]
    path = write_jsonl(tmp_path / "in.jsonl", [*lines[:20], "", *lines[20:]])
    small = {"spark.sql.files.maxPartitionBytes": "1024", "spark.sql.files.openCostInBytes": "0"}
    with scoped_conf(spark, small):
        entries_df, _ = read_manifests(spark, str(path))
        assert entries_df.rdd.getNumPartitions() > 5
        numbered = entries_df.select("line", F.get_json_object("value", "$.k").alias("k"))
        pairs = sorted((r.line, int(r.k)) for r in numbered.collect())
    assert pairs == [(k + 1 if k < 20 else k + 2, k) for k in range(40)]


def test_changed_splits_fail_instead_of_misnumbering(spark, tmp_path: Path) -> None:
    from alm_spark.run.session import scoped_conf

    path = write_jsonl(
        tmp_path / "in.jsonl", [json.dumps({**TWO_SPEAKER_ENTRY, "pad": "x" * 200})] * 30
    )
    entries_df, _ = read_manifests(spark, str(path))  # counted with the default splits
    with (
        scoped_conf(spark, {"spark.sql.files.maxPartitionBytes": "1024"}),
        pytest.raises(Exception, match="split differently"),
    ):
        entries_df.count()
