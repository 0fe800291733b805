"""The whole job through Spark: golden files, rejected lines, output safety."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alm_spark.config import load_config
from alm_spark.errors import ConfigError, OutputError
from alm_spark.names import ENGINES
from alm_spark.report.summary import format_summary
from alm_spark.run.job import run_pipeline
from alm_spark.run.session import scoped_conf
from alm_spark.testing.compare import compare_paths, iter_jsonl
from alm_spark.testing.layout import files_on_disk, output_problems
from tests.conftest import (
    GOLDEN_CASES,
    GOLDEN_IDS,
    TWO_SPEAKER_ENTRY,
    fixtures_dir,
    write_jsonl,
)

GOOD = TWO_SPEAKER_ENTRY


def _run(spark, source: Path | str, out: Path, *overrides: str):
    cfg = load_config(None, [f"input.manifest_path={source}", f"output.path={out}", *overrides])
    return run_pipeline(spark, cfg)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("source", "overrides", "expected"), GOLDEN_CASES, ids=GOLDEN_IDS)
def test_job_output_equals_golden(
    spark, tmp_path: Path, source, overrides, expected, engine
) -> None:
    root = fixtures_dir()
    result = _run(spark, root / source, tmp_path / "out", *overrides, f"spark.engine={engine}")
    comparison = compare_paths(tmp_path / "out", root / "expected" / expected)
    assert comparison.problems == []
    assert comparison.equal
    assert result.metrics["lines_rejected"] == 0


def test_reference_figures_and_layout(spark, tmp_path: Path) -> None:
    root = fixtures_dir()
    result = _run(spark, root / "nested_manifests", tmp_path / "out")
    m = result.metrics
    assert (m["input_lines"], m["entries_written"], m["builder_windows"]) == (20, 20, 724)
    assert (m["filtered_windows"], m["filtered_dur"]) == (100, pytest.approx(12142.0))
    assert m["run"]["input_files"] == 4  # notes.txt is not read
    names = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith("."))
    own = ["_SUCCESS", "_commits", "_metrics.json", "_rejected", "_report.html"]
    assert names[:5] == own
    assert len(names[5:]) == m["run"]["part_files"] > 0
    assert all(n.startswith("part-0001-000001-") and n.endswith(".jsonl") for n in names[5:])
    assert output_problems(tmp_path / "out") == []
    on_disk = json.loads((tmp_path / "out" / "_metrics.json").read_text())
    assert on_disk["builder_windows"] == 724
    assert on_disk["config"]["overlap"]["overlap_percentage"] == 50
    assert "ALM PIPELINE COMPLETE" in format_summary(result.metrics, result.output_path)
    assert not list(tmp_path.glob(".out.*"))  # nothing beside the output but its lock


@pytest.mark.parametrize("engine", ENGINES)
def test_every_line_ends_as_output_or_rejected(spark, tmp_path: Path, engine) -> None:
    lines = [
        json.dumps(GOOD),
        "",
        "[1]",
        json.dumps({**GOOD, "segments": [{"start": "0", "end": 1}]}),
        "   ",
        '{"x": NaN}',
        json.dumps({"audio_sample_rate": 8000}),
        "{",
    ]
    src = write_jsonl(tmp_path / "in.jsonl", lines)
    result = _run(spark, src, tmp_path / "out", f"spark.engine={engine}")
    m = result.metrics
    assert (m["input_lines"], m["blank_lines"]) == (6, 2)
    assert (m["entries_written"], m["lines_rejected"]) == (2, 4)
    rejected = sorted(iter_jsonl(tmp_path / "out" / "_rejected"), key=lambda r: r["line"])
    assert [(r["line"], r["raw"]) for r in rejected] == [
        (3, "[1]"),
        (4, lines[3]),
        (6, '{"x": NaN}'),
        (8, "{"),
    ]
    assert rejected[1]["error"] == "segments[0].start: not a number (got string)"
    assert all(r["source"].endswith("/in.jsonl") for r in rejected)
    assert len(list(iter_jsonl(tmp_path / "out"))) == 2


@pytest.mark.parametrize("engine", ENGINES)
def test_line_numbers_survive_file_splits(spark, tmp_path: Path, engine) -> None:
    lines = [
        json.dumps({**GOOD, "pad": "x" * 300}) if k % 7 else f"bad line {k}" for k in range(60)
    ]
    src = write_jsonl(tmp_path / "in.jsonl", lines)
    with scoped_conf(
        spark, {"spark.sql.files.maxPartitionBytes": "2048", "spark.sql.files.openCostInBytes": "0"}
    ):
        result = _run(spark, src, tmp_path / "out", f"spark.engine={engine}")
    rejected = sorted((r["line"], r["raw"]) for r in iter_jsonl(tmp_path / "out" / "_rejected"))
    assert rejected == [(k + 1, f"bad line {k}") for k in range(0, 60, 7)]
    assert (result.metrics["entries_written"], result.metrics["blank_lines"]) == (51, 0)


def test_rerun_replaces_the_output(spark, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [json.dumps(GOOD)] * 3)
    _run(spark, src, tmp_path / "out")
    old = files_on_disk(tmp_path / "out")
    (tmp_path / "out" / "_notes.txt").write_text("a user's file, not ours")
    write_jsonl(tmp_path / "in.jsonl", [json.dumps(GOOD)])
    result = _run(spark, src, tmp_path / "out")
    assert result.metrics["entries_written"] == 1
    assert len(list(iter_jsonl(tmp_path / "out"))) == 1
    # The old generation's files are gone; a file that is not ours is left alone.
    assert set(old) & set(files_on_disk(tmp_path / "out")) == set()
    assert output_problems(tmp_path / "out") == ["not live: _notes.txt"]


def test_refuses_unsafe_output_paths(spark, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "data" / "in.jsonl", [json.dumps(GOOD)])
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(OutputError, match="is not an alm_spark output"):
        _run(spark, src, foreign)
    assert (foreign / "thesis.tex").read_text() == "precious"
    with pytest.raises(OutputError, match="contains the input"):
        _run(spark, src, tmp_path / "data")
    with pytest.raises(OutputError, match="is inside the input directory"):
        _run(spark, tmp_path / "data", tmp_path / "data" / "out")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="exists and is a file"):
        _run(spark, src, tmp_path / "file")


def _fail_before_the_commit(spark, src: Path, out: Path, monkeypatch) -> None:
    """A run that fails after its data files are written, before their commit."""

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk full")

    with monkeypatch.context() as patched:
        patched.setattr("alm_spark.run.job._report_rows", broken)
        with pytest.raises(RuntimeError, match="disk full"):
            _run(spark, src, out)


def test_failed_run_leaves_old_output_and_no_new_file(spark, tmp_path: Path, monkeypatch) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [json.dumps(GOOD)])
    _run(spark, src, tmp_path / "out")
    before = files_on_disk(tmp_path / "out")
    _fail_before_the_commit(spark, src, tmp_path / "out", monkeypatch)
    assert files_on_disk(tmp_path / "out") == before
    assert output_problems(tmp_path / "out") == []  # _SUCCESS is back
    assert not list(tmp_path.glob(".out.*"))


@pytest.mark.parametrize("engine", ENGINES)
def test_empty_and_undecodable_inputs(spark, tmp_path: Path, engine) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "empty.jsonl").write_bytes(b"")
    (tmp_path / "in" / "latin1.jsonl").write_bytes(
        json.dumps(GOOD).encode() + b"\n" + b'{"audio_filepath": "caf\xe9.wav"}\n'
    )
    result = _run(spark, tmp_path / "in", tmp_path / "out", f"spark.engine={engine}")
    assert (result.metrics["entries_written"], result.metrics["lines_rejected"]) == (1, 1)
    (rejected,) = iter_jsonl(tmp_path / "out" / "_rejected")
    assert rejected["line"] == 2
    assert rejected["error"] == "not valid UTF-8: byte 0xe9 at offset 23"
    assert rejected["raw"] == '{"audio_filepath": "caf\ufffd.wav"}'
    (tmp_path / "only_empty").mkdir()
    (tmp_path / "only_empty" / "empty.jsonl").write_bytes(b"")
    result = _run(spark, tmp_path / "only_empty", tmp_path / "out2", f"spark.engine={engine}")
    assert (result.metrics["input_lines"], result.metrics["entries_written"]) == (0, 0)


def test_paths_with_glob_characters_and_overlapping_inputs(spark, tmp_path: Path) -> None:
    # Spark would read "x[1].jsonl" as the pattern matching "x1.jsonl": a different file.
    write_jsonl(tmp_path / "d" / "x[1].jsonl", [json.dumps({**GOOD, "n": 1})])
    write_jsonl(tmp_path / "d" / "x1.jsonl", [json.dumps({**GOOD, "n": 2})])
    _run(spark, tmp_path / "d" / "x[1].jsonl", tmp_path / "out")
    assert [e["n"] for e in iter_jsonl(tmp_path / "out")] == [1]
    # A folder plus a file and a subfolder inside it: every line is read once.
    write_jsonl(tmp_path / "d" / "sub" / "y.jsonl", [json.dumps({**GOOD, "n": 3})])
    sources = f"[{tmp_path}/d, {tmp_path}/d/x1.jsonl, {tmp_path}/d/sub]"
    result = _run(spark, sources, tmp_path / "out")
    assert sorted(e["n"] for e in iter_jsonl(tmp_path / "out")) == [1, 2, 3]
    assert result.metrics["run"]["input_files"] == 3


def test_refuses_to_replace_other_spark_outputs(spark, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [json.dumps(GOOD)])
    other = tmp_path / "warehouse"
    (other / "year=2024").mkdir(parents=True)
    (other / "_SUCCESS").write_text("")
    (other / "year=2024" / "part-0.parquet").write_text("data")
    with pytest.raises(OutputError, match="is not an alm_spark output"):
        _run(spark, src, other)
    assert (other / "year=2024" / "part-0.parquet").exists()
    _run(spark, src, tmp_path / "ours")
    assert json.loads((tmp_path / "ours" / "_metrics.json").read_text())["producer"] == "alm_spark"
    _run(spark, src, tmp_path / "ours")  # ours: replaced without complaint


def test_an_output_written_before_the_log_is_adopted(spark, tmp_path: Path, monkeypatch) -> None:
    import shutil

    src = write_jsonl(tmp_path / "in.jsonl", [json.dumps(GOOD)] * 2)
    _run(spark, src, tmp_path / "out")
    shutil.rmtree(tmp_path / "out" / "_commits")  # as an alm_spark before the log wrote it
    before = files_on_disk(tmp_path / "out")
    _fail_before_the_commit(spark, src, tmp_path / "out", monkeypatch)
    assert files_on_disk(tmp_path / "out") == before  # adopted as generation 1, kept
    assert output_problems(tmp_path / "out") == []
    # update finishes the failed overwrite's generation, which retires the adopted one.
    finished = _run(spark, src, tmp_path / "out", "output.mode=update")
    assert finished.metrics["run"]["update"]["new"] == 1
    assert output_problems(tmp_path / "out") == []
    assert set(before) & set(files_on_disk(tmp_path / "out")) == set()
    # An adopted generation records no settings: update cannot keep them.
    shutil.rmtree(tmp_path / "out" / "_commits")
    with pytest.raises(ConfigError, match="written by an older alm_spark"):
        _run(spark, src, tmp_path / "out", "output.mode=update")


def test_a_failed_commit_leaves_the_old_output(spark, tmp_path: Path, monkeypatch) -> None:
    from alm_spark.storage.commits import CommitLog

    src = write_jsonl(tmp_path / "in.jsonl", [json.dumps(GOOD)])
    old = _run(spark, src, tmp_path / "out").metrics["run"]["run_id"]
    before = files_on_disk(tmp_path / "out")
    real_append = CommitLog.append

    def failing(self, state, commit):
        if commit.closes:
            raise OSError("store unreachable")
        return real_append(self, state, commit)

    monkeypatch.setattr(CommitLog, "append", failing)
    with pytest.raises(OSError, match="store unreachable"):
        _run(spark, src, tmp_path / "out")
    kept = json.loads((tmp_path / "out" / "_metrics.json").read_text())
    assert kept["run"]["run_id"] == old
    assert files_on_disk(tmp_path / "out") == before
    assert output_problems(tmp_path / "out") == []


def test_an_interrupted_swap_is_recovered(spark, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [json.dumps(GOOD)])
    old = _run(spark, src, tmp_path / "out").metrics["run"]["run_id"]
    # A run killed between the two renames: the old output moved aside, the new one staged.
    retired = tmp_path / ".out.replaced-20261124T000000Z-0123abcd"
    (tmp_path / "out").rename(retired)
    (tmp_path / ".out.staging-20261124T000001Z-89abcdef" / "_data").mkdir(parents=True)
    sibling = tmp_path / ".out.staging-x.staging-20261124T000002Z-00000000"
    sibling.mkdir()  # belongs to an output named "out.staging-x": not ours to touch
    with pytest.raises(OutputError, match=r"output.mode is error"):
        _run(spark, src, tmp_path / "out", "output.mode=error")
    restored = json.loads((tmp_path / "out" / "_metrics.json").read_text())
    assert restored["run"]["run_id"] == old
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out."))
    assert leftovers == [sibling.name]
