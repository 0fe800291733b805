"""A run killed at any moment leaves a complete output live by its commit log, never a mix."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alm_spark.storage.commits import CommitLog
from alm_spark.storage.fs import FsspecFileSystem
from alm_spark.testing.compare import compare_paths, iter_jsonl
from alm_spark.testing.datagen import generate, write_jsonl
from alm_spark.testing.layout import output_problems
from alm_spark.testing.processes import spark_child_env

BIN = Path(sys.executable).parent
KILL_AFTER = (2.0, 6.0, 8.5, 10.5)


def _command(source: Path, out: Path) -> list[str]:
    return [str(BIN / "alm-spark"), "run", "-q", f"input.manifest_path={source}",
            f"output.path={out}", "spark.master=local[2]"]  # fmt: skip


def _live(out: Path) -> tuple[int, frozenset[str]] | None:
    """(live generation, its data files) by the commit log; None when there is none.

    Every live file must be on disk, whatever moment the kill came at.
    """
    if not (out / "_commits").exists():
        return None
    state = CommitLog(FsspecFileSystem(), str(out)).read()
    if state.live is None:
        return None
    files = frozenset(state.live.files)
    missing = sorted(f for f in files if not (out / f).exists())
    assert missing == [], f"live files missing at {out}: {missing}"
    return state.live.number, files


def _live_lines(out: Path, files: frozenset[str]) -> list[str]:
    """The entry lines of the live files, sorted (pending or retired files left aside)."""
    entries = (out / f for f in sorted(files) if "/" not in f)
    return sorted(json.dumps(e, sort_keys=True) for path in entries for e in iter_jsonl(path))


@pytest.mark.slow
def test_sigkill_never_leaves_a_mixed_output(run_cli, tmp_path: Path) -> None:
    """A run killed at a random moment leaves the old output or the new one live, whole,
    by the commit log (``_SUCCESS`` absent until the next run); never a mix."""
    source = tmp_path / "in.jsonl"
    write_jsonl(source, generate("production", 12, seed=5))
    out = tmp_path / "out"

    def complete_run() -> None:
        """The same command run to its end, in this process (only the killed runs need
        a process of their own)."""
        run = run_cli(_command(source, out)[1:])
        assert run.code == 0, run.err[-3000:]
        assert output_problems(out) == []

    complete_run()
    reference = tmp_path / "reference"
    shutil.copytree(out, reference)
    expected = _live_lines(out, frozenset(p.name for p in out.glob("part-*")))
    live = _live(out)
    assert live is not None

    seen = set()
    for delay in KILL_AFTER:
        proc = subprocess.Popen(
            _command(source, out), env=spark_child_env(), start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        after = _live(out)
        assert after is not None  # an output, once there, is never lost
        seen.add("old" if after == live else "new")
        assert _live_lines(out, after[1]) == expected  # the same input: the same lines
        if (out / "_SUCCESS").exists():
            assert output_problems(out) == []
        else:
            complete_run()  # clears what the killed run left
        live = _live(out)
    assert "old" in seen  # at least one kill landed mid-run
    complete_run()  # a later run takes over a killed run's lock, and leaves nothing beside
    assert compare_paths(out, reference).equal
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    assert leftovers == []
