"""Totals beyond the largest double: no accepted line can fail the run; such totals are
null in _metrics.json, named under ``overflowed``, and read "overflow" (issue 9, class 1)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from alm_spark.algorithm.render import LineSettings
from alm_spark.config import build_config, load_config
from alm_spark.engines.fused import map_line_batches
from alm_spark.names import ENGINES
from alm_spark.report.figures import mark_overflows
from alm_spark.report.html import render_report
from alm_spark.report.summary import format_figure, format_hours, format_summary
from alm_spark.run.job import run_pipeline
from alm_spark.testing.compare import iter_jsonl

#: Valid: one segment of 1.7e308 seconds; three of them add up past the largest double.
HUGE = {
    "audio_filepath": "/a.wav",
    "audio_sample_rate": 16000,
    "segments": [{"start": -1.7e308, "end": 0, "speaker": "x", "metrics": {"bandwidth": 9000}}],
}
OVERFLOWED = ["audio_duration", "losses.dur_lost_win", "report.sample_rates.16000.speech_seconds"]


def _strict_json(text: str) -> Any:
    def refuse(token: str) -> None:
        raise ValueError(f"{token} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _long_numbers(text: str) -> list[str]:
    return re.findall(r"\d{16,}", text)


def test_a_task_whose_figures_overflow_finishes() -> None:
    cfg = build_config({})
    batch = pa.RecordBatch.from_pydict(
        {"source": ["f"] * 3, "block_start": [0] * 3, "value": [json.dumps(HUGE)] * 3}
    )
    rows = [
        r
        for b in map_line_batches(iter([batch]), LineSettings(cfg.builder, cfg.overlap))
        for r in b.to_pylist()
    ]
    kinds = [r["kind"] for r in rows]
    assert kinds.count("entry") == 3
    rate = [r["record"] for r in rows if r["kind"] == "report" and '"sample_rate"' in r["record"]]
    assert rate == [
        '{"metric":"sample_rate","key":"16000","v0":3.0,"v1":Infinity,"v2":0.0,"v3":0.0,"v4":0.0}'
    ]


def test_mark_overflows_names_every_non_finite_total() -> None:
    metrics = {
        "audio_duration": float("inf"),
        "segments": 3,
        "losses": {"lost_win": 3, "dur_lost_win": float("-inf"), "dur_lost_bw": 0.0},
        "report": {
            "coverage_seconds": {"builder": float("nan"), "filtered": 1.0},
            "x": [1.0, float("inf")],
        },
    }
    assert mark_overflows(metrics) == {
        "audio_duration": None,
        "segments": 3,
        "losses": {"lost_win": 3, "dur_lost_win": None, "dur_lost_bw": 0.0},
        "report": {"coverage_seconds": {"builder": None, "filtered": 1.0}, "x": [1.0, None]},
        "overflowed": [
            "audio_duration",
            "losses.dur_lost_win",
            "report.coverage_seconds.builder",
            "report.x.1",
        ],
    }
    assert mark_overflows({"a": 1.0})["overflowed"] == []


def test_figures_a_person_can_read() -> None:
    assert format_figure(1.7e308 / 3600) == "4.72e+304"
    assert format_figure(7503.25, 1) == "7503.2"
    assert format_figure(None) == "overflow"
    assert format_hours(1.7e308) == "4.72e+304 h"
    assert format_hours(7503.3) == "2.08 h"


def _run(spark, tmp_path: Path, files: dict[str, list[dict[str, Any]]], *overrides: str):
    for name, rows in files.items():
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    cfg = load_config(
        None, [f"input.manifest_path={tmp_path / 'in'}", f"output.path={out}", *overrides]
    )
    return run_pipeline(spark, cfg), out


@pytest.mark.parametrize("engine", ENGINES)
def test_sums_beyond_a_double_within_a_task(spark, tmp_path: Path, engine: str) -> None:
    result, out = _run(spark, tmp_path, {"a.jsonl": [HUGE] * 3}, f"spark.engine={engine}")
    on_disk = _strict_json((out / "_metrics.json").read_text())
    assert on_disk == result.metrics
    assert (on_disk["entries_written"], on_disk["lines_rejected"]) == (3, 0)
    assert on_disk["overflowed"] == OVERFLOWED
    assert on_disk["audio_duration"] is None
    assert on_disk["losses"]["dur_lost_win"] is None
    assert on_disk["losses"]["lost_win"] == 3
    assert on_disk["report"]["sample_rates"]["16000"]["speech_seconds"] is None
    assert on_disk["report"]["sample_rates"]["16000"]["entries"] == 3
    assert len(list(iter_jsonl(out))) == 3  # every accepted line is written
    summary = format_summary(result.metrics, result.output_path)
    assert "Segments:                     3   (audio: overflow)" in summary
    note = "NOTE: 3 total(s) exceed the largest double, shown as overflow (null in _metrics.json)"
    assert f"{note}: {', '.join(OVERFLOWED)}" in summary
    assert _long_numbers(summary) == []
    page = (out / "_report.html").read_text()
    assert page == render_report(on_disk)
    assert page.count(">overflow<") >= 2
    assert _long_numbers(page) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_sums_beyond_a_double_across_tasks(spark, tmp_path: Path, engine: str) -> None:
    # One file per task, each task's sums finite: only Spark's sums overflow.
    files = {f"{k}.jsonl": [HUGE] for k in range(3)}
    split = ["spark.conf.spark.sql.files.maxPartitionBytes=64", f"spark.engine={engine}"]
    split.append("spark.conf.spark.sql.files.openCostInBytes=64")
    result, out = _run(spark, tmp_path, files, *split)
    metrics = _strict_json((out / "_metrics.json").read_text())
    assert metrics["run"]["input_files"] == 3
    assert metrics["entries_written"] == 3
    assert metrics["overflowed"] == OVERFLOWED
    assert "overflow" in format_summary(result.metrics, result.output_path)


def test_large_finite_totals_are_readable(spark, tmp_path: Path) -> None:
    result, out = _run(spark, tmp_path, {"a.jsonl": [HUGE]})
    assert result.metrics["overflowed"] == []
    assert result.metrics["audio_duration"] == 1.7e308
    summary = format_summary(result.metrics, result.output_path)
    assert "Segments:                     1   (4.72e+304 h of audio)" in summary
    assert _long_numbers(summary) == []
    assert _long_numbers((out / "_report.html").read_text()) == []


@pytest.mark.parametrize("value", [None, 1.7e308, -1.7e308, 0.0])
def test_the_report_renders_any_total(value: float | None) -> None:
    from tests.test_report import _metrics

    metrics = _metrics()
    metrics["audio_duration"] = value
    metrics["filtered_dur"] = value
    metrics["losses"]["dur_lost_win"] = value
    rates = metrics["report"]["sample_rates"]["16000"]
    rates["speech_seconds"] = rates["speech_in_filtered_seconds"] = value
    metrics["report"]["coverage_seconds"]["filtered"] = value
    page = render_report(metrics)
    assert page.endswith("</html>")
    assert _long_numbers(page) == []
    assert ("overflow" in page) is (value is None)
