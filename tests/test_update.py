"""output.mode: update — an output brought up to date with its input, step by step.

Every case ends by comparing the updated output with a clean ``overwrite`` run over the
same input files: the same entry lines, the same rejected lines, the same figures (floats
summed over commit steps to 1e-9), and no file that the log does not call live.
"""

from __future__ import annotations

import json
import math
import os
import shlex
from pathlib import Path
from typing import Any

import pytest

from alm_spark.config import load_config
from alm_spark.errors import ConfigError
from alm_spark.run.job import run_pipeline
from alm_spark.testing.compare import compare_paths, iter_jsonl
from alm_spark.testing.datagen import generate
from alm_spark.testing.layout import output_problems
from tests.conftest import write_jsonl

#: Bad lines among good ones: their rejection must survive updates too.
BAD_LINES = ["{not json", '{"audio_filepath": "x.wav", "segments": "no"}']


def _run(spark: Any, source: Path, out: Path, *overrides: str) -> Any:
    cfg = load_config(None, [f"input.manifest_path={source}", f"output.path={out}", *overrides])
    return run_pipeline(spark, cfg)


def _manifest(folder: Path, name: str, seed: int, bad: bool = False) -> Path:
    entries: list[Any] = list(generate("production", 3, seed=seed))
    return write_jsonl(folder / name, [*entries, *(BAD_LINES if bad else [])])


def _rejected(out: Path) -> list[tuple[str, int, str]]:
    rows = iter_jsonl(out / "_rejected")
    return sorted((Path(r["source"]).name, r["line"], r["error"]) for r in rows)


def _figures(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k not in ("run", "config")}


def _close(actual: Any, expected: Any, where: str = "$") -> None:
    """Equal, floats to 1e-9 relative (sums over steps add in another order)."""
    if isinstance(expected, dict):
        assert sorted(actual) == sorted(expected), where
        for key in expected:
            _close(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), where
        for n, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _close(a, e, f"{where}[{n}]")
    elif isinstance(expected, float):
        assert math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-9), where
    else:
        assert actual == expected, where


def _assert_like_a_clean_run(spark: Any, source: Path, out: Path, result: Any, tmp: Path) -> None:
    clean_out = tmp / f"clean-{out.name}"
    clean = _run(spark, source, clean_out)
    assert compare_paths(out, clean_out).equal
    assert _rejected(out) == _rejected(clean_out)
    _close(_figures(result.metrics), _figures(clean.metrics))
    for key in ("input_files", "input_bytes", "part_files"):
        assert result.metrics["run"][key] == clean.metrics["run"][key] or key == "part_files"
    assert output_problems(out) == []
    on_disk = json.loads((out / "_metrics.json").read_text())
    _close(_figures(on_disk), _figures(clean.metrics))


def _snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_added_changed_and_removed_files(spark: Any, tmp_path: Path) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    _manifest(source, "a.jsonl", 1)
    _manifest(source, "b.jsonl", 2, bad=True)
    first = _run(spark, source, out, "output.mode=update")  # no output yet: a first run
    assert first.metrics["run"]["update"]["new"] == 2
    _assert_like_a_clean_run(spark, source, out, first, tmp_path)

    # Nothing new: nothing is written, not even a commit record.
    before = _snapshot(out)
    again = _run(spark, source, out, "output.mode=update")
    assert _snapshot(out) == before
    assert again.metrics == first.metrics

    # A new file is processed alone; the committed two are skipped.
    _manifest(source, "c.jsonl", 3, bad=True)
    added = _run(spark, source, out, "output.mode=update")
    update = added.metrics["run"]["update"]
    assert (update["new"], update["changed"], update["skipped"], update["processed"]) == (
        1, 0, 2, 1,
    )  # fmt: skip
    _assert_like_a_clean_run(spark, source, out, added, tmp_path)

    # A changed file retires its step; its step-mate (a) is processed again with it.
    _manifest(source, "b.jsonl", 4)
    changed = _run(spark, source, out, "output.mode=update")
    update = changed.metrics["run"]["update"]
    assert (update["changed"], update["processed"], update["retired_steps"]) == (1, 2, [1])
    _assert_like_a_clean_run(spark, source, out, changed, tmp_path)

    # A removed file's outputs are kept, and said so.
    gone = source / "c.jsonl"
    kept = gone.read_bytes()
    gone.unlink()
    removed = _run(spark, source, out, "output.mode=update")
    assert removed.metrics == changed.metrics  # nothing to do: nothing written
    gone.write_bytes(kept)
    os.utime(gone, ns=(os.stat(gone).st_mtime_ns,) * 2)
    _assert_like_a_clean_run(spark, source, out, changed, tmp_path)


def test_steps_commit_separately_and_an_update_finishes_a_failed_run(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    for n in range(3):
        _manifest(source, f"m{n}.jsonl", 10 + n, bad=n == 1)
    from alm_spark.run import job

    real_write_text = job._write_text
    calls: list[int] = []

    def fails_in_step_three(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("executor lost")
        return real_write_text(*args, **kwargs)

    monkeypatch.setattr(job, "_write_text", fails_in_step_three)
    with pytest.raises(RuntimeError, match="executor lost"):
        _run(spark, source, out, "output.step_files=1")
    monkeypatch.undo()
    assert not (out / "_SUCCESS").exists()
    records = sorted(p.name for p in (out / "_commits").glob("*.json"))
    assert len(records) == 3  # the generation opened, then two steps committed

    resumed = _run(spark, source, out, "output.mode=update", "output.step_files=1")
    update = resumed.metrics["run"]["update"]
    assert (update["skipped"], update["processed"]) == (2, 1)
    _assert_like_a_clean_run(spark, source, out, resumed, tmp_path)


def test_an_update_keeps_the_recorded_settings(spark: Any, tmp_path: Path) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    _manifest(source, "a.jsonl", 1)
    _run(spark, source, out)
    _manifest(source, "b.jsonl", 2)
    before = _snapshot(out)
    with pytest.raises(ConfigError) as refused:
        _run(spark, source, out, "output.mode=update", "builder.target_window_duration=60")
    assert str(refused.value) == (
        "builder.target_window_duration: the output was written with 120.0, this run has 60 "
        "(output.mode: update keeps an output's settings)"
    )
    assert _snapshot(out) == before
    # Settings that do not change the output may differ.
    result = _run(spark, source, out, "output.mode=update", "spark.engine=dataframe")
    assert result.metrics["run"]["update"]["new"] == 1


def test_the_readme_update_commands(run_cli: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """The "Updating and resuming" commands, run as written, a week apart."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("## Updating and resuming", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [shlex.split(line) for line in block.splitlines() if line.startswith("alm-spark")]
    assert len(commands) == 2
    monkeypatch.chdir(tmp_path)
    _manifest(tmp_path / "manifests", "week1.jsonl", 1)
    first = run_cli(commands[0][1:])
    assert first.code == 0, first.err[-2000:]
    _manifest(tmp_path / "manifests", "week2.jsonl", 2)
    second = run_cli(commands[1][1:])
    assert second.code == 0, second.err[-2000:]
    metrics = json.loads((tmp_path / "windows" / "_metrics.json").read_text())
    assert metrics["run"]["update"] == {
        "new": 1, "changed": 0, "skipped": 1, "processed": 1, "retired_steps": [],
        "unlisted": [], "unlisted_files": 0, "dropped": [],
    }  # fmt: skip
    assert metrics["entries_written"] == 6
    # A setting that changes the output: one line, exit 2, nothing written.
    refused = run_cli([*commands[1][1:], "overlap.overlap_percentage=20"])
    assert refused.code == 2
    assert refused.err.strip().splitlines() == [
        "alm-spark: error: overlap.overlap_percentage: the output was written with 50, "
        "this run has 20 (output.mode: update keeps an output's settings)"
    ]


@pytest.mark.slow  # end to end on the pinned Spark only: the lanes run the Spark layer
def test_checksum_identities_skip_a_touched_file_and_see_a_same_size_change(
    spark: Any, tmp_path: Path
) -> None:
    """``input.identity=checksum``: a file copied again (new time, same bytes) is skipped;
    one whose bytes changed (same size, old time put back) is processed again."""
    import hashlib

    from alm_spark.storage.commits import CommitLog
    from alm_spark.storage.fs import FsspecFileSystem

    source, out = tmp_path / "in", tmp_path / "out"
    touched = _manifest(source, "a.jsonl", 1)
    _manifest(source, "b.jsonl", 2)
    checksums = ("output.mode=update", "input.identity=checksum")
    first = _run(spark, source, out, *checksums)
    live = CommitLog(FsspecFileSystem(), str(out)).read().live
    assert live is not None
    versions = {Path(uri).name: i.version for uri, i in live.inputs.items()}
    expected = "sha256:" + hashlib.sha256(touched.read_bytes()).hexdigest()
    assert versions["a.jsonl"] == expected
    stat = os.stat(touched)
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**12))
    again = _run(spark, source, out, *checksums)
    assert again.metrics == first.metrics  # nothing to do
    data = touched.read_bytes()
    at = data.index(b'"text": "') + len(b'"text": "')
    flipped = data[:at] + data[at : at + 1].swapcase() + data[at + 1 :]
    assert flipped != data
    assert len(flipped) == len(data)
    touched.write_bytes(flipped)
    os.utime(touched, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the old time put back
    changed = _run(spark, source, out, *checksums)
    assert changed.metrics["run"]["update"]["changed"] == 1
    _assert_like_a_clean_run(spark, source, out, changed, tmp_path)


@pytest.mark.slow  # end to end on the pinned Spark only: the lanes run the Spark layer
def test_a_corrupt_new_file_is_rejected_line_by_line_and_the_rest_committed(
    spark: Any, tmp_path: Path
) -> None:
    """A new file of garbage (bytes that are not UTF-8, a line cut short, no JSON at all)
    added with a good one: its lines go to ``_rejected/`` as in any run, the good file's
    entries are committed, and the output equals a clean run's."""
    source, out = tmp_path / "in", tmp_path / "out"
    _manifest(source, "a.jsonl", 1)
    _run(spark, source, out)
    _manifest(source, "b.jsonl", 2)
    good = (source / "b.jsonl").read_bytes().splitlines()[0]
    (source / "c.jsonl").write_bytes(b"\xff\xfe\x00garbage\n" + good[: len(good) // 2] + b"\n@@\n")
    updated = _run(spark, source, out, "output.mode=update")
    update = updated.metrics["run"]["update"]
    assert (update["new"], update["processed"]) == (2, 2)
    assert [(name, line) for name, line, _ in _rejected(out) if name == "c.jsonl"] == [
        ("c.jsonl", 1), ("c.jsonl", 2), ("c.jsonl", 3),
    ]  # fmt: skip
    _assert_like_a_clean_run(spark, source, out, updated, tmp_path)
