"""The job over Spark Connect, against a local Connect server started from pip's pyspark.

What this proves: nothing on the job's path needs a SparkContext, the JVM or RDDs on
the client (the client here starts no JVM), and output, figures, report, rejected lines
and the publish protocol are those of a classic run. What it cannot prove: Databricks'
own Connect client and its serverless limits, or storage the client cannot reach (the
client publishes through fsspec, so it must see the output path the server writes).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from alm_spark import cli
from alm_spark.config import load_config
from alm_spark.run.job import run_pipeline
from alm_spark.testing.compare import compare_paths, iter_jsonl
from tests.cluster import ConnectServer, pyspark_version, server_env
from tests.conftest import REPO, fixtures_dir, write_jsonl

BIN = Path(sys.executable).parent
BAD_LINES = ["not json", "[1, 2]", '{"audio_filepath": "/x.wav", "segments": 7}']


def _input(tmp_path: Path) -> Path:
    """The fixture sample plus a file of three bad lines, in one folder."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "sample.jsonl").write_bytes((fixtures_dir() / "sample_input.jsonl").read_bytes())
    write_jsonl(folder / "bad.jsonl", BAD_LINES)
    return folder


def _client_env(**extra: str) -> dict[str, str]:
    """A client's environment: no Java needed, so none on PATH."""
    env = server_env(extra)
    env["PATH"] = f"{BIN}:/usr/bin:/bin"
    env.pop("JAVA_HOME", None)
    return env


def _alm(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "alm-spark"), *args], env=env, capture_output=True,
                          text=True, timeout=600, check=False)  # fmt: skip


def _figures(out: Path) -> dict[str, Any]:
    metrics = json.loads((out / "_metrics.json").read_text())
    metrics.pop("run")
    metrics.pop("config")
    return metrics


def test_connect_run_equals_a_classic_run(
    connect_server: ConnectServer, spark: Any, tmp_path: Path
) -> None:
    source = _input(tmp_path)
    out = tmp_path / "connect"
    proc = _alm(["run", "--progress", "on", f"spark.remote={connect_server.url}",
                 f"input.manifest_path={source}", f"output.path={out}"], _client_env())  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "ALM PIPELINE COMPLETE" in proc.stdout
    assert "] processing 2 manifest file(s)" in proc.stderr  # steps, from what Connect offers

    golden = fixtures_dir() / "expected" / "sample_input.default.jsonl"
    comparison = compare_paths(out, golden)
    assert comparison.problems == []
    assert comparison.equal
    rejected = sorted(iter_jsonl(out / "_rejected"), key=lambda r: r["line"])
    assert [(Path(r["source"]).name, r["line"], r["raw"]) for r in rejected] == [
        ("bad.jsonl", n, raw) for n, raw in enumerate(BAD_LINES, start=1)
    ]
    assert all(r["error"] for r in rejected)
    metrics = json.loads((out / "_metrics.json").read_text())
    assert (metrics["input_lines"], metrics["entries_written"], metrics["lines_rejected"]) == (
        8, 5, 3,
    )  # fmt: skip
    assert metrics["config"]["spark"]["remote"] == connect_server.url
    assert (out / "_SUCCESS").exists()
    assert "<svg" in (out / "_report.html").read_text()

    # The same job on a classic session: the same figures and report data.
    classic = tmp_path / "classic"
    cfg = load_config(None, [f"input.manifest_path={source}", f"output.path={classic}"])
    run_pipeline(spark, cfg)
    assert _figures(out) == _figures(classic)

    def layout(folder: Path) -> list[str]:
        return sorted("part-*" if p.name.startswith("part-") else p.name for p in folder.iterdir())

    assert layout(out) == layout(classic)
    assert sorted(p.relative_to(out) for p in out.rglob(".*")) == []


def test_connect_publish_is_safe(connect_server: ConnectServer, tmp_path: Path) -> None:
    source = fixtures_dir() / "sample_input.jsonl"
    out = tmp_path / "out"
    args = ["run", "-q", f"input.manifest_path={source}", f"output.path={out}"]
    env = _client_env(SPARK_REMOTE=connect_server.url)  # the environment names the server
    first = _alm(args, env)
    assert first.returncode == 0, first.stderr[-4000:]
    run_id = json.loads((out / "_metrics.json").read_text())["run"]["run_id"]
    again = _alm(args, env)  # overwrite: a new complete output replaces the old one
    assert again.returncode == 0, again.stderr[-4000:]
    assert json.loads((out / "_metrics.json").read_text())["run"]["run_id"] != run_id
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    refused = _alm([*args, "output.mode=error"], env)
    assert refused.returncode == 2
    assert "output.path" in refused.stderr
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not ours")
    refused = _alm(["run", "-q", f"input.manifest_path={source}", f"output.path={foreign}"], env)
    assert refused.returncode == 2
    assert (foreign / "keep.txt").read_text() == "not ours"


def test_spark_submit_remote(connect_server: ConnectServer, tmp_path: Path) -> None:
    source = fixtures_dir() / "sample_input.jsonl"
    out = tmp_path / "out"
    proc = subprocess.run(
        [str(BIN / "spark-submit"), "--remote", connect_server.url,
         str(REPO / "jobs" / "alm_pipeline.py"), "spark.master=local[1]",
         f"input.manifest_path={source}", f"output.path={out}"],
        env=server_env(), capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-4000:]
    assert (
        f"alm-spark: spark.master=local[1] from the config was not used: "
        f"spark-submit's remote {connect_server.url} wins"
    ) in console
    comparison = compare_paths(out, fixtures_dir() / "expected" / "sample_input.default.jsonl")
    assert comparison.equal, comparison.problems


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["spark.master=local[1]", "spark.remote=sc://127.0.0.1:9"], {},
         "spark.remote: cannot be used with spark.master (local[1])"),
        (["spark.master=local[1]"], {"SPARK_REMOTE": "sc://127.0.0.1:9"},
         "spark.master: cannot be used with SPARK_REMOTE=sc://127.0.0.1:9"),
        (["spark.remote=http://127.0.0.1:9"], {},
         "spark.remote: expected a Spark Connect address sc://host:port"),
    ],
)  # fmt: skip
def test_master_and_remote_together_are_refused(
    args: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:  # fmt: skip
    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["run", *args, f"output.path={tmp_path / 'out'}"]) == 2
    assert capsys.readouterr().err.startswith(f"alm-spark: error: {message}")
    assert not (tmp_path / "out").exists()


@pytest.mark.spark
def test_connect_needs_pyspark_4(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    if pyspark_version() >= (4, 0):
        pytest.skip("this pyspark runs over Connect (tested above)")
    assert cli.main(["run", "spark.remote=sc://127.0.0.1:9", f"output.path={tmp_path}/o"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "alm-spark: error: spark.remote: Spark Connect needs pyspark 4.0 or newer on the client"
    )
    assert err.count("\n") == 1


def test_connect_refuses_settings_only_a_launch_can_set(
    connect_server: ConnectServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    memory = "spark.conf.spark.executor.memory=4g"
    code = cli.main(
        ["run", f"spark.remote={connect_server.url}", memory, f"output.path={tmp_path}/o"]
    )
    assert code == 2
    assert capsys.readouterr().err.startswith(
        "alm-spark: error: spark.conf.spark.executor.memory: cannot be set over Spark Connect"
    )
