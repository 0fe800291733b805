"""DataFrame transformations, with the pure-Python renderer as the oracle."""

from __future__ import annotations

import json

from chispa import assert_df_equality
from pyspark.sql import Row
from pyspark.sql import functions as F

from alm_spark.algorithm.render import EntryRenderer, LineSettings
from alm_spark.config import build_config
from alm_spark.engines.fused import map_lines_to_results
from alm_spark.engines.transforms import (
    hash_partition_of,
    in_tasks,
    partition_keys,
    result_metrics,
    with_line_numbers,
)
from alm_spark.storage.schemas import (
    MANIFEST_LINES_SCHEMA,
    REJECTED_SCHEMA,
    STAGED_BLOCK_SCHEMA,
    STAGED_REJECTED_SCHEMA,
)
from tests.conftest import TWO_SPEAKER_ENTRY

ENTRY = TWO_SPEAKER_ENTRY


def _lines_df(spark, rows):
    # One partition: a real scan reads one split (same source and block_start) in one task.
    return spark.createDataFrame(rows, MANIFEST_LINES_SCHEMA).coalesce(1)


def test_map_lines_to_results_matches_pure_python(spark) -> None:
    cfg = build_config({})
    good = json.dumps(ENTRY)
    gated = json.dumps({**ENTRY, "audio_sample_rate": 8000})
    lines_df = _lines_df(spark, [("f", 0, good), ("f", 0, ""), ("f", 0, gated), ("f", 0, "{")])
    result_df = lines_df.transform(map_lines_to_results, LineSettings(cfg.builder, cfg.overlap))

    renderer = EntryRenderer(cfg.builder, cfg.overlap)
    expected = [renderer.render(good).output.decode(), renderer.render(gated).output.decode()]
    actual_df = result_df.where("kind = 'entry'").select("record")
    expected_df = spark.createDataFrame([(line,) for line in expected], "record string")
    assert_df_equality(actual_df, expected_df, ignore_row_order=True, ignore_nullable=True)

    rejected = result_df.where("kind = 'rejected'").select("record").first()
    assert json.loads(rejected.record)["row"] == 3
    block_df = result_df.where("kind = 'block'").select("lines", "blank_lines")
    assert_df_equality(
        block_df,
        spark.createDataFrame([(4, 1)], "lines long, blank_lines long"),
        ignore_nullable=True,
    )


def test_result_metrics_total_the_figures(spark) -> None:
    cfg = build_config({})
    rows = [("f", 0, json.dumps(ENTRY)), ("f", 0, json.dumps(ENTRY)), ("f", 0, "x"), ("f", 0, " ")]
    totals = (
        _lines_df(spark, rows)
        .transform(map_lines_to_results, LineSettings(cfg.builder, cfg.overlap))
        .agg(*result_metrics())
        .first()
        .asDict()
    )
    assert totals["entries_written"] == 2
    assert totals["lines_rejected"] == 1
    assert (totals["lines"], totals["blank_lines"]) == (4, 1)
    assert totals["windows"] == 2
    assert totals["filtered_windows"] == 2
    assert totals["filtered_dur"] == 238.0
    assert totals["lost_win"] == 2


def test_with_line_numbers_counts_earlier_splits(spark) -> None:
    rejected_df = spark.createDataFrame(
        [
            ("f", 0, 2, None, "e1", "r1"),
            ("f", 300, 0, None, "e2", "r2"),
            ("g", 0, 0, None, "e3", "r3"),
        ],
        STAGED_REJECTED_SCHEMA,
    )
    blocks_df = spark.createDataFrame(
        [("f", 0, 5), ("f", 100, 0), ("f", 300, 4), ("f", 200, 7), ("g", 0, 1)],
        STAGED_BLOCK_SCHEMA,
    )
    actual_df = rejected_df.transform(with_line_numbers, blocks_df)
    expected_df = spark.createDataFrame(
        [Row("f", 3, "e1", "r1"), Row("f", 13, "e2", "r2"), Row("g", 1, "e3", "r3")],
        REJECTED_SCHEMA,
    )
    assert_df_equality(actual_df, expected_df, ignore_row_order=True, ignore_nullable=True)


def test_in_tasks_puts_each_task_in_its_own_partition_as_sparks_hash_would(spark) -> None:
    values_df = spark.range(-40, 200).select(F.col("id").cast("int").alias("v"))
    hashed_df = values_df.select("v", F.pmod(F.hash("v"), F.lit(7)).alias("partition"))
    expected_df = spark.createDataFrame(
        [(v, hash_partition_of(v, 7)) for v in range(-40, 200)], "v int, partition int"
    )
    assert_df_equality(hashed_df, expected_df, ignore_row_order=True, ignore_nullable=True)
    assert [hash_partition_of(k, 7) for k in partition_keys(7)] == list(range(7))

    rows_df = spark.range(0, 60).select((F.col("id") % 5).alias("task"), "id")
    placed_df = rows_df.transform(in_tasks, "task", 5).select(
        "task", F.spark_partition_id().alias("partition")
    )
    assert placed_df.columns == ["task", "partition"]
    pairs = sorted({(r["task"], r["partition"]) for r in placed_df.collect()})
    assert pairs == [(t, t) for t in range(5)]
