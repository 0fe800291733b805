"""output.* settings through the whole job: modes, formats, compression, lost windows."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from alm_spark.config import load_config
from alm_spark.errors import AlmSparkError, OutputError
from alm_spark.run.job import run_pipeline
from alm_spark.testing.compare import compare_entries, compare_paths, iter_jsonl
from alm_spark.testing.datagen import generate

LINES = 12


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("in") / "demo.jsonl"
    lines = [json.dumps(e) for e in generate("demo", LINES, seed=3)]
    lines.insert(5, "{not json")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def inline(spark, source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("inline") / "out"
    _run(spark, source, out)
    return out


def _run(spark, source: Path, out: Path, *overrides: str):
    cfg = load_config(None, [f"input.manifest_path={source}", f"output.path={out}", *overrides])
    return run_pipeline(spark, cfg)


def test_mode_error_refuses_an_existing_output(spark, source: Path, inline: Path) -> None:
    with pytest.raises(OutputError, match=r"exists \(output.mode is error\)"):
        _run(spark, source, inline, "output.mode=error")


def test_gzip_output_is_the_same_output(spark, source: Path, inline: Path, tmp_path: Path) -> None:
    _run(spark, source, tmp_path / "out", "output.compression=gzip")
    parts = sorted(p.name for p in (tmp_path / "out").glob("part-*"))
    assert parts
    assert all(name.endswith(".jsonl.gz") for name in parts)
    with gzip.open(tmp_path / "out" / parts[0], "rt") as handle:
        assert json.loads(handle.readline())["stats"]
    assert compare_paths(tmp_path / "out", inline).equal
    (rejected,) = (tmp_path / "out" / "_rejected").glob("part-*")
    assert rejected.name.endswith(".jsonl.gz")
    assert [r["line"] for r in iter_jsonl(rejected)] == [6]


def test_parquet_output_holds_the_same_entries(
    spark, source: Path, inline: Path, tmp_path: Path
) -> None:
    result = _run(spark, source, tmp_path / "out", "output.format=parquet")
    assert all(p.name.endswith(".snappy.parquet") for p in (tmp_path / "out").glob("part-*"))
    df = spark.read.parquet(str(tmp_path / "out"))
    assert df.columns == [
        "entry", "total_segments", "windows", "filtered_windows", "filtered_pairs",
        "truncation_events", "total_dur", "filtered_dur",
    ]  # fmt: skip
    entries = [json.loads(row.entry) for row in df.select("entry").toLocalIterator()]
    assert compare_entries(entries, iter_jsonl(inline)).equal
    assert compare_paths(tmp_path / "out", inline).equal  # compare reads parquet too
    totals = df.agg(F.sum("windows"), F.sum("filtered_windows")).first()
    assert list(totals) == [result.metrics["builder_windows"], result.metrics["filtered_windows"]]
    assert [r["line"] for r in iter_jsonl(tmp_path / "out" / "_rejected")] == [6]


def test_lost_windows_separate_joins_back(
    spark, source: Path, inline: Path, tmp_path: Path
) -> None:
    _run(spark, source, tmp_path / "out", "output.lost_window_details=separate")
    lost = {(r["source"], r["line"]): r for r in iter_jsonl(tmp_path / "out" / "_lost_windows")}
    assert len(lost) == LINES
    rebuilt = []
    for entry in iter_jsonl(tmp_path / "out"):
        ref = entry["stats"].pop("lost_win_full_data_ref")
        record = lost[(ref["source"], ref["line"])]
        assert record["audio_filepath"] == entry.get("audio_filepath")
        entry["stats"]["lost_win_full_data"] = record["lost_win_full_data"]
        rebuilt.append(entry)
    assert {line for _, line in lost} == set(range(1, LINES + 2)) - {6}
    assert compare_entries(rebuilt, iter_jsonl(inline)).equal


def test_lost_windows_drop(spark, source: Path, inline: Path, tmp_path: Path) -> None:
    _run(spark, source, tmp_path / "out", "output.lost_window_details=drop")
    dropped = list(iter_jsonl(tmp_path / "out"))
    assert all("lost_win_full_data" not in e["stats"] for e in dropped)
    full = list(iter_jsonl(inline))
    for entry in full:
        del entry["stats"]["lost_win_full_data"]
    assert compare_entries(dropped, full).equal
    assert not (tmp_path / "out" / "_lost_windows").exists()


def test_report_figures_and_page(spark, inline: Path) -> None:
    metrics = json.loads((inline / "_metrics.json").read_text())
    report = metrics["report"]
    assert sum(report["window_duration"]["counts"]) == metrics["filtered_windows"]
    assert sum(v["entries"] for v in report["sample_rates"].values()) == LINES
    assert (
        sum(v["filtered_windows"] for v in report["sample_rates"].values())
        == (metrics["filtered_windows"])
    )
    assert report["rejected_reasons"] == {
        "invalid JSON: Expecting property name enclosed in double quotes": 1
    }
    assert 0 < report["coverage_seconds"]["filtered"] <= report["coverage_seconds"]["builder"]
    assert report["coverage_seconds"]["builder"] <= metrics["audio_duration"]
    assert set(metrics["run"]["timings"]) == {
        "list_inputs", "process_and_write", "rejected_and_figures", "publish",
    }  # fmt: skip
    page = (inline / "_report.html").read_text()
    assert f"{metrics['filtered_windows']:,} in filtered_windows" in page


def test_leftovers_of_interrupted_runs_are_removed(spark, source: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    stale = [
        tmp_path / ".out.staging-20260101T000000Z-0000aaaa",
        tmp_path / ".out.staging-20260101T000001Z-1111bbbb",
    ]
    for path in stale:
        (path / "_data").mkdir(parents=True)
    keep = tmp_path / ".outer.staging-1"
    keep.mkdir()
    _run(spark, source, out)
    assert not any(path.exists() for path in stale)
    assert keep.exists()


def test_zstd_jsonl_output_is_the_same_output(
    spark, source: Path, inline: Path, tmp_path: Path
) -> None:
    """Tasks compress their own files (Arrow's zstd): no Hadoop native library needed."""
    _run(spark, source, tmp_path / "out", "output.compression=zstd")
    parts = sorted(p.name for p in (tmp_path / "out").glob("part-*"))
    assert parts
    assert all(name.endswith(".jsonl.zst") for name in parts)
    with pa.input_stream(str(tmp_path / "out" / parts[0]), compression="zstd") as stream:
        assert json.loads(stream.read().split(b"\n")[0])["stats"]
    assert compare_paths(tmp_path / "out", inline).equal
    (rejected,) = (tmp_path / "out" / "_rejected").glob("part-*")
    assert rejected.name.endswith(".jsonl.zst")
    assert [r["line"] for r in iter_jsonl(rejected)] == [6]


def test_output_path_with_glob_characters(
    spark, source: Path, inline: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run [1] {a}"
    _run(spark, source, out)  # the source has a rejected line: staged records are read back
    assert compare_paths(out, inline).equal
    assert [r["line"] for r in iter_jsonl(out / "_rejected")] == [6]


def test_separate_mode_refuses_keys_from_different_splits(
    spark, source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alm_spark.engines import fused

    real = fused.split_line_counts

    def skewed(lines_df):
        counts = real(lines_df)
        key = next(iter(counts))
        before, lines = counts[key]
        return {**counts, key: (before, lines + 1)}

    monkeypatch.setattr(fused, "split_line_counts", skewed)
    with pytest.raises(AlmSparkError, match="split differently"):
        _run(spark, source, tmp_path / "out", "output.lost_window_details=separate")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.*"))
