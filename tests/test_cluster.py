"""Jobs on a real standalone cluster (master and two 1-core workers on 127.0.0.1).

Golden output through executors that are separate JVMs and Python workers (``alm-spark
run`` with the cluster's master), a quiet console, no ``.crc`` files, and a spark-submit
run that loses an executor mid-way finishing with the same output and figures as a clean
run, for each engine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from alm_spark.config import build_config, load_config
from alm_spark.errors import ConfigError
from alm_spark.names import ENGINES
from alm_spark.run.job import run_pipeline
from alm_spark.testing.compare import compare_paths
from alm_spark.testing.datagen import generate, write_jsonl
from tests.cluster import (
    EXECUTOR_CLASS,
    LOOPBACK,
    StandaloneCluster,
    children,
    free_port,
    server_env,
)
from tests.conftest import GOLDEN_CASES, REPO, fixtures_dir, read_lines

BIN = Path(sys.executable).parent
ENTRY = REPO / "jobs" / "alm_pipeline.py"
#: A golden case per kind of check: the fixture sample, and the adversarial set.
CLUSTER_CASES = [
    c for c in GOLDEN_CASES if c[2] in ("nested.default.jsonl", "adversarial.default.jsonl.gz")
]


@dataclass
class Run:
    """A spark-submit run in the background, its console going to a file."""

    proc: subprocess.Popen[bytes]
    log: Path

    def finish(self, timeout: float = 1800) -> str:
        """Wait for the run; return its console; fail on a non-zero exit."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # never leave a driver behind
            self.proc.wait()
            raise
        console = self.log.read_text(errors="replace")
        assert self.proc.returncode == 0, console[-4000:]
        return console


def submit(
    cluster: StandaloneCluster, job_args: list[str], log: Path, ui_port: int | None = None
) -> Run:
    """Start spark-submit of the job on the cluster (client mode); console into ``log``."""
    command = [str(BIN / "spark-submit"), "--master", cluster.url]
    if ui_port is not None:  # the driver's REST API, to see which executor runs tasks
        command += ["--conf", "spark.ui.enabled=true", "--conf", f"spark.ui.port={ui_port}"]
    command += [str(ENTRY), *job_args]
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            command, env=server_env(), stdout=handle, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    return Run(proc, log)


def spark_info_lines(console: str) -> list[str]:
    return [line for line in console.splitlines() if " INFO " in line and "alm_spark" not in line]


def engine_overrides(engine: str) -> list[str]:
    """The override selecting an engine; skip engines this version's config refuses."""
    try:
        build_config({"spark": {"engine": engine}})
    except ConfigError as err:
        if "unknown setting" in str(err) and engine == ENGINES[0]:
            return []  # a version with one engine: it is the default
        pytest.skip(f"spark.engine={engine} is refused here: {err}")
    return [f"spark.engine={engine}"]


def test_alm_spark_run_on_the_cluster_gives_golden_output(
    standalone_cluster: StandaloneCluster, tmp_path: Path
) -> None:
    """``alm-spark run spark.master=spark://...`` over both cases' inputs (one application
    for both): the goldens, a quiet console, and executors that run this Python, not the
    first ``python3`` on PATH (here one without numpy), though PYSPARK_PYTHON is unset.
    spark-submit to the cluster is the kill tests' launcher and the packaging recipes'."""
    root = fixtures_dir()
    out = tmp_path / "out"
    sources = [root / source for source, _, _ in CLUSTER_CASES]
    assert {tuple(overrides) for _, overrides, _ in CLUSTER_CASES} == {()}  # default settings
    expected = tmp_path / "expected.jsonl"
    expected.write_text(
        "".join(
            line + "\n"
            for _, _, name in CLUSTER_CASES
            for line in read_lines(root / "expected" / name)
        )
    )
    env = server_env({"PATH": "/usr/bin:/bin"})
    for name in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"):
        env.pop(name)
    standalone_cluster.wait_idle()
    paths = ",".join(str(p) for p in sources)
    proc = subprocess.run(
        [str(BIN / "alm-spark"), "run", f"spark.master={standalone_cluster.url}",
         f"input.manifest_path=[{paths}]", f"output.path={out}"],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert f"executors run {sys.executable}" in proc.stderr
    comparison = compare_paths(out, expected)
    assert comparison.problems == []
    assert comparison.equal
    metrics = json.loads((out / "_metrics.json").read_text())
    assert metrics["input_lines"] == sum(1 for p in sources for _ in read_lines(p))
    assert metrics["run"]["spark_version"]
    assert sorted(p.relative_to(out) for p in out.rglob("*.crc")) == []
    assert sorted(p.relative_to(out) for p in out.rglob(".*")) == []
    assert "ALM PIPELINE COMPLETE" in proc.stdout
    assert spark_info_lines(proc.stderr) == []
    assert "] processing" not in proc.stderr  # progress is for local runs (output.progress=auto)


@pytest.fixture(scope="module")
def kill_input(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Production-shaped manifests, about 11 MB: eight input splits of 1.5 MB or less."""
    source = tmp_path_factory.mktemp("kill") / "in.jsonl"
    write_jsonl(source, generate("production", 12, seed=5))
    return source


#: Small splits, so the main stage has many tasks and a kill lands among them; a few
#: shuffle partitions, not 200 tasks of a few rows each (the DataFrame engine's grouped
#: stages), which took most of that engine's run.
KILL_CONF = {
    "spark.sql.files.maxPartitionBytes": str(3 * 512 * 1024),
    "spark.sql.shuffle.partitions": "8",
}


def _run_args(source: Path, out: Path, engine: str) -> list[str]:
    return [f"input.manifest_path={source}", f"output.path={out}", *engine_overrides(engine)]


def _busy_executors(cluster: StandaloneCluster, ui_port: int) -> list[int]:
    """PIDs of executor JVMs running tasks: with Python workers (the main stage of the
    fused engine), or with active tasks by the driver's REST API (either engine)."""
    executors = cluster.executors()
    python = [pid for _, pid in executors if any("pyspark" in a for _, a in children(pid))]
    if python:
        return python
    api = f"http://{LOOPBACK}:{ui_port}/api/v1/applications"
    try:
        with urllib.request.urlopen(api, timeout=5) as response:
            (app,) = json.load(response)
        with urllib.request.urlopen(f"{api}/{app['id']}/executors", timeout=5) as response:
            busy = {
                e["id"] for e in json.load(response) if e["id"] != "driver" and e["activeTasks"]
            }
    except (OSError, ValueError):
        return []
    return [
        pid
        for pid, args in children_args(cluster)
        if any(f"--executor-id {e} " in f"{args} " for e in busy)
    ]


def children_args(cluster: StandaloneCluster) -> list[tuple[int, str]]:
    """(pid, command line) of the executor JVMs on the cluster's workers."""
    return [
        (pid, args)
        for worker in cluster.workers
        for pid, args in children(worker.pid)
        if EXECUTOR_CLASS in args
    ]


def _lines(out: Path) -> list[str]:
    return sorted(line for part in out.glob("part-*") for line in part.read_text().splitlines())


def _rounded(value: Any) -> Any:
    """Floats to 12 significant digits: Spark sums the report's figures in the order
    tasks finish, which a retried task changes (82116.17500000002 vs ...03)."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value


def _figures(out: Path) -> dict[str, Any]:
    """``_metrics.json`` but ``run`` and the output path, floats to 12 digits."""
    metrics = json.loads((out / "_metrics.json").read_text())
    metrics.pop("run")
    metrics["config"]["output"].pop("path")  # the two runs write to different places
    metrics["config"]["spark"].pop("engine")  # one clean run is every engine's reference
    return _rounded(metrics)


@pytest.fixture(scope="module")
def kill_reference(spark: Any, kill_input: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean run of the kill input with the same settings, on the shared local session
    (a clean run is the same wherever it runs: the cluster's golden test shows it); both
    engines' killed cluster runs must give this output."""
    conf = [f"spark.conf.{k}={v}" for k, v in KILL_CONF.items()]
    clean = tmp_path_factory.mktemp("kill-reference") / "clean"
    run_pipeline(spark, load_config(None, [*_run_args(kill_input, clean, "fused"), *conf]))
    return clean


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_killed_executor_changes_nothing(
    standalone_cluster: StandaloneCluster,
    kill_input: Path,
    kill_reference: Path,
    tmp_path: Path,
    engine: str,
) -> None:
    extra = [f"spark.conf.{k}={v}" for k, v in KILL_CONF.items()]
    clean, killed = kill_reference, tmp_path / "killed"
    standalone_cluster.wait_idle()
    killed_args = [*_run_args(kill_input, killed, engine), *extra]
    ui_port = free_port()
    run = submit(standalone_cluster, killed_args, tmp_path / "killed.log", ui_port)
    victim = None
    deadline = time.time() + 1200
    while victim is None and run.proc.poll() is None and time.time() < deadline:
        running = _busy_executors(standalone_cluster, ui_port)
        if running:
            time.sleep(1.0)  # well inside the stage: the first tasks are under way
            victim = running[0]
            os.kill(victim, signal.SIGKILL)  # an executor JVM, child of our worker
        time.sleep(0.1)
    console = run.finish()
    assert victim is not None, "the run ended before an executor could be killed"
    assert "Lost executor" in console  # the driver saw the executor die mid-run

    assert _lines(killed) == _lines(clean)
    assert _figures(killed) == _figures(clean)
    assert compare_paths(killed, clean).equal
    # Nothing of the lost executor's attempts: no hidden file, no part file but those the
    # committed attempts reported.
    assert sorted(p.relative_to(killed) for p in killed.rglob(".*")) == []
    reported = json.loads((killed / "_metrics.json").read_text())["run"]["part_files"]
    assert len(list(killed.glob("part-*"))) == reported
