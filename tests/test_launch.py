"""``alm-spark submit`` and ``alm-spark paths`` (no Spark is started here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from alm_spark import cli
from alm_spark.run import launch
from tests.conftest import REPO


def test_shipped_files_are_the_repository_files() -> None:
    assert launch.shipped_path("entry").read_bytes() == (REPO / "jobs/alm_pipeline.py").read_bytes()
    config = launch.shipped_path("config").read_bytes()
    assert config == (REPO / "conf/alm_pipeline.yaml").read_bytes()


def test_paths_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["paths", "entry"]) == 0
    assert capsys.readouterr().out == f"{launch.shipped_path('entry')}\n"
    assert cli.main(["paths"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["entry", "config", "log4j"]
    assert all(Path(line.split("\t")[1]).is_file() for line in lines)
    assert cli.main(["paths", "jar"]) == 2
    assert capsys.readouterr().err == (
        "alm-spark: error: jar: unknown file (known: entry, config, log4j)\n"
    )


def test_submit_command_uses_this_installation(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SPARK_HOME", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"):
        monkeypatch.delenv(name, raising=False)
    command, env = launch.submit_command(
        ["--master", "spark://h:7077", "--", "spark.log_level=error", "output.path=/o"]
    )
    home = launch.spark_home()
    assert command[:3] == [str(home / "bin" / "spark-submit"), "--master", "spark://h:7077"]
    assert command[3] == "--driver-java-options"
    assert command[4] == (
        f"-Dlog4j2.configurationFile=file:{launch.shipped_path('log4j')} "
        "-Dalm_spark.log.level=ERROR"
    )
    assert command[5:] == [
        str(launch.shipped_path("entry")),
        "spark.log_level=error",
        "output.path=/o",
    ]
    assert env["SPARK_HOME"] == str(home)
    assert env["PYSPARK_PYTHON"] == env["PYSPARK_DRIVER_PYTHON"] == sys.executable


def test_submit_keeps_the_users_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYSPARK_PYTHON", raising=False)
    monkeypatch.setenv("SPARK_HOME", "/opt/spark")
    options = ["--conf", "spark.pyspark.python=./env/bin/python", "--driver-java-options=-Dx=1"]
    command, env = launch.submit_command(options)
    assert command == ["/opt/spark/bin/spark-submit", *options, str(launch.shipped_path("entry"))]
    assert "PYSPARK_PYTHON" not in env
    assert env["SPARK_HOME"] == "/opt/spark"


def test_submit_refuses_bad_settings_before_spark_starts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["submit", "--master", "local[2]", "--", "builder.tolerance=-1"]) == 2
    assert capsys.readouterr().err == (
        "alm-spark: error: builder.tolerance: must not be negative, got -1\n"
    )
