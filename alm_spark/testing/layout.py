"""Check a finished output's files against its commit log (tests and benchmarks use it).

Once ``_SUCCESS`` exists, every data file in the output folder is live by the commit
log and no other file is there: :func:`output_problems` says where that does not hold.
"""

from __future__ import annotations

import os
from pathlib import Path

from alm_spark.names import METRICS_FILE, REPORT_FILE, SUCCESS_FILE
from alm_spark.storage.commits import COMMITS_DIR, live_files
from alm_spark.storage.fs import FsspecFileSystem

#: The output's own files, which are not data files.
OWN = frozenset({SUCCESS_FILE, METRICS_FILE, REPORT_FILE})


def files_on_disk(output: str | Path) -> list[str]:
    """Every file under a local output, relative to it, less the log and the output's own."""
    root = Path(output)
    found = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not (folder == str(root) and d == COMMITS_DIR)]
        for name in names:
            relative = Path(folder, name).relative_to(root).as_posix()
            if relative not in OWN:
                found.append(relative)
    return sorted(found)


def output_problems(output: str | Path) -> list[str]:
    """What is wrong with a finished local output's files; empty when nothing is.

    Checks that ``_SUCCESS`` exists, that every live file by the commit log is there, and
    that no other file is.
    """
    root = Path(output)
    problems = [] if (root / SUCCESS_FILE).exists() else [f"no {SUCCESS_FILE}"]
    live = set(live_files(FsspecFileSystem(), str(root)))
    on_disk = set(files_on_disk(root))
    problems += [f"live but missing: {path}" for path in sorted(live - on_disk)]
    problems += [f"not live: {path}" for path in sorted(on_disk - live)]
    return problems
