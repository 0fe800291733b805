"""What a Python worker does once before its first task (alm_spark.worker).

Each case runs in a child process: :func:`ready_worker` freezes the process that calls it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

_CHILD = """
import gc, importlib, sys, zipfile, zipimport

def write(names):
    with zipfile.ZipFile(archive, "w") as z:
        for name in names:
            z.writestr(f"{name}.py", f"NAME = {name!r}")

archive = sys.argv[1]
write(["first"])
sys.path.insert(0, archive)
import first

reads = []
original = zipimport._read_directory
zipimport._read_directory = lambda path: reads.append(path) or original(path)

from alm_spark.worker import ready_worker, worker_task
def double(batches):
    return [b * 2 for b in batches]

before, tracked = gc.get_freeze_count(), len(gc.get_objects())
task = worker_task(double)
print("task", task.__name__, task([1, 2]), "frozen", before, gc.get_freeze_count() >= tracked)
importer = sys.path_importer_cache[archive]
print("importer", type(importer).__name__)
importlib.invalidate_caches()
print("reads unchanged", len(reads))
write(["first", "second"])
importlib.invalidate_caches()
import second
print("reads changed", len(reads), second.NAME)
ready_worker()
print("same importer", sys.path_importer_cache[archive] is importer)
"""


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="Python 3.13 re-reads zip archives lazily")
def test_a_worker_freezes_once_and_rereads_a_zip_archive_only_when_it_changed(
    tmp_path: Path,
) -> None:
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CHILD), str(tmp_path / "modules.zip")],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.splitlines() == [
        "task double [2, 4] frozen 0 True",
        "importer _ChangeCheckedZipImporter",
        "reads unchanged 0",
        "reads changed 1 second",
        "same importer True",
    ]
