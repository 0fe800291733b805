"""A run killed at any moment leaves the previous complete output or nothing, never a mix."""

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

from alm_spark.testing.compare import compare_paths
from alm_spark.testing.datagen import generate, write_jsonl

BIN = Path(sys.executable).parent
KILL_AFTER = (2.0, 6.0, 8.5, 10.5)


def _env() -> dict[str, str]:
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    for name in ("PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET", "SPARK_ENV_LOADED"):
        env.pop(name, None)
    return env


def _command(source: Path, out: Path) -> list[str]:
    return [str(BIN / "alm-spark"), "run", "-q", f"input.manifest_path={source}",
            f"output.path={out}", "spark.master=local[2]"]  # fmt: skip


def _state(out: Path) -> tuple[str, list[str]] | None:
    """(run id, part files) of a complete output; None when nothing is there."""
    if not out.exists():
        return None
    assert (out / "_SUCCESS").exists(), f"incomplete output at {out}: {sorted(os.listdir(out))}"
    metrics = json.loads((out / "_metrics.json").read_text())
    parts = sorted(p.name for p in out.glob("part-*"))
    assert len(parts) == metrics["run"]["part_files"]
    assert (out / "_report.html").exists()
    assert (out / "_rejected").is_dir()
    return metrics["run"]["run_id"], parts


@pytest.mark.slow
def test_sigkill_never_leaves_a_mixed_output(run_cli, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    write_jsonl(source, generate("production", 12, seed=5))
    out = tmp_path / "out"

    def complete_run() -> None:
        """The same command run to its end, in this process (only the killed runs need
        a process of their own)."""
        run = run_cli(_command(source, out)[1:])
        assert run.code == 0, run.err[-3000:]

    complete_run()
    old = _state(out)
    assert old is not None
    reference = tmp_path / "reference"
    shutil.copytree(out, reference)
    out_state: tuple[str, list[str]] | None = old

    seen = set()
    for delay in KILL_AFTER:
        proc = subprocess.Popen(
            _command(source, out), env=_env(), start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        state = _state(out)
        if state is None:
            seen.add("nothing")
        elif state == out_state:
            seen.add("old")
        else:
            seen.add("new")  # the kill came after publishing: a complete new output
            assert compare_paths(out, reference).equal
        out_state = state
        if state is None:  # start the next attempt from a complete output again
            complete_run()
            out_state = _state(out)
    assert "old" in seen  # at least one kill landed mid-run

    # A later run cleans up whatever the killed runs left beside the output.
    complete_run()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    assert leftovers == []
    assert _state(out) is not None
