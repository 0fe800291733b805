"""Progress of a running job, for a person watching a local run.

Prints the step that is running and, while the main Spark job runs, the tasks and
lines done so far, the input size and the elapsed time. Each task counts the lines it
has processed once per input batch. On a local master the counts go to small files in
a local temporary directory, which the driver reads live; elsewhere they go to a Spark
accumulator, which reaches the driver as tasks finish. Over Spark Connect there is no
SparkContext, status tracker or accumulator: the server's progress reports (tasks and
bytes read per stage, pyspark 4.0+) stand in. On a terminal the status line is
rewritten in place; elsewhere a line is printed every ``log_interval`` seconds.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from alm_spark.report.summary import format_bytes


class FileCounter:
    """Counts lines into a file of its own in a directory the driver reads (local runs).

    Pickled into each task; each task writes its running count after every batch. A
    retried task attempt counts its lines again: the figure is for watching, not totals.
    """

    def __init__(self, directory: str) -> None:
        """Count into ``directory`` (created by the driver)."""
        self.directory = directory
        self.name = ""
        self.total = 0

    def add(self, term: int) -> None:
        """Add processed lines and publish the running count."""
        if not self.name:
            self.name = f"{os.getpid()}-{uuid.uuid4().hex}"
        self.total += term
        target = Path(self.directory, self.name)
        scratch = target.with_suffix(".tmp")
        try:
            scratch.write_text(str(self.total))
            os.replace(scratch, target)
        except OSError:  # progress is best effort; never fail a task over it
            pass

    @property
    def value(self) -> int:
        """The lines counted by all tasks so far (read on the driver)."""
        total = 0
        for path in Path(self.directory).glob("*[!p]"):
            try:
                total += int(path.read_text() or 0)
            except (OSError, ValueError):
                continue
        return total


class ConnectTasks:
    """Tasks done and bytes read, from Spark Connect's progress reports.

    Registered with ``SparkSession.registerProgressHandler``; Connect calls it with the
    stages of the operation that is running.
    """

    def __init__(self) -> None:
        """Start with nothing seen."""
        self.done = self.total = self.bytes_read = 0

    def __call__(self, stages: Any = None, **_: Any) -> None:
        """Take a progress report: the figures of the stages the operation has so far.

        Connect also passes ``inflight_tasks``, ``operation_id`` and ``done``.
        """
        listed = list(stages or [])
        self.total = sum(int(stage.num_tasks) for stage in listed)
        self.done = sum(int(stage.num_completed_tasks) for stage in listed)
        self.bytes_read = sum(int(stage.num_bytes_read) for stage in listed)


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Step messages and a live status line; does nothing when disabled."""

    def __init__(
        self,
        spark: Any,
        *,
        enabled: bool,
        stream: TextIO | None = None,
        interval: float = 1.0,
        log_interval: float = 30.0,
    ) -> None:
        """Set up, without starting anything.

        Args:
            spark: The session (its status tracker and accumulators, when classic).
            enabled: Print anything at all.
            stream: Where to print (standard error by default).
            interval: Seconds between status checks.
            log_interval: Seconds between status lines when not on a terminal.
        """
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.interval = interval
        self.log_interval = log_interval
        self.started = time.time()
        self.input_bytes = 0
        self._context: Any = None
        self._spark = spark
        self._connect: ConnectTasks | None = None
        self.counter: Any = None
        #: The audio step's counters: clips cut, and milliseconds of audio in them.
        self.clips: Any = None
        self.audio_ms: Any = None
        self.audio = False  # the status line shows the audio step's figures
        self._scratch: str | None = None
        if enabled:
            try:
                self._context = spark.sparkContext
                local = str(self._context.master).startswith("local")
            except Exception:  # Spark Connect: no SparkContext; its progress reports
                self._context = None
                if hasattr(spark, "registerProgressHandler"):
                    self._connect = ConnectTasks()
                    spark.registerProgressHandler(self._connect)
            else:
                if local:  # executors share this machine: live counts through files
                    self._scratch = tempfile.mkdtemp(prefix="alm-spark-progress-")
                self.counter, self.clips, self.audio_ms = (
                    self._new_counter(name) for name in ("lines", "clips", "audio_ms")
                )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live = False

    def _new_counter(self, name: str) -> Any:
        if self._scratch is None:
            return self._context.accumulator(0)
        directory = os.path.join(self._scratch, name)
        os.mkdir(directory)
        return FileCounter(directory)

    def step(self, message: str) -> None:
        """Announce a step."""
        if self.enabled:
            self._clear()
            print(f"[{_clock(time.time() - self.started)}] {message}", file=self.stream, flush=True)

    def _tasks(self) -> tuple[int, int]:
        if self._connect is not None:
            return self._connect.done, self._connect.total
        if self._context is None:
            return 0, 0
        tracker = self._context.statusTracker()
        done = total = 0
        for stage_id in tracker.getActiveStageIds():
            info = tracker.getStageInfo(stage_id)
            if info is not None:
                done += info.numCompletedTasks
                total += info.numTasks
        return done, total

    def status(self) -> str:
        """The current status line."""
        done, total = self._tasks()
        parts = [f"{done}/{total} tasks" if total else "starting tasks"]
        if self.audio and self.clips is not None:
            hours = self.audio_ms.value / 3.6e6
            parts.append(f"{self.clips.value:,} clips, {hours:,.2f} h of audio done")
        elif self.counter is not None:
            parts.append(f"{self.counter.value:,} lines done")
        if self._connect is not None and self._connect.bytes_read:
            parts.append(f"{format_bytes(self._connect.bytes_read)} read")
        if self.input_bytes and not self.audio:
            parts.append(f"of {format_bytes(self.input_bytes)} input")
        parts.append(f"{_clock(time.time() - self.started)} elapsed")
        return "  " + ", ".join(parts)

    def _clear(self) -> None:
        if self._live:
            self.stream.write("\r\033[K")
            self._live = False

    def _run(self) -> None:
        tty = self.stream.isatty()
        last_log = time.time()
        while not self._stop.wait(self.interval):
            try:
                line = self.status()
            except Exception:  # the context is shutting down
                return
            if tty:
                self.stream.write("\r\033[K" + line)
                self.stream.flush()
                self._live = True
            elif time.time() - last_log >= self.log_interval:
                print(line, file=self.stream, flush=True)
                last_log = time.time()

    def __enter__(self) -> Progress:
        """Start the status line (while the main Spark job runs)."""
        if self.enabled and (self._context is not None or self._connect is not None):
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="alm-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        """Stop the status line."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._clear()

    def close(self) -> None:
        """Release the local count files (call when the run ends, however it ends)."""
        if self._connect is not None:
            with contextlib.suppress(Exception):  # the session is already closed
                self._spark.removeProgressHandler(self._connect)
            self._connect = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
