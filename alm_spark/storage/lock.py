"""One run per output path: a lock file beside the output.

A run holds ``.NAME.lock`` beside ``output.path`` (``NAME`` being the output's last
segment) from before it touches anything there until it has published or failed. The
lock holds the run id, the host, the driver's PID (and, on Linux, that process's
start time, so a reused PID is not mistaken for the run) and a heartbeat the run
refreshes every :data:`HEARTBEAT_SECONDS`. A second run on the same output path
refuses to start while the lock is live, naming the path and the running run.

A lock is stale, and the next run takes it over, when its process is gone (same host)
or its heartbeat is older than :data:`STALE_AFTER_SECONDS` (any host): a run killed
with SIGKILL, or on a machine that died, never blocks the next one for long.

Guarantees: the lock is created with an exclusive create, which is atomic on local
file systems and HDFS, so of two runs started together exactly one proceeds. Object
stores (S3, GCS, ABFS) offer no exclusive create through Hadoop's API: there the lock
catches a second run started while the first is running, but two runs started within
moments of each other can both proceed and spoil each other's files: use
one writer per output path there.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

from alm_spark.errors import OutputError
from alm_spark.storage.fs import FileSystem, join, local_path, parent_and_name

log = logging.getLogger(__name__)

#: How often a running run refreshes its lock's heartbeat.
HEARTBEAT_SECONDS = 10.0
#: A lock whose heartbeat is older than this is stale, whichever host holds it.
STALE_AFTER_SECONDS = 120.0
_READ_ATTEMPTS = 3


def lock_path(output: str) -> str:
    """The lock file of an output path: ``.NAME.lock`` beside it."""
    parent, name = parent_and_name(output)
    return join(parent, f".{name}.lock")


def _process_start(pid: int) -> str | None:
    """When a process started (clock ticks since boot, Linux), None when unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if len(fields) > 19 else None


def _process_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def process_alive(pid: int, started: str | None = None) -> bool:
    """Whether process ``pid`` of this host runs (not a zombie, not a reused PID)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    if _process_state(pid) in ("Z", "X"):  # killed, not yet reaped by its parent
        return False
    now_started = _process_start(pid)
    return started is None or now_started is None or now_started == started


@dataclass(frozen=True)
class LockInfo:
    """What a lock file says about the run holding it."""

    run_id: str
    host: str
    pid: int
    pid_started: str | None
    started: float
    heartbeat: float

    @classmethod
    def for_this_process(cls, run_id: str) -> LockInfo:
        """A lock for a run of this process, now."""
        now = time.time()
        pid = os.getpid()
        return cls(run_id, socket.gethostname(), pid, _process_start(pid), now, now)

    def to_text(self) -> str:
        """The lock file's content."""
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_text(cls, text: str) -> LockInfo:
        """Parse a lock file; raises ValueError (or KeyError, TypeError) when damaged."""
        data: dict[str, Any] = json.loads(text)
        return cls(
            run_id=str(data["run_id"]),
            host=str(data["host"]),
            pid=int(data["pid"]),
            pid_started=None if data.get("pid_started") is None else str(data["pid_started"]),
            started=float(data["started"]),
            heartbeat=float(data["heartbeat"]),
        )

    def stale_reason(self, now: float, stale_after: float) -> str | None:
        """Why the run holding this lock is gone, or None while it may be running."""
        if self.host == socket.gethostname() and not process_alive(self.pid, self.pid_started):
            return f"its process {self.pid} on this host is gone"
        if now - self.heartbeat > stale_after:
            return f"its last heartbeat is {now - self.heartbeat:.0f} s old"
        return None

    def describe(self, now: float) -> str:
        """The running run, for a message."""
        started = datetime.fromtimestamp(self.started, timezone.utc).strftime("%H:%M:%S UTC")
        return (
            f"run {self.run_id} on host {self.host}, PID {self.pid}, started {started}, "
            f"last heartbeat {max(now - self.heartbeat, 0):.0f} s ago"
        )


@dataclass(frozen=True)
class LockPolicy:
    """How a lock beats and when another run's lock counts as stale.

    Attributes:
        heartbeat_seconds: How often the heartbeat is refreshed.
        stale_after: Heartbeat age after which another run's lock is stale.
        wait_for_stale: Wait, rather than refuse at once, while a lock held on another
            host gets no new heartbeat, until it is stale (``output.mode: update``: a
            driver retried on another host meets its own dead run's lock).
    """

    heartbeat_seconds: float = HEARTBEAT_SECONDS
    stale_after: float = STALE_AFTER_SECONDS
    wait_for_stale: bool = False


class OutputLock:
    """Holds an output path's lock for one run (a context manager).

    Args:
        fs: The run's file system.
        output: Qualified output path.
        run_id: The run's id.
        policy: Heartbeat, staleness and waiting.
    """

    def __init__(
        self, fs: FileSystem, output: str, run_id: str, policy: LockPolicy | None = None
    ) -> None:
        """Prepare the lock; :meth:`acquire` takes it."""
        policy = policy or LockPolicy()
        self.fs = fs
        self.output = output
        self.path = lock_path(output)
        self.run_id = run_id
        self.heartbeat_seconds = policy.heartbeat_seconds
        self.stale_after = policy.stale_after
        self.wait_for_stale = policy.wait_for_stale
        self.info = LockInfo.for_this_process(run_id)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._held = False

    def __enter__(self) -> OutputLock:
        """Acquire the lock."""
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Release the lock, whatever happened."""
        self.release()

    def acquire(self) -> None:
        """Take the lock, taking over a stale one.

        Raises:
            OutputError: When another run holds a live lock on the output path.
        """
        for _ in range(5):
            try:
                created = self.fs.create_exclusive(self.path, self.info.to_text())
            except OSError as err:  # e.g. no permission to write beside the output
                raise OutputError(
                    f"output.path: cannot create the lock {self.path}: {err.strerror or err}"
                ) from None
            if created:
                self._held = True
                self._start_heartbeat()
                return
            holder = self._read()
            if holder is None:
                continue  # removed meanwhile, or being written: try again
            now = time.time()
            reason = holder.stale_reason(now, self.stale_after)
            if reason is None and self.wait_for_stale and holder.host != socket.gethostname():
                if self._wait_while_silent(holder):
                    self._take_over(holder, f"no heartbeat for {self.stale_after:.0f} s")
                continue  # taken over or gone: try again
            if reason is None:
                raise OutputError(
                    f"output.path: {self.output} is being written by another run "
                    f"({holder.describe(now)}); wait for it to finish, or delete {self.path} "
                    "if that run is gone"
                )
            self._take_over(holder, reason)
        raise OutputError(
            f"output.path: cannot take the lock {self.path}: other runs keep taking it; "
            "run one job per output path"
        )

    def _wait_while_silent(self, holder: LockInfo) -> bool:
        """Wait while ``holder``'s heartbeat stays where it is, timed by this host's clock.

        Returns:
            True when it stayed silent for ``stale_after`` (the run is gone); False when
            the lock vanished meanwhile.

        Raises:
            OutputError: When its heartbeat moves on: that run is alive.
        """
        log.warning(
            "%s is locked by run %s on host %s, whose last heartbeat is %.0f s old; waiting "
            "up to %.0f s for it to go silent",
            self.output,
            holder.run_id,
            holder.host,
            max(time.time() - holder.heartbeat, 0),
            self.stale_after,
        )
        silent_until = time.monotonic() + self.stale_after  # another host's clock may be off
        while time.monotonic() < silent_until:
            time.sleep(min(self.heartbeat_seconds, max(silent_until - time.monotonic(), 0.05)))
            current = self._read()
            if current is None:
                return False
            if (current.run_id, current.heartbeat) != (holder.run_id, holder.heartbeat):
                raise OutputError(
                    f"output.path: {self.output} is being written by another run "
                    f"({current.describe(time.time())}); wait for it to finish"
                )
        return True

    def _read(self) -> LockInfo | None:
        """The lock's holder; None when the lock vanished.

        Raises:
            OutputError: When the lock stays unreadable (damaged by hand, or a torn write).
        """
        for attempt in range(_READ_ATTEMPTS):
            try:
                return LockInfo.from_text(self.fs.read_text(self.path))
            except (ValueError, KeyError, TypeError):
                time.sleep(0.2 * (attempt + 1))  # being written: read it again
            except Exception:
                if not self.fs.exists(self.path):
                    return None
                time.sleep(0.2 * (attempt + 1))
        raise OutputError(
            f"output.path: {self.output} is locked by {self.path}, which cannot be read; "
            "delete it if no run is writing the output"
        )

    def _take_over(self, holder: LockInfo, reason: str) -> None:
        """Move a stale lock aside (one taker wins the rename) and delete it."""
        aside = f"{self.path}.stale-{self.run_id}"
        try:
            self.fs.rename(self.path, aside)
        except Exception:
            return  # another run took it over first; try again
        try:
            moved = LockInfo.from_text(self.fs.read_text(aside))
        except Exception:
            moved = None
        if moved is not None and moved.run_id != holder.run_id:  # not the lock judged stale
            try:
                self.fs.rename(aside, self.path)
            except Exception:
                log.warning("could not put back the lock %s moved aside", self.path)
            return
        log.warning("taking over the lock of run %s on %s: %s", holder.run_id, self.output, reason)
        self.fs.delete(aside)

    def _start_heartbeat(self) -> None:
        self._thread = threading.Thread(
            target=self._beat, name=f"alm_spark-lock-{self.run_id}", daemon=True
        )
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                self._write(LockInfo(**{**asdict(self.info), "heartbeat": time.time()}))
            except Exception:
                log.debug("could not refresh the heartbeat of %s", self.path, exc_info=True)

    def _write(self, info: LockInfo) -> None:
        """Replace the lock's content; locally by a rename, so readers never see half."""
        local = local_path(self.path)
        if local is None:
            self.fs.write_text(self.path, info.to_text())
            return
        temporary = f"{local}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(info.to_text())
        os.replace(temporary, local)

    def release(self) -> None:
        """Stop the heartbeat and delete the lock, if it is still this run's."""
        if not self._held:
            return
        self._held = False
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.heartbeat_seconds + 5)
        try:
            holder = LockInfo.from_text(self.fs.read_text(self.path))
        except Exception:
            holder = None
        if holder is not None and holder.run_id != self.run_id:
            log.warning("the lock %s was taken over by run %s", self.path, holder.run_id)
            return
        try:
            self.fs.delete(self.path)
        except Exception:
            log.warning("could not remove the lock %s", self.path)
