"""One run per output path: the second refuses, naming the running run; a dead run's
lock never blocks the next one (issue 9, class 6)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from alm_spark.config import load_config
from alm_spark.errors import OutputError
from alm_spark.run.job import run_pipeline
from alm_spark.storage.fs import FsspecFileSystem
from alm_spark.storage.lock import LockInfo, LockPolicy, OutputLock, lock_path, process_alive
from tests.conftest import TWO_SPEAKER_ENTRY


def _output(tmp_path: Path) -> str:
    return f"file:{tmp_path}/out"


def _write_lock(tmp_path: Path, **fields: object) -> Path:
    now = time.time()
    info = {"run_id": "20260101T000000Z-0badc0de", "host": socket.gethostname(), "pid": 1,
            "pid_started": None, "started": now, "heartbeat": now, **fields}  # fmt: skip
    path = tmp_path / ".out.lock"
    path.write_text(json.dumps(info))
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_lock_sits_beside_the_output(tmp_path: Path) -> None:
    assert lock_path("file:/data/runs/out") == "file:/data/runs/.out.lock"
    assert lock_path("s3a://bucket/alm/run-01/") == "s3a://bucket/alm/.run-01.lock"
    with OutputLock(FsspecFileSystem(), _output(tmp_path), "run-a") as lock:
        held = json.loads((tmp_path / ".out.lock").read_text())
        assert held["run_id"] == "run-a"
        assert (held["host"], held["pid"]) == (socket.gethostname(), os.getpid())
        assert lock.path == f"file:{tmp_path}/.out.lock"
    assert not (tmp_path / ".out.lock").exists()


def test_a_second_run_refuses_naming_the_running_one(tmp_path: Path) -> None:
    fs = FsspecFileSystem()
    with OutputLock(fs, _output(tmp_path), "run-a"):
        with pytest.raises(OutputError) as err:
            OutputLock(fs, _output(tmp_path), "run-b").acquire()
        message = str(err.value)
        assert message.startswith(
            f"output.path: file:{tmp_path}/out is being written by another run (run run-a on "
            f"host {socket.gethostname()}, PID {os.getpid()}, started "
        )
        assert message.endswith(
            f"wait for it to finish, or delete file:{tmp_path}/.out.lock if that run is gone"
        )
        assert json.loads((tmp_path / ".out.lock").read_text())["run_id"] == "run-a"
    with OutputLock(fs, _output(tmp_path), "run-b"):  # free again
        pass


def test_of_runs_started_together_exactly_one_proceeds(tmp_path: Path) -> None:
    fs = FsspecFileSystem()
    start = threading.Barrier(8)
    won: list[str] = []
    refused: list[str] = []

    def attempt(name: str) -> None:
        lock = OutputLock(fs, _output(tmp_path), name)
        start.wait()
        try:
            lock.acquire()
        except OutputError:
            refused.append(name)
        else:
            won.append(name)

    threads = [threading.Thread(target=attempt, args=(f"run-{k}",)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(won), len(refused)) == (1, 7)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"pid": "dead"}, "its process {pid} on this host is gone"),
        ({"pid": "self", "pid_started": "1"}, "its process {pid} on this host is gone"),
        ({"host": "elsewhere", "heartbeat": -1000}, "its last heartbeat is 10"),
    ],
)
def test_a_stale_lock_is_taken_over(tmp_path: Path, caplog, fields: dict, reason: str) -> None:
    pid = {"dead": _dead_pid(), "self": os.getpid()}.get(str(fields.get("pid")), 1)
    if "heartbeat" in fields:  # seconds before now, taken when the test runs
        fields = {**fields, "heartbeat": time.time() + fields["heartbeat"]}
    _write_lock(tmp_path, **{**fields, "pid": pid})
    lock = OutputLock(FsspecFileSystem(), _output(tmp_path), "run-b")
    with caplog.at_level(logging.WARNING, logger="alm_spark"), lock:
        assert json.loads((tmp_path / ".out.lock").read_text())["run_id"] == "run-b"
    expected = f"taking over the lock of run 20260101T000000Z-0badc0de on file:{tmp_path}/out: "
    assert expected + reason.format(pid=pid) in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing left beside the output


def test_a_live_run_elsewhere_blocks_until_its_heartbeat_is_old(tmp_path: Path) -> None:
    _write_lock(tmp_path, host="elsewhere", pid=4242, heartbeat=time.time() - 30)
    held = r"\(run 20260101T000000Z-0badc0de on host elsewhere, PID 4242, started .*, "
    with pytest.raises(OutputError, match=held + r"last heartbeat 30 s ago\)"):
        OutputLock(FsspecFileSystem(), _output(tmp_path), "run-b").acquire()
    with OutputLock(FsspecFileSystem(), _output(tmp_path), "run-c", LockPolicy(stale_after=20)):
        pass


def test_killed_and_unreaped_processes_are_gone(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert process_alive(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while process_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not process_alive(proc.pid)  # a zombie until its parent waits
    finally:
        proc.wait()
    assert process_alive(os.getpid())
    assert not process_alive(os.getpid(), started="1")  # the PID was reused


def test_the_heartbeat_is_refreshed_and_unreadable_locks_are_not_guessed(tmp_path: Path) -> None:
    fs = FsspecFileSystem()
    with OutputLock(fs, _output(tmp_path), "run-a", LockPolicy(heartbeat_seconds=0.05)) as lock:
        first = lock.info.heartbeat
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            beat = LockInfo.from_text((tmp_path / ".out.lock").read_text()).heartbeat
            if beat > first:
                break
            time.sleep(0.05)
        assert beat > first
    (tmp_path / ".out.lock").write_text("{not json")
    with pytest.raises(
        OutputError, match=r"\.out\.lock, which cannot be read; delete it if no run"
    ):
        OutputLock(fs, _output(tmp_path), "run-b").acquire()


def test_cli_second_run_exits_2_and_leaves_the_output(spark, run_cli, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(TWO_SPEAKER_ENTRY) + "\n")
    out = tmp_path / "out"
    run_pipeline(spark, load_config(None, [f"input.manifest_path={source}", f"output.path={out}"]))
    before = (out / "_metrics.json").read_text()
    with OutputLock(FsspecFileSystem(), f"file:{out}", "20260101T000000Z-00000001"):
        # The command in this process (on the shared session): the lock names this PID.
        run = run_cli(["run", "-q", f"input.manifest_path={source}", f"output.path={out}",
                       "spark.master=local[2]"])  # fmt: skip
    assert run.code == 2
    last = run.err.splitlines()[-1]
    assert last.startswith(
        f"alm-spark: error: output.path: file:{out} is being written by another run (run "
        f"20260101T000000Z-00000001 on host {socket.gethostname()}, PID {os.getpid()}, started "
    )
    assert (out / "_metrics.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out"]


def test_a_dead_runs_lock_does_not_block_the_next_run(spark, tmp_path: Path, caplog) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(TWO_SPEAKER_ENTRY) + "\n")
    pid = _dead_pid()  # as a SIGKILLed run leaves it
    _write_lock(tmp_path, pid=pid)
    cfg = load_config(None, [f"input.manifest_path={source}", f"output.path={tmp_path / 'out'}"])
    with caplog.at_level(logging.WARNING, logger="alm_spark"):
        result = run_pipeline(spark, cfg)
    assert result.metrics["entries_written"] == 1
    assert f"its process {pid} on this host is gone" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out"]  # lock released


def test_update_waits_for_a_silent_lock_elsewhere_and_refuses_a_beating_one(
    tmp_path: Path, caplog
) -> None:
    """A driver retried on another host meets its dead run's lock, heartbeat still young:
    with ``wait_for_stale`` (``output.mode: update``) it waits for it to go stale; a lock
    whose heartbeat moves on meanwhile belongs to a live run, and is refused."""
    fs = FsspecFileSystem()
    _write_lock(tmp_path, host="elsewhere", pid=4242, heartbeat=time.time() - 1)
    started = time.monotonic()
    waiting = LockPolicy(heartbeat_seconds=0.2, stale_after=2, wait_for_stale=True)
    with (
        caplog.at_level(logging.WARNING, logger="alm_spark"),
        OutputLock(fs, _output(tmp_path), "run-b", waiting),
    ):
        assert json.loads((tmp_path / ".out.lock").read_text())["run_id"] == "run-b"
    assert 2 <= time.monotonic() - started < 10  # silent for stale_after, by this host's clock
    assert "whose last heartbeat is 1 s old; waiting up to 2 s for it to go silent" in caplog.text
    assert "taking over the lock of run 20260101T000000Z-0badc0de" in caplog.text
    path = _write_lock(tmp_path, host="elsewhere", pid=4242)
    info = json.loads(path.read_text())
    beat = threading.Timer(
        0.5, lambda: path.write_text(json.dumps({**info, "heartbeat": time.time()}))
    )
    beat.start()
    lock = OutputLock(fs, _output(tmp_path), "run-c", LockPolicy(0.2, 3, wait_for_stale=True))
    with pytest.raises(OutputError, match=r"is being written by another run .*host elsewhere"):
        lock.acquire()
    beat.join()
