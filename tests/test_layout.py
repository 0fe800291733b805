"""The package's rooms: which never import pyspark, and report and compare run without it."""

from __future__ import annotations

import ast
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
    "alm_spark.audio.paths",
    "alm_spark.audio.plan",
    "alm_spark.audio.shards",
    "alm_spark.audio.verify",
    "alm_spark.engines.grouped",
    "alm_spark.run.launch",
    "alm_spark.run.verify",  # verify --local: no Spark needed
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


#: Functions longer than this need a reason, said in their docstring ("Long because").
AIM_LINES, MOST_LINES = 60, 80
#: Modules longer than this should be split by concern.
MODULE_LINES = 520


def _functions() -> list[tuple[str, str, int, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                doc = ast.get_docstring(node) or ""
                found.append((str(path.relative_to(PACKAGE)), node.name, lines, doc))
    return found


def test_functions_are_short_enough_to_read() -> None:
    too_long = [
        f"{path}:{name} has {lines} lines"
        for path, name, lines, doc in _functions()
        if lines > MOST_LINES and "Long because" not in doc
    ]
    assert too_long == []


def test_modules_are_split_by_concern() -> None:
    sizes = {
        str(path.relative_to(PACKAGE)): len(path.read_text(encoding="utf-8").splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert {path: lines for path, lines in sizes.items() if lines > MODULE_LINES} == {}


def _imports() -> dict[str, set[str]]:
    """Each package module's imports of other package modules, lazy ones included.

    Imports under ``if TYPE_CHECKING:`` are left out (they never run). Imports of a
    package itself (``from alm_spark import rows`` names the module
    ``alm_spark.rows``) are left out: a package's ``__init__`` runs before any of its
    modules whatever imports them.
    """
    modules: dict[str, Path] = {}
    packages = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            packages.add(".".join(parts[:-1]))
        else:
            modules[".".join(parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {
            id(inner)
            for node in tree.body
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("alm_spark"):
                edges.add(str(node.module))
                edges.update(f"{node.module}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.startswith("alm_spark"))
        graph[name] = {e for e in edges if e in modules and e != name and e not in packages}
    return graph


def test_no_import_circle() -> None:
    graph = _imports()
    state: dict[str, str] = {}
    cycles: list[str] = []

    def visit(node: str, trail: list[str]) -> None:
        if state.get(node) == "done":
            return
        if state.get(node) == "open":
            cycles.append(" -> ".join([*trail[trail.index(node) :], node]))
            return
        state[node] = "open"
        for nxt in sorted(graph[node]):
            visit(nxt, [*trail, node])
        state[node] = "done"

    for start in sorted(graph):
        visit(start, [])
    assert len(graph) > 50
    assert cycles == []
