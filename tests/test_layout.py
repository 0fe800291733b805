"""The two layers: the core never imports pyspark; report and compare run without it."""

from __future__ import annotations

import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import alm_spark.core
from alm_spark.core.report import render_report
from tests.conftest import REPO
from tests.test_report import _metrics

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


def test_core_modules_never_import_pyspark(tmp_path: Path) -> None:
    names = sorted(m.name for m in pkgutil.iter_modules(alm_spark.core.__path__))
    assert {"config", "grouped", "names", "render", "windows"} <= set(names)
    imports = "".join(f"import alm_spark.core.{name}\n" for name in names)
    code = imports + "import alm_spark, alm_spark.cli\nassert 'pyspark' not in sys.modules\n"
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


def test_spark_layer_points_one_way() -> None:
    core = Path(alm_spark.core.__file__).parent
    upward = re.compile(r"^\s*(from|import) alm_spark\.(spark|cli)\b", re.MULTILINE)
    offenders = [path.name for path in sorted(core.glob("*.py")) if upward.search(path.read_text())]
    assert offenders == []
