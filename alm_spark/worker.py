"""What a Python worker process does once, before the first of the job's tasks it runs.

pyspark's worker costs every task two sweeps that do not depend on the task:

- After each task a reused worker runs ``gc.collect()``, which walks every object the
  process holds, mostly the ~80,000 of the modules a task imports (pyarrow, pandas and
  this package): 20 to 40 ms a task on 2 cores. :func:`gc.freeze` moves what exists
  before the first task (modules, functions, classes: alive until the process exits
  anyway) out of the collector's way.
- Before each task pyspark 3.5 and 4.0 (4.3: only when the task adds a path) call
  :func:`importlib.invalidate_caches`. On Python 3.10 to 3.12 that makes the zip importer
  of every archive on ``sys.path`` re-read the archive's whole directory, in Python, and
  Spark puts ``pyspark.zip`` and py4j's zip there: 20 to 60 ms a task. Python 3.13
  re-reads lazily; here an importer re-reads when its archive changed, which is what the
  call is for.

Profiled (py-spy) on the suite's Spark 3.5 lane, whose tasks are many and small, before
this module: the two took 118 of the Python workers' 164 CPU seconds.
"""

from __future__ import annotations

import functools
import gc
import os
import sys
import zipimport
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")

_ready = False


def ready_worker() -> None:
    """Freeze what the process holds and make zip importers re-read on change; once."""
    global _ready  # noqa: PLW0603 - once per process by design
    if _ready:
        return
    _ready = True
    if sys.version_info < (3, 13):
        _check_zip_archives_on_invalidate()
    gc.freeze()


def worker_task(fn: Callable[[_T], _R]) -> Callable[[_T], _R]:
    """``fn`` (the function handed to ``mapInArrow``) run after :func:`ready_worker`.

    Only the functions Spark runs in its workers are wrapped, so the driver and the
    functions' own tests (which call them directly) never freeze their process.
    """

    def task(batches: _T) -> _R:
        ready_worker()
        return fn(batches)

    return functools.update_wrapper(task, fn)  # Spark's plans show fn's name


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size, status.st_ino


class _ChangeCheckedZipImporter(zipimport.zipimporter):
    """A zip importer whose ``invalidate_caches`` re-reads only a changed archive."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self._stamp = _stamp(self.archive)

    def invalidate_caches(self) -> None:
        stamp = _stamp(self.archive)
        if stamp != self._stamp:
            self._stamp = stamp
            super().invalidate_caches()


def _check_zip_archives_on_invalidate() -> None:
    """Swap each cached zip importer for one that re-reads its archive on change only.

    ``sys.path_importer_cache`` is a cache Python documents as replaceable; building an
    importer reuses the directory its predecessor read.
    """
    for entry, finder in list(sys.path_importer_cache.items()):
        if type(finder) is zipimport.zipimporter:
            try:
                sys.path_importer_cache[entry] = _ChangeCheckedZipImporter(entry)
            except zipimport.ZipImportError:
                continue
