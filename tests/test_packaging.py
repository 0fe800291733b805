"""The README's install and cluster recipes, run as written, from a wheelhouse.

``make wheelhouse`` (run by ``.ci/run``) builds wheels of the project and every
dependency into a folder; these tests install from it with ``--no-index`` into fresh
virtual environments, so they test the package a user gets, not this checkout:

* the wheel in a clean venv runs from another directory, with the example config it
  ships, its console quiet (no Spark INFO or WARN lines);
* spark-submit from that installation (``alm-spark submit`` and plain spark-submit, whose
  master wins over the config's);
* a venv-pack archive shipped to the standalone cluster (``--archives``), whose
  workers' own ``python3`` has no numpy;
* ``--py-files`` of a zip of the package, where the workers have the dependencies.

Without a wheelhouse they skip (a developer's machine); under CI they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from alm_spark.testing.compare import compare_paths
from tests.cluster import StandaloneCluster, server_env, spark_home
from tests.conftest import REPO, fixtures_dir

pytestmark = [pytest.mark.packaging, pytest.mark.slow]

#: Builds with ``make wheelhouse``; ``.ci/run`` sets it.
WHEELHOUSE = Path(os.environ.get("ALM_SPARK_WHEELHOUSE", REPO / ".wheelhouse"))
DEPENDENCIES = ["numpy", "pandas", "pyarrow", "fsspec", "pyyaml"]


def wheelhouse() -> Path:
    """The wheelhouse, or skip (fail under CI, which must run these tests)."""
    if not any(WHEELHOUSE.glob("alm_spark-*.whl")):
        message = f"no wheelhouse at {WHEELHOUSE} (make wheelhouse, or set ALM_SPARK_WHEELHOUSE)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return WHEELHOUSE


def user_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A user's shell: no virtual environment on PATH, no PYSPARK_* or SPARK_HOME."""
    env = server_env()
    for name in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_HOME", "VIRTUAL_ENV",
                 "PYTHONPATH"):  # fmt: skip
        env.pop(name, None)
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    env.update(extra or {})
    return env


def make_venv(path: Path, *requirements: str) -> Path:
    """A fresh venv with ``requirements`` from the wheelhouse only; returns its bin/.

    This interpreter's pip installs into it (``--python``), so the venv gets no pip of
    its own, and nothing is byte-compiled ahead (Python compiles what it imports): the
    same packages in the same places, in a third of the time.
    """
    source = wheelhouse()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(path / "bin" / "python"), "install",
         "--quiet", "--no-index", "--no-compile", "--disable-pip-version-check",
         "--find-links", str(source), *requirements],
        check=True, env=user_env(), timeout=900,
    )  # fmt: skip
    return path / "bin"


def run(command: list[str], cwd: Path, env: Mapping[str, str] | None = None) -> str:
    """Run a recipe's command as written; return its console; fail on a non-zero exit."""
    proc = subprocess.run(
        command, cwd=cwd, env=dict(env or user_env()), capture_output=True, text=True,
        timeout=900, check=False,
    )  # fmt: skip
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{command}\n{console[-4000:]}"
    return console


def check_golden(out: Path) -> None:
    """The output is the sample's golden output."""
    comparison = compare_paths(out, fixtures_dir() / "expected" / "sample_input.default.jsonl")
    assert comparison.problems == []
    assert comparison.equal
    metrics = json.loads((out / "_metrics.json").read_text())
    assert (metrics["input_lines"], metrics["lines_rejected"]) == (5, 0)
    assert sorted(p.relative_to(out) for p in out.rglob("*.crc")) == []


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``pip install 'alm-spark[spark]'`` into a clean venv; returns its bin/."""
    return make_venv(tmp_path_factory.mktemp("pkg") / "venv", "alm-spark[spark]")


def _sample() -> Path:
    return fixtures_dir() / "sample_input.jsonl"


def spark_info_lines(console: str) -> list[str]:
    """Spark's INFO log lines (the job's own log lines name ``alm_spark``)."""
    return [line for line in console.splitlines() if " INFO " in line and "alm_spark" not in line]


def test_wheel_runs_from_another_directory(installed: Path, tmp_path: Path) -> None:
    """The console script of the installed wheel, with the example config it ships: the
    golden output, progress lines, and a console free of Spark's INFO and WARN lines."""
    where = run([str(installed / "python"), "-c", "import alm_spark; print(alm_spark.__file__)"],
                tmp_path)  # fmt: skip
    assert where.startswith(str(installed.parent)), where  # not this checkout
    # The example config and the bundled sample it falls back to come with the wheel.
    config = run([str(installed / "alm-spark"), "paths", "config"], tmp_path).strip()
    assert config.startswith(str(installed.parent)), config
    default_input = run(
        [str(installed / "python"), "-c",
         "import sys; from alm_spark.config import load_config; "
         "print(*load_config(sys.argv[1]).input.paths)", config],
        tmp_path,
    ).strip()  # fmt: skip
    assert default_input.startswith(str(installed.parent)), default_input
    assert sum(1 for line in Path(default_input).read_text().splitlines() if line.strip()) == 12
    out = tmp_path / "out"
    console = run([str(installed / "alm-spark"), "run", "--config", config, "--progress", "on",
                   f"input.manifest_path={_sample()}", "output.path=out"], tmp_path)  # fmt: skip
    assert "ALM PIPELINE COMPLETE" in console
    check_golden(out)
    assert "] processing 1 manifest file(s)" in console
    assert "] publishing" in console
    assert spark_info_lines(console) == []
    assert " WARN " not in console  # a clean run has nothing to warn about


def test_spark_submit_from_the_installation(installed: Path, tmp_path: Path) -> None:
    # The launcher: works without an activated venv.
    job = [f"input.manifest_path={_sample()}"]
    run([str(installed / "alm-spark"), "submit", "--master", "local[2]", "--", *job,
         "output.path=launcher"], tmp_path)  # fmt: skip
    check_golden(tmp_path / "launcher")
    # Plain spark-submit, as the README writes it: the venv's Python named once. The
    # config's master points nowhere: the run works only if spark-submit's wins.
    entry = run([str(installed / "alm-spark"), "paths", "entry"], tmp_path).strip()
    env = user_env({"PYSPARK_PYTHON": str(installed / "python")})
    console = run([str(installed / "spark-submit"), "--master", "local[2]", entry, *job,
                   "spark.master=spark://127.0.0.1:9", "output.windows_table=true",
                   "output.path=plain"], tmp_path, env)  # fmt: skip
    plain = tmp_path / "plain"
    check_golden(plain)
    metrics = json.loads((plain / "_metrics.json").read_text())
    assert pq.read_table(plain / "_windows").num_rows == metrics["filtered_windows"] > 0
    notes = [line for line in console.splitlines() if "was not used" in line]
    assert notes == [
        "alm-spark: spark.master=spark://127.0.0.1:9 from the config was not used: "
        "spark-submit's master local[2] wins"
    ]
    # spark-submit's JVM logs before the job can set the level: only the three lines of
    # SparkContext's version banner get through.
    info = spark_info_lines(console)
    assert [line.split(" INFO ", 1)[1].split(":")[0] for line in info] == ["SparkContext"] * 3


def test_venv_pack_archive_on_the_cluster(
    standalone_cluster: StandaloneCluster, tmp_path: Path
) -> None:
    bare = subprocess.run(["/usr/bin/python3", "-c", "import numpy"], check=False,
                          capture_output=True)  # fmt: skip
    assert bare.returncode != 0, "the workers' own python3 must lack numpy for this test"
    # The README's recipe: a venv with the package (no pyspark: the cluster has Spark).
    env_bin = make_venv(tmp_path / "env", "alm-spark", "venv-pack")
    run([str(env_bin / "venv-pack"), "-p", str(tmp_path / "env"), "-o", "env.tar.gz", "-q"],
        tmp_path)  # fmt: skip
    shutil.rmtree(tmp_path / "env")  # only the archive travels; the driver unpacks it too
    shutil.unpack_archive(tmp_path / "env.tar.gz", tmp_path / "driver-env")
    standalone_cluster.wait_idle()
    entry = REPO / "jobs" / "alm_pipeline.py"
    spark_submit = Path(sys.executable).parent / "spark-submit"
    env = user_env({"SPARK_HOME": str(spark_home())})  # the cluster's Spark
    run([str(spark_submit), "--master", standalone_cluster.url,
         "--archives", "env.tar.gz#env",
         "--conf", "spark.pyspark.python=./env/bin/python",
         "--conf", f"spark.pyspark.driver.python={tmp_path / 'driver-env' / 'bin' / 'python'}",
         str(entry), f"input.manifest_path={_sample()}", "output.path=out"],
        tmp_path, env)  # fmt: skip
    check_golden(tmp_path / "out")


def test_py_files_zip_where_workers_have_the_dependencies(
    standalone_cluster: StandaloneCluster, tmp_path: Path
) -> None:
    deps_bin = make_venv(tmp_path / "deps", *DEPENDENCIES)
    missing = subprocess.run([str(deps_bin / "python"), "-c", "import alm_spark"], check=False,
                             capture_output=True, cwd=tmp_path)  # fmt: skip
    assert missing.returncode != 0  # the package travels only in the zip
    zip_path = tmp_path / "alm_spark.zip"
    run([sys.executable, "-m", "zipfile", "-c", str(zip_path), "alm_spark"], REPO)
    standalone_cluster.wait_idle()
    spark_submit = Path(sys.executable).parent / "spark-submit"
    env = user_env({"SPARK_HOME": str(spark_home()), "PYSPARK_PYTHON": str(deps_bin / "python")})
    run([str(spark_submit), "--master", standalone_cluster.url,
         "--py-files", str(zip_path), str(REPO / "jobs" / "alm_pipeline.py"),
         f"input.manifest_path={_sample()}", "output.path=out"],
        tmp_path, env)  # fmt: skip
    check_golden(tmp_path / "out")
