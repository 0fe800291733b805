"""A run killed at any moment leaves the previous complete output or nothing, never a mix."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from alm_spark.run.crash import CRASH_ENV, CRASH_POINTS
from alm_spark.testing.compare import compare_paths, iter_jsonl
from alm_spark.testing.datagen import generate, write_jsonl
from alm_spark.testing.layout import output_problems

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


def _rejected(out: Path) -> list[tuple[str, int, str]]:
    rows = iter_jsonl(out / "_rejected")
    return sorted((Path(r["source"]).name, r["line"], r["error"]) for r in rows)


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _figures(metrics: dict[str, Any]) -> dict[str, Any]:
    """The figures as JSON text, floats rounded to 9 significant digits (summed per step)."""
    kept = {k: v for k, v in metrics.items() if k not in ("run", "config")}
    return json.loads(json.dumps(kept), parse_float=lambda text: float(f"{float(text):.9g}"))


@pytest.mark.slow
def test_a_run_killed_at_each_named_point_is_finished_by_update(run_cli, tmp_path: Path) -> None:
    """SIGKILL at each crash point of a three-step run replacing an older output, then
    ``update``: the output equals a clean run's, with nothing left over; a second update
    changes nothing."""
    source, old_source = tmp_path / "in", tmp_path / "old"
    source.mkdir()
    for n in range(3):
        lines = [*map(json.dumps, generate("production", 4, seed=20 + n)), "{not json"]
        (source / f"m{n}.jsonl").write_text("\n".join(lines) + "\n")
    write_jsonl(old_source / "old.jsonl", generate("production", 2))
    steps = "output.step_files=1"
    reference = tmp_path / "reference"
    clean = run_cli([*_command(source, reference)[1:], steps])
    assert clean.code == 0, clean.err[-3000:]
    expected = _figures(json.loads((reference / "_metrics.json").read_text()))
    for point in CRASH_POINTS:
        out = tmp_path / point
        assert run_cli(_command(old_source, out)[1:]).code == 0
        proc = subprocess.Popen(
            [*_command(source, out), steps], env={**_env(), CRASH_ENV: point},
            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        _, err = proc.communicate(timeout=600)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its JVM and Python workers, if any remain
        assert proc.returncode == -signal.SIGKILL, (point, err[-3000:])
        assert not (out / "_SUCCESS").exists(), point
        resumed = run_cli([*_command(source, out)[1:], steps, "output.mode=update"])
        assert resumed.code == 0, (point, resumed.err[-3000:])
        assert compare_paths(out, reference).equal, point
        assert _rejected(out) == _rejected(reference), point
        assert output_problems(out) == [], point
        assert _figures(json.loads((out / "_metrics.json").read_text())) == expected, point
        before = _files(out)
        assert run_cli([*_command(source, out)[1:], steps, "output.mode=update"]).code == 0
        assert _files(out) == before, point
