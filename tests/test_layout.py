"""The package's rooms: which never import pyspark, and report and compare run without it."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import alm_spark
from alm_spark.report.html import render_report
from tests.conftest import REPO
from tests.test_report import _metrics

PACKAGE = Path(alm_spark.__file__).parent

#: Folders whose every module runs without pyspark, and single modules elsewhere that must.
NO_PYSPARK_FOLDERS = ("algorithm", "report", "testing")
NO_PYSPARK_MODULES = (
    "alm_spark.cli",
    "alm_spark.config",
    "alm_spark.errors",
    "alm_spark.names",
    "alm_spark.audio.cut",
    "alm_spark.audio.shards",
    "alm_spark.engines.grouped",
    "alm_spark.run.launch",
)

# Run in a fresh interpreter in which importing pyspark fails, as on a machine without it.
BLOCK_PYSPARK = """
import sys
class _NoPySpark:
    def find_spec(self, name, path=None, target=None):
        if name == "pyspark" or name.startswith("pyspark."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, _NoPySpark())
"""


def _without_pyspark(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_PYSPARK + code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _pyspark_free_modules() -> list[str]:
    names = list(NO_PYSPARK_MODULES)
    for folder in NO_PYSPARK_FOLDERS:
        found = pkgutil.iter_modules([str(PACKAGE / folder)])
        names += [f"alm_spark.{folder}.{module.name}" for module in found]
    return sorted(names)


def test_algorithm_report_and_audio_cutting_never_import_pyspark() -> None:
    names = _pyspark_free_modules()
    assert {"alm_spark.algorithm.entry", "alm_spark.report.html", "alm_spark.audio.cut"} <= set(
        names
    )
    imports = "".join(f"import {name}\n" for name in names)
    code = imports + "import alm_spark\nassert 'pyspark' not in sys.modules, 'pyspark imported'\n"
    done = _without_pyspark(code, REPO)
    assert done.returncode == 0, done.stderr


def test_report_and_compare_run_without_pyspark(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "_metrics.json").write_text(json.dumps(_metrics()))
    (out / "part-00000.jsonl").write_text('{"a": 1}\n')
    (tmp_path / "expected.jsonl").write_text('{"a": 1.0}\n')
    code = (
        "from alm_spark.cli import main\n"
        f"assert main(['report', {str(out)!r}]) == 0\n"
        f"assert main(['compare', {str(out)!r}, {str(tmp_path / 'expected.jsonl')!r}]) == 0\n"
    )
    done = _without_pyspark(code, REPO)
    assert done.returncode == 0, done.stderr
    assert "EQUAL" in done.stdout
    assert (out / "_report.html").read_text() == render_report(_metrics())
