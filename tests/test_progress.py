"""Progress reporting (no Spark: the status tracker is a stand-in)."""

from __future__ import annotations

import io
import pickle
import time
from pathlib import Path
from types import SimpleNamespace

from alm_spark.report.summary import format_bytes
from alm_spark.run.progress import FileCounter, Progress


class _Tracker:
    def getActiveStageIds(self) -> list[int]:  # noqa: N802 - Spark's name
        return [3]

    def getStageInfo(self, stage_id: int) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(numCompletedTasks=7, numTasks=20)


class _Context:
    master = "yarn"

    def statusTracker(self) -> _Tracker:  # noqa: N802
        return _Tracker()

    def accumulator(self, value: int) -> SimpleNamespace:
        return SimpleNamespace(value=1234, add=lambda n: None)


def _spark() -> SimpleNamespace:
    return SimpleNamespace(sparkContext=_Context())


def test_format_bytes() -> None:
    assert [format_bytes(n) for n in (512, 2048, 5 * 1024**3)] == ["512 B", "2.0 KB", "5.0 GB"]


def test_status_and_steps() -> None:
    stream = io.StringIO()
    progress = Progress(_spark(), enabled=True, stream=stream, interval=0.05, log_interval=0.1)
    progress.input_bytes = 3 * 1024**2
    assert progress.status() == "  7/20 tasks, 1,234 lines done, of 3.0 MB input, 0:00 elapsed"
    progress.step("processing 2 manifest file(s)")
    with progress:
        time.sleep(0.4)
    text = stream.getvalue()
    assert text.startswith("[0:00] processing 2 manifest file(s)\n")
    assert "  7/20 tasks, 1,234 lines done" in text  # not a terminal: plain lines


def test_disabled_is_silent() -> None:
    stream = io.StringIO()
    progress = Progress(_spark(), enabled=False, stream=stream)
    progress.step("x")
    with progress:
        pass
    assert stream.getvalue() == ""
    assert progress.counter is None


def test_without_a_spark_context_only_steps() -> None:
    stream = io.StringIO()
    progress = Progress(SimpleNamespace(), enabled=True, stream=stream)
    assert progress.counter is None
    assert progress.status().startswith("  starting tasks")
    progress.step("publishing")
    assert "publishing" in stream.getvalue()


def test_local_runs_count_through_files(tmp_path) -> None:
    context = _Context()
    context.master = "local[2]"
    progress = Progress(SimpleNamespace(sparkContext=context), enabled=True, stream=io.StringIO())
    counter = progress.counter
    assert isinstance(counter, FileCounter)
    clone = pickle.loads(pickle.dumps(counter))  # what a task receives
    clone.add(5)
    clone.add(7)
    other = pickle.loads(pickle.dumps(counter))
    other.add(30)
    assert counter.value == 42  # read live on the driver
    assert "42 lines done" in progress.status()
    with progress:
        pass
    assert Path(counter.directory).exists()
    progress.close()
    assert not Path(counter.directory).exists()  # removed when the run ends


def test_the_audio_step_shows_clips_and_hours(tmp_path) -> None:
    context = _Context()
    context.master = "local[2]"
    progress = Progress(SimpleNamespace(sparkContext=context), enabled=True, stream=io.StringIO())
    progress.input_bytes = 1024
    clips = pickle.loads(pickle.dumps(progress.clips))
    milliseconds = pickle.loads(pickle.dumps(progress.audio_ms))
    clips.add(12)
    milliseconds.add(9_000_000)  # 2.5 hours
    progress.audio = True
    assert progress.status() == "  7/20 tasks, 12 clips, 2.50 h of audio done, 0:00 elapsed"
    progress.audio = False
    assert progress.status().startswith("  7/20 tasks, 0 lines done, of 1.0 KB input")
    progress.close()


class _ConnectSession:
    """A Spark Connect session's progress interface (no sparkContext)."""

    def __init__(self) -> None:
        self.handlers: list = []

    def registerProgressHandler(self, handler) -> None:  # noqa: N802 - Spark's name
        self.handlers.append(handler)

    def removeProgressHandler(self, handler) -> None:  # noqa: N802
        self.handlers.remove(handler)


def test_progress_over_connect_uses_its_progress_reports() -> None:
    session = _ConnectSession()
    progress = Progress(session, enabled=True, stream=io.StringIO())
    progress.input_bytes = 4096
    (handler,) = session.handlers
    stage = SimpleNamespace(num_tasks=8, num_completed_tasks=3, num_bytes_read=2048, done=False)
    other = SimpleNamespace(num_tasks=2, num_completed_tasks=2, num_bytes_read=0, done=True)
    handler(stages=[stage, other], inflight_tasks=1, operation_id="op", done=False)
    line = progress.status()
    assert line.startswith("  5/10 tasks, 2.0 KB read, of 4.0 KB input, ")
    progress.close()
    assert session.handlers == []
