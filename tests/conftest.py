from __future__ import annotations

import gzip
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
#: The golden cases shipped in the repository: inputs and NeMo Curator's outputs for them
#: (provenance and ``make golden`` in tests/golden/README.md).
GOLDEN = REPO / "tests" / "golden"
#: Where the golden-file tests read them: ``ALM_SPARK_FIXTURES`` may point at another copy.
FIXTURES = Path(os.environ.get("ALM_SPARK_FIXTURES") or GOLDEN)


def pytest_configure(config: pytest.Config) -> None:
    """Every Spark JVM the suite starts, in this process or a child, uses the test
    settings and, where ``make test`` made it, the class-data archive (tests/jvm.py).

    Each variable only where the environment does not set it.
    """
    from tests.jvm import SUITE_VARIABLES, suite_environment

    if not all(os.environ.get(name) for name in SUITE_VARIABLES):
        for name, value in suite_environment().items():
            if not os.environ.get(name):
                os.environ[name] = value


#: A small valid entry: two speakers, one 119-second window.
TWO_SPEAKER_ENTRY = {
    "audio_filepath": "/a.wav",
    "audio_sample_rate": 16000,
    "segments": [
        {"start": 0, "end": 60, "speaker": "x", "metrics": {"bandwidth": 9000}},
        {"start": 60, "end": 119, "speaker": "y", "metrics": {"bandwidth": 9000}},
    ],
}

# Golden cases of tests/golden/README.md: (input, overrides, expected file).
GOLDEN_CASES = [
    ("sample_input.jsonl", [], "sample_input.default.jsonl"),
    ("sample_input.jsonl", ["overlap.overlap_percentage=0"], "sample_input.overlap0.jsonl"),
    ("sample_input.jsonl", ["overlap.overlap_percentage=100"], "sample_input.overlap100.jsonl"),
    (
        "sample_input.jsonl",
        [
            "builder.target_window_duration=60",
            "builder.tolerance=0.15",
            "overlap.target_duration=60",
        ],
        "sample_input.t60.jsonl",
    ),
    ("nested_manifests", [], "nested.default.jsonl"),
    ("parity/realistic.jsonl.gz", [], "realistic.default.jsonl.gz"),
    (
        "parity/realistic.jsonl.gz",
        [
            "builder.truncation=false",
            "builder.min_speakers=1",
            "builder.max_speakers=7",
            "builder.min_bandwidth=4000",
            "builder.drop_fields=words,text",
            "builder.drop_fields_top_level=segments",
            "overlap.overlap_percentage=100",
        ],
        "realistic.variant.jsonl.gz",
    ),
    ("parity/adversarial.jsonl.gz", [], "adversarial.default.jsonl.gz"),
]
GOLDEN_IDS = [case[2] for case in GOLDEN_CASES]


def fixtures_dir() -> Path:
    """The golden cases: tests/golden, or ``ALM_SPARK_FIXTURES``; fails (never skips) if absent."""
    if not (FIXTURES / "expected").is_dir():
        pytest.fail(f"golden cases not found at {FIXTURES} (ALM_SPARK_FIXTURES, else tests/golden)")
    return FIXTURES


def read_lines(path: Path) -> Iterator[str]:
    """Non-blank lines of a file, a .gz file, or the manifests under a directory."""
    files = (
        sorted(p for p in path.rglob("*") if p.name.endswith((".jsonl", ".json", ".jsonl.gz")))
        if path.is_dir()
        else [path]
    )
    for file in files:
        opener: Any = gzip.open if file.suffix == ".gz" else open
        with opener(file, "rt", encoding="utf-8", newline="\n") as handle:
            for line in handle:
                if line.strip():
                    yield line


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
        encoding="utf-8",
    )
    return path


#: The shared session's log level; a command run in this process sets the job's, and
#: ``run_cli`` puts this one back.
SPARK_LOG_LEVEL = "ERROR"


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local SparkSession for the whole suite."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ["SPARK_TESTING"] = "1"
    from pyspark.sql import SparkSession

    from tests.jvm import JAVA_OPTIONS

    session = (
        SparkSession.builder.master("local[2]")
        .appName("alm_spark-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.extraJavaOptions", JAVA_OPTIONS)  # also where the env sets its own
        .getOrCreate()
    )
    session.sparkContext.setLogLevel(SPARK_LOG_LEVEL)
    yield session
    session.stop()


@dataclass
class CliRun:
    """What ``alm_spark.cli.main`` returned and printed, and how often it stopped a session."""

    code: int
    out: str
    err: str
    stops: int


def _sql_conf(spark: Any) -> dict[str, str]:
    return {str(row[0]): str(row[1]) for row in spark.sql("SET").collect()}


@pytest.fixture
def run_cli(
    spark: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[[list[str]], CliRun]:
    """``alm_spark.cli.main`` in this process, on the shared session (no JVM of its own).

    For tests about a command's exit code, messages and output, not about a new process
    (its console, its environment, a kill). The command joins the session, as it joins a
    notebook's, and stops it at the end as always: here that stop is counted
    (``CliRun.stops``) instead of done, and the runtime settings and log level the
    command set are put back, so later tests see the session as before.
    """
    from alm_spark import cli

    stops: list[Any] = []

    def stop(session: Any) -> None:
        stops.append(session)

    monkeypatch.setattr(type(spark), "stop", stop)
    for name in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"):  # the command sets them
        monkeypatch.setenv(name, os.environ.get(name, sys.executable))

    def run(argv: list[str]) -> CliRun:
        before = _sql_conf(spark)
        capsys.readouterr()
        stopped = len(stops)
        try:
            code = cli.main(argv)
        finally:
            # getOrCreate wrote the command's settings into the session's conf, static
            # ones too (spark.app.name, spark.hadoop.*): undone the same way.
            conf = spark._jsparkSession.sessionState().conf()
            after = _sql_conf(spark)
            for key in after.keys() - before.keys():
                conf.unsetConf(key)
            for key, value in before.items():
                if after.get(key) != value:
                    conf.setConfString(key, value)
            spark.sparkContext.setLogLevel(SPARK_LOG_LEVEL)
        captured = capsys.readouterr()
        return CliRun(code, captured.out, captured.err, len(stops) - stopped)

    return run


@pytest.fixture(scope="session")
def standalone_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A standalone master and two 1-core workers on 127.0.0.1, for the whole suite.

    Logs stay under pytest's temporary directory (``standalone*/logs``).
    """
    from tests.cluster import start_cluster

    cluster = start_cluster(tmp_path_factory.mktemp("standalone"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def connect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Spark Connect server (local[2]) on 127.0.0.1, for the whole suite.

    Skips where the installed pyspark has no Connect server (3.5) or the client libraries
    are missing; under CI only the former may skip. Logs stay under ``connect*/logs``.
    """
    import pyspark

    from alm_spark.run.session import connect_problem
    from tests.cluster import start_connect_server

    problem = connect_problem()
    if problem:
        if os.environ.get("CI") and int(pyspark.__version__.split(".")[0]) >= 4:
            pytest.fail(problem)
        pytest.skip(problem)
    server = start_connect_server(tmp_path_factory.mktemp("connect"))
    try:
        yield server
    finally:
        server.stop()


#: Fixtures whose tests carry a marker of the same kind, so they can be selected.
_FIXTURE_MARKERS = {"spark": "spark", "standalone_cluster": "cluster", "connect_server": "connect"}


#: Fixtures whose tests run in one pytest-xdist worker, so the suite starts one of each.
_SHARED_SERVERS = ("standalone_cluster", "connect_server")
#: Markers of the long tests: their groups are handed out first under pytest-xdist, so
#: the short ones fill the other worker instead of a long one starting last.
_LONG_MARKERS = ("cluster", "slow", "packaging", "connect")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that use the ``spark`` fixture carry the ``spark`` marker, and so on.

    For pytest-xdist (``make test``'s ``--dist loadgroup``), a test that uses the shared
    cluster or Connect server is grouped with the others that do, so each is started
    once; one that uses a module's fixture, with its module, so the fixture is built
    once; any other test goes wherever a process is free. The long tests' groups are
    handed out first, the cluster's before all.
    """
    ranks: dict[str, int] = {}
    groups: dict[str, str] = {}
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        for fixture, marker in _FIXTURE_MARKERS.items():
            if fixture in fixtures:
                item.add_marker(getattr(pytest.mark, marker))
        group = groups[item.nodeid] = _xdist_group(item)
        if group != item.nodeid:
            item.add_marker(pytest.mark.xdist_group(group))
        rank = next(
            (i for i, name in enumerate(_LONG_MARKERS) if item.get_closest_marker(name)),
            len(_LONG_MARKERS),
        )
        ranks[group] = min(ranks.get(group, rank), rank)
    if config.getoption("dist", "no") != "no":
        items.sort(key=lambda item: ranks[groups[item.nodeid]])


def _xdist_group(item: pytest.Item) -> str:
    """The shared server a test uses, else its module if it uses a module's fixture, else
    the test itself."""
    fixtures = getattr(item, "fixturenames", ())
    server = next((name for name in _SHARED_SERVERS if name in fixtures), None)
    if server:
        return server
    info = getattr(item, "_fixtureinfo", None)
    definitions = info.name2fixturedefs.values() if info is not None else ()
    if any(defs and defs[-1].scope in ("module", "package", "class") for defs in definitions):
        return item.nodeid.split("::")[0]
    return item.nodeid


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An S3-compatible server (moto) on 127.0.0.1 for the whole session, fsspec pointed at it."""
    pytest.importorskip("s3fs", reason="the s3 extra: pip install 'alm-spark[s3]'")
    pytest.importorskip("moto.server", reason="moto[server] (the test extra)")
    from tests.s3server import s3_server

    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server
