"""Command line: exit codes and messages, then real runs: in this process on the shared
session, through the console script, and through spark-submit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from alm_spark import cli
from alm_spark.config import build_config
from alm_spark.testing.compare import compare_paths
from tests.conftest import REPO, fixtures_dir


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["builder.tolerance=-1"], "builder.tolerance: must not be negative, got -1"),
        (
            ["builder.min_speakers=6"],
            "builder.min_speakers: 6 is greater than builder.max_speakers (5)",
        ),
        (
            ["overlap.overlap_percentage=150"],
            "overlap.overlap_percentage: must be between 0 and 100",
        ),
        (["overlap.target_duration=0"], "overlap.target_duration: must be greater than 0, got 0"),
        (["builder.colour=red"], "builder.colour: unknown setting"),
        (["builder.truncation=maybe"], "builder.truncation: expected true or false"),
        (
            ["input.manifest_path=/no/such/file.jsonl"],
            "input.manifest_path: no such file or directory: /no/such/file.jsonl",
        ),
        (["--config", "/no/such.yaml"], "--config: file not found: /no/such.yaml"),
    ],
)
def test_bad_settings_exit_2_with_one_line(args, message, capsys, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = cli.main(["run", *args, f"output.path={out}"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"alm-spark: error: {message}")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert not out.exists()


def test_missing_java_is_explained(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("JAVA_HOME", "PYSPARK_GATEWAY_PORT", "SPARK_ENV_LOADED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(cli.shutil, "which", lambda _: None)
    assert cli.main(["run"]) == 2
    err = capsys.readouterr().err
    assert "Java 17 or newer is required" in err
    assert "JAVA_HOME" in err


def test_compare_command(tmp_path: Path, capsys) -> None:
    (tmp_path / "a.jsonl").write_text('{"x": 1}\n{"x": 2}\n')
    (tmp_path / "b.jsonl").write_text('{"x": 2.0}\n{"x": 1}\n')
    (tmp_path / "c.jsonl").write_text('{"x": 3}\n{"x": 1}\n')
    assert cli.main(["compare", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]) == 0
    assert cli.main(["compare", str(tmp_path / "a.jsonl"), str(tmp_path / "c.jsonl")]) == 1
    assert "DIFFERENT" in capsys.readouterr().out
    assert cli.main(["compare", str(tmp_path / "nope"), str(tmp_path / "a.jsonl")]) == 2


def _case() -> tuple[Path, Path]:
    """The reference's sample with its golden file (tests/golden)."""
    root = fixtures_dir()
    return root / "sample_input.jsonl", root / "expected" / "sample_input.default.jsonl"


def _check_output(out: Path, golden: Path) -> None:
    comparison = compare_paths(out, golden)
    assert comparison.equal, comparison.problems
    metrics = json.loads((out / "_metrics.json").read_text())
    assert metrics["lines_rejected"] == 0
    assert sorted(p.relative_to(out) for p in out.rglob("*.crc")) == []


def _job_args(source: Path, out: Path, *overrides: str) -> list[str]:
    args = ["--config", str(REPO / "conf" / "alm_pipeline.yaml")]
    return [*args, f"input.manifest_path={source}", f"output.path={out}", *overrides]


def _check_job(stdout: str, out: Path, golden: Path, *overrides: str) -> None:
    """A run's summary and output (and windows table, when asked for)."""
    assert "ALM PIPELINE COMPLETE" in stdout
    _check_output(out, golden)
    if "output.windows_table=true" in overrides:
        metrics = json.loads((out / "_metrics.json").read_text())
        table = pq.read_table(out / "_windows")
        assert table.num_rows == metrics["filtered_windows"] > 0


def test_run_command_runs_the_dataframe_engine(run_cli, tmp_path: Path) -> None:
    """``alm-spark run`` in this process, on the shared session (the console script's own
    process, its JVM and console, and spark-submit's are tested on the installed wheel:
    tests/test_packaging.py)."""
    source, golden = _case()
    out = tmp_path / "out"
    overrides = ("spark.engine=dataframe", "output.windows_table=true")
    run = run_cli(["run", "--progress", "on", *_job_args(source, out, *overrides)])
    assert run.code == 0, run.err[-3000:]
    assert run.stops == 1  # the command stops the session it joined, as always
    _check_job(run.out, out, golden, *overrides)
    assert "(dataframe engine)" in run.err


@pytest.mark.parametrize(
    ("setting", "quiet", "master", "shown"),
    [
        ("auto", False, "local[2]", True),
        ("auto", False, "yarn", False),
        ("auto", False, "spark://host:7077", False),
        ("on", False, "yarn", True),
        ("off", False, "local[*]", False),
        ("on", True, "local[*]", False),
    ],
)
def test_progress_setting(setting: str, quiet: bool, master: str, shown: bool) -> None:
    config = build_config({"output": {"progress": setting}})
    assert cli._progress_enabled(config, quiet, master) is shown


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["builder.min_bandwidth=" + "1" * 400],
            "builder.min_bandwidth: out of range (larger than a double), got a 400-digit integer",
        ),
        (["spark.master=5"], "spark.master: expected local, local[N], local[*], spark://"),
        (["--config", "{dup}"], "builder: given twice in {dup} (lines 1 and 3); keep one"),
    ],
)
def test_hostile_settings_exit_2_before_spark_starts(
    args: list[str], message: str, capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dup = tmp_path / "dup.yaml"
    dup.write_text("builder:\n  min_speakers: 1\nbuilder:\n  max_speakers: 3\n")
    monkeypatch.setattr(cli, "build_session", lambda *a, **k: pytest.fail("Spark was started"))
    out = tmp_path / "out"
    code = cli.main(["run", *(a.format(dup=dup) for a in args), f"output.path={out}"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"alm-spark: error: {message.format(dup=dup)}")
    assert err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["audio.path_field=path"], "audio.path_field: a re-cut reads the path from the windows"),
        (["audio.world_size=4"], "audio.world_size: 4 needs audio.equal_shards: true"),
        (["audio.format=lhotse"], "audio.format: expected one of webdataset, nemo"),
    ],
)
def test_recut_settings_are_refused_before_spark_starts(
    args: list[str], message: str, capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "build_session", lambda *a, **k: pytest.fail("Spark was started"))
    out = tmp_path / "out"
    code = cli.main(["recut", str(tmp_path / "finished"), *args, f"output.path={out}"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"alm-spark: error: {message}")
    assert err.count("\n") == 1
    assert not out.exists()


def test_the_entry_script_passes_recut_on(tmp_path: Path) -> None:
    """``spark-submit alm_pipeline.py recut ...`` is the recut command, not a run."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "alm_pipeline.py"), "recut", str(tmp_path),
         "audio.path_field=path", f"output.path={out}"],
        check=False, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("alm-spark: error: audio.path_field: a re-cut reads the path")
    assert not out.exists()
