"""A failed run in one line: which file or path, and why.

Spark reports a storage or worker failure as a Java exception wrapped several times
(``Py4JJavaError: An error occurred while calling o347.text``), with the useful part
in a cause deep down: the file being read, ``No space left on device``, the last
line of a Python worker's traceback. :func:`describe_failure` finds it, so the
command line prints one line and keeps the traceback for ``--debug``.

Only messages and class names are inspected, so this works for classic sessions
(Py4J), Spark Connect errors and plain Python errors alike.
"""

from __future__ import annotations

import errno
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

from alm_spark.storage.datafiles import NO_SPACE_WRITING

#: Messages of the decompressors (java.util.zip, Hadoop's codecs) on damaged input.
_TRUNCATED = ("unexpected end of input stream", "unexpected end of zlib input stream")
_NOT_GZIP = ("not a gzip file", "not in gzip format")
_CORRUPT = (
    "invalid distance",
    "invalid block type",
    "invalid stored block lengths",
    "invalid code lengths set",
    "invalid literal/length",
    "incorrect header check",
    "incorrect data check",
    "too many length or distance symbols",
    "corrupt",
    "crc",
)
_PYTHON_WORKER = "An exception was thrown from the Python worker"
_READING = re.compile(r"error while reading file (\S+?)\.?(?:\s|$)")
_WRITING = re.compile(r"while writing rows to (\S+?)\.?(?:\s|$)")
_STAGING = re.compile(r"/\.([^/]+)\.staging-\d{8}T\d{6}Z-[0-9a-f]{8}(?:/|$)")
_SCRATCH = re.compile(r"/_scratch/\d{8}T\d{6}Z-[0-9a-f]{8}(?:/|$)")
_NO_SPACE = "no space left on device"
_DENIED = "permission denied"


def _java_chain(throwable: Any) -> Iterator[tuple[str, str]]:
    seen = 0
    while throwable is not None and seen < 20:
        seen += 1
        try:
            name = str(throwable.getClass().getName())
            message = str(throwable.getMessage() or "")
            throwable = throwable.getCause()
        except Exception:  # a broken or closed gateway
            return
        yield name, message


def failure_chain(err: BaseException) -> list[tuple[str, str]]:
    """``(class name, message)`` of an error and of every cause it carries, outermost first.

    Follows Python causes and contexts, and the Java cause chain of Py4J and Spark
    errors where the Java objects are reachable.
    """
    chain: list[tuple[str, str]] = []
    current: BaseException | None = err
    while current is not None and len(chain) < 40:
        chain.append((type(current).__name__, str(current)))
        java = getattr(current, "java_exception", None) or getattr(current, "_origin", None)
        if java is not None:
            chain.extend(_java_chain(java))
        current = current.__cause__ or current.__context__
    return chain


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _python_error(message: str) -> str | None:
    """The last line of a Python worker's traceback (``ValueError: ...``)."""
    text = message.split(_PYTHON_WORKER, 1)[1] if _PYTHON_WORKER in message else message
    text = text.split("JVM stacktrace:", 1)[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("SQLSTATE")]
    if not lines:
        return None
    last = lines[-1]
    return re.sub(r"\s*SQLSTATE: \w+$", "", last)


#: Causes of damaged compressed input, as :func:`describe_failure` words them.
_ENDS_EARLY = "the compressed data ends early (a truncated file)"
_NOT_GZIP_DATA = "not gzip data, although the name ends in .gz"
_CORRUPT_DATA = "corrupt compressed data"
_DAMAGE_CAUSES = (_ENDS_EARLY, _NOT_GZIP_DATA, _CORRUPT_DATA)


def _read_cause(messages: list[str]) -> str:
    """Why a file could not be read, from the innermost messages."""
    for message in reversed(messages):
        lowered = message.lower()
        if any(text in lowered for text in _TRUNCATED):
            return _ENDS_EARLY
        if any(text in lowered for text in _NOT_GZIP):
            return _NOT_GZIP_DATA
        if any(text in lowered for text in _CORRUPT):
            return f"{_CORRUPT_DATA} ({_first_line(message)})"
        if "does not exist" in lowered or "no such file" in lowered:
            return "it no longer exists (removed while the run read it?)"
        if _DENIED in lowered:
            return "permission denied"
    return ""


def _damage(messages: list[str]) -> bool:
    """Whether the innermost read cause is damaged compressed data."""
    return _read_cause(messages).startswith(_DAMAGE_CAUSES)


class DamagedInputError(OSError):
    """A compressed input Spark could not decompress, named after the fact.

    Spark 4 names the file it was reading when a decompressor fails; Spark 3.5 only
    raises the decompressor's error (``EOFException: Unexpected end of input stream``).
    The pipeline then finds the file (:func:`find_damaged_input`) and raises this,
    with Spark's error as the cause, so :func:`describe_failure` names it either way.
    """

    def __init__(self, path: str) -> None:
        """Name the damaged file, in the words Spark 4 uses."""
        super().__init__(f"Encountered error while reading file {path}")
        self.path = path


def names_no_damaged_file(err: BaseException) -> bool:
    """Whether ``err`` is damaged compressed input with no file named (Spark 3.5)."""
    try:
        messages = [message for _, message in failure_chain(err)]
        return _damage(messages) and not _READING.search("\n".join(messages))
    except Exception:  # describing must never hide the failure itself
        return False


def find_damaged_input(
    spark: Any, files: Iterable[str], budget_seconds: float = 300.0
) -> str | None:
    """The first compressed file that Hadoop's codec cannot read to its end.

    Reads each compressed file through the codec Spark's text source uses, in the
    driver's JVM; only after a failed run, only when Spark did not name the file.

    Args:
        spark: A classic session (the JVM is needed).
        files: The run's input files.
        budget_seconds: No further file is started after this long.

    Returns:
        The file's path, or None if none failed (or the budget ran out, or no JVM).
    """
    try:
        jvm = spark.sparkContext._jvm
        conf = spark.sparkContext._jsc.hadoopConfiguration()
        codecs = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(conf)
        sink = jvm.java.io.OutputStream.nullOutputStream()
    except Exception:  # Spark Connect: no JVM here
        return None
    deadline = time.monotonic() + budget_seconds
    for name in sorted(files):
        if time.monotonic() > deadline:
            return None
        path = jvm.org.apache.hadoop.fs.Path(name)
        codec = codecs.getCodec(path)
        if codec is None:
            continue
        try:
            stream = codec.createInputStream(path.getFileSystem(conf).open(path))
            try:
                stream.transferTo(sink)
            finally:
                stream.close()
        except Exception:
            return name
    return None


def wait_for_running_tasks(spark: Any, timeout_seconds: float = 60.0) -> None:
    """Wait until no executor runs a task, so a failed job's tasks stop writing.

    A job fails as soon as one task fails; Spark kills the job's other tasks
    afterwards, and until they stop they can still create their attempt folders in
    the output (Spark 3.5's do, after the job has failed).
    Returns at once under Spark Connect, and after ``timeout_seconds`` at most.
    """
    try:
        tracker = spark.sparkContext._jsc.sc().statusTracker()
    except Exception:  # Spark Connect: the server cleans up its own tasks
        return
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            running = sum(int(info.numRunningTasks()) for info in tracker.getExecutorInfos())
        except Exception:  # the session is going away
            return
        if running == 0:
            return
        time.sleep(0.2)


def _output_of(path: str) -> str:
    """The output path a scratch path belongs to (``/x/out/_scratch/RUN/...`` -> ``/x/out``).

    Staging paths of earlier versions (``/x/.out.staging-RUN/...``) too.
    """
    scratch = _SCRATCH.search(path)
    if scratch:
        return path[: scratch.start()]
    match = _STAGING.search(path)
    return path[: match.start()] + "/" + match.group(1) if match else path


def describe_failure(err: BaseException) -> str:
    """One line for a failed run: the file or path involved, and the cause.

    Args:
        err: What the run raised.

    Returns:
        A message without a stack trace, e.g. ``cannot read file:/d/a.jsonl.gz: the
        compressed data ends early (a truncated file)``.
    """
    try:
        return _describe(err)
    except Exception:  # describing must never hide the failure itself
        return f"run failed: {type(err).__name__}: {_first_line(str(err))}"


class OutputFullError(Exception):
    """The output's disk filled up while tasks wrote into it (they name no path)."""

    def __init__(self, output: str) -> None:
        super().__init__(
            f"no space left on device writing {output} (output.path); nothing was published"
        )


def is_no_space(err: BaseException) -> bool:
    """Whether a failure comes down to a full disk, in the JVM or in a Python worker."""
    lowered = "\n".join(message for _, message in failure_chain(err)).lower()
    return _NO_SPACE in lowered or any(
        isinstance(e, OSError) and e.errno == errno.ENOSPC for e in _python_chain(err)
    )


def fills_a_data_file(err: BaseException) -> bool:
    """Whether a task ran out of space writing a data file into the output.

    Not, say, Spark spilling to its local disks: that is a full disk, not a full output.
    """
    return any(NO_SPACE_WRITING in message for _, message in failure_chain(err))


def _describe(err: BaseException) -> str:
    chain = failure_chain(err)
    messages = [message for _, message in chain]
    everything = "\n".join(messages)
    lowered = everything.lower()
    named = [e for e in _python_chain(err) if isinstance(e, OutputFullError)]
    if named:
        return str(named[0])
    if is_no_space(err):
        written = _WRITING.search(everything)
        if written:
            return (
                f"no space left on device writing {_output_of(written.group(1))} (output.path); "
                "nothing was published"
            )
        return "no space left on device; nothing was published"
    read = _READING.search(everything)
    if read:
        cause = _read_cause(messages) or _root_cause(chain)
        return f"cannot read {read.group(1)}: {cause}"
    for name, message in chain:
        if _PYTHON_WORKER in message or name.endswith("PythonException"):
            last = _python_error(message)
            if last:
                return f"a Python worker failed: {last}"
    if _DENIED in lowered:
        return f"permission denied: {_first_line(_innermost(chain, _DENIED))}"
    return f"run failed: {_root_cause(chain)}"


def _python_chain(err: BaseException) -> Iterator[BaseException]:
    current: BaseException | None = err
    for _ in range(40):
        if current is None:
            return
        yield current
        current = current.__cause__ or current.__context__


def _innermost(chain: list[tuple[str, str]], text: str) -> str:
    return next((m for _, m in reversed(chain) if text in m.lower()), "")


def _root_cause(chain: list[tuple[str, str]]) -> str:
    """The innermost error with a message, as ``Name: first line``."""
    for name, message in reversed(chain):
        line = _first_line(message)
        if line:
            return f"{name.rsplit('.', 1)[-1]}: {line}"
    return chain[0][0] if chain else "unknown error"


#: Driver-side loggers that repeat a failed task's or job's stack trace (in local mode
#: the executors log in the driver's JVM too); the failure itself reaches the caller.
#: Others stay as ``spark.log_level`` says (``Lost executor`` is still reported).
FAILURE_LOGGERS = (
    "org.apache.spark.executor.Executor",  # Exception in task ... (trace)
    "org.apache.spark.scheduler.TaskSetManager",  # Lost task ... (trace); aborting job
    "org.apache.spark.sql.execution.datasources.FileFormatWriter",  # Aborting job (trace)
    "org.apache.spark.util.Utils",  # Aborting task (trace)
    "org.apache.spark.api.python.PythonRunner",  # killing the workers of a failed job
)


def quiet_failure_logs(spark: Any) -> None:
    """Silence the loggers that print failed tasks' stack traces (``--debug`` keeps them).

    ``spark.log_level`` still governs everything else; under Spark Connect, or when the
    JVM is out of reach, nothing changes.
    """
    try:
        jvm = spark.sparkContext._jvm
        off = jvm.org.apache.logging.log4j.Level.OFF
        configurator = jvm.org.apache.logging.log4j.core.config.Configurator
        for name in FAILURE_LOGGERS:
            configurator.setLevel(name, off)
    except Exception:  # Spark Connect (no JVM here), or another logging backend
        return
