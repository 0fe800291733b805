"""Data files written once, under their final names, by the task that makes them.

Names start with the generation and the commit step (:func:`step_prefix`), so the files of
one step are found by a prefix listing; the run and the task attempt make them unique,
since Spark's attempt ids restart with every application. A file appears whole or not at
all: on object stores the upload completes or nothing is there; on local disks and HDFS
the bytes go to a hidden temporary name in the same folder, renamed when complete (atomic
and free there). Nothing is renamed or copied after that. Unity Catalog volumes
(``/Volumes``) and ``/dbfs`` look local but are object stores: a rename there is a copy.
"""

from __future__ import annotations

import errno
import posixpath
import re
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from alm_spark.names import SCRATCH_DIR, STEP_OPEN

#: How a full disk while writing a data file is worded (the driver names the output).
NO_SPACE_WRITING = "No space left on device writing the data file"
#: Local paths that are object stores underneath (Databricks' FUSE mounts).
OBJECT_STORE_MOUNTS = ("/Volumes/", "/dbfs/")
#: fsspec protocols whose rename within a folder is atomic and copies nothing.
_RENAMING_PROTOCOLS = frozenset({"file", "local", "hdfs", "viewfs"})


def fsspec_url(url: str) -> str:
    """A Hadoop-style URL or path (``file:/x``, ``s3a://``, ``dbfs:/``) as fsspec opens it."""
    for hadoop in ("s3a://", "s3n://"):
        if url.startswith(hadoop):
            return "s3://" + url[len(hadoop) :]
    if url.startswith("dbfs:/"):
        return "/dbfs/" + url[len("dbfs:/") :].lstrip("/")
    if url.startswith("file:"):  # file:/x, file:///x (fsspec reads both; keep one form)
        rest = url[len("file:") :]
        return "/" + rest.lstrip("/") if not rest.startswith("//localhost/") else rest[11:]
    return url


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
#: Hadoop's other spellings of a store's scheme.
_SAME_STORE = {"s3a": "s3", "s3n": "s3"}


def same_store(scheme: str) -> str:
    """A scheme as the allow-list names it: ``s3a``/``s3n`` are ``s3``."""
    return _SAME_STORE.get(scheme.lower(), scheme.lower())


#: fsspec's other names of one store (beyond Hadoop's), by the name its options are kept under.
_STORE_NAMES = {"gcs": "gs", "abfss": "abfs", "az": "abfs"}


def store_of(scheme: str) -> str:
    """The store a scheme opens, as ``audio.storage_options`` keys it (``gcs`` is ``gs``)."""
    scheme = same_store(scheme)
    return _STORE_NAMES.get(scheme, scheme)


def _written_scheme(path: str) -> tuple[str, int] | None:
    """A path's URL scheme as written, and where the rest starts; None for a plain path.

    ``file:``, ``dbfs:`` and ``data:`` need no ``//``; a Windows drive (``c:/``) or a plain
    name with a colon is a plain path, as fsspec reads it.
    """
    match = _SCHEME.match(path)
    if match is None:
        return None
    scheme = match.group(1)
    spelled_as_url = path[match.end() :].startswith("//") and len(scheme) > 1
    if not (spelled_as_url or scheme.lower() in ("file", "dbfs", "data")):
        return None
    return scheme, match.end()


def lower_scheme(path: str) -> str:
    """``S3://b/K`` as ``s3://b/K``: fsspec knows protocols in lower case only."""
    written = _written_scheme(path)
    if written is None:
        return path
    scheme, end = written
    return scheme.lower() + path[end - 1 :]


def scheme_of(path: str) -> str:
    """A path's URL scheme as ``audio.allowed_schemes`` names it (``file``: a plain path).

    ``s3a``/``s3n`` count as ``s3`` (:func:`_written_scheme` tells a URL from a path).
    """
    written = _written_scheme(path)
    return "file" if written is None else same_store(written[0])


def opened_scheme(url: str) -> str:
    """The scheme fsspec opens ``url`` with (its ``split_protocol`` rules), as above."""
    if "://" in url:
        protocol = url.split("://", 1)[0].lower()
        if len(protocol) > 1:
            return same_store(protocol)
    return "data" if url.startswith("data:") else "file"


def generation_prefix(generation: int) -> str:
    """What every data file name of a generation starts with."""
    return f"part-{generation:04d}-"


def step_prefix(generation: int, step: int) -> str:
    """What every data file name of a commit step starts with."""
    return f"{generation_prefix(generation)}{step:06d}-"


@dataclass(frozen=True)
class StepNames:
    """How a commit step's tasks name their data files.

    Attributes:
        generation: The output generation the files belong to.
        step: The commit step that writes them.
        run_id: The run's id (its start time and random digits).
    """

    generation: int
    step: int
    run_id: str

    @property
    def prefix(self) -> str:
        """What every name of this step starts with."""
        return step_prefix(self.generation, self.step)

    def fence(self, root: str) -> str:
        """The file that says the step is open (``root``: the output, as fsspec opens it).

        The driver writes it before the step's jobs and deletes it with the run's
        scratch folder when it abandons the step; a task commits a data file only while
        it is there, so a late task of a failed job cannot leave one behind.
        """
        return f"{root}/{SCRATCH_DIR}/{self.run_id}/step-{self.step}/{STEP_OPEN}"

    def name(self, task: int, attempt: int, suffix: str) -> str:
        """``part-GGGG-SSSSSS-<run>-TTTTT-<attempt><suffix>``.

        Args:
            task: The Spark partition.
            attempt: Spark's task attempt id.
            suffix: ``.jsonl``, ``.jsonl.gz``, ``.parquet``, ``.tar``, ...
        """
        return f"{self.prefix}{self.run_id}-{task:05d}-{attempt}{suffix}"


def task_attempt() -> tuple[int, int]:
    """This task's partition and attempt id (0, 0 outside Spark, as in unit tests).

    The attempt id (``taskAttemptId``) is unique within an application, retries and
    speculative copies included; names add the run for uniqueness across runs.
    """
    from pyspark import TaskContext

    context = TaskContext.get()
    return (context.partitionId(), context.taskAttemptId()) if context else (0, 0)


def renames_are_free(protocol: str | tuple[str, ...], path: str) -> bool:
    """Whether a rename within a folder at ``path`` is atomic and copies nothing."""
    protocols = {protocol} if isinstance(protocol, str) else set(protocol)
    if not protocols & _RENAMING_PROTOCOLS:
        return False
    return not path.startswith(OBJECT_STORE_MOUNTS)


class DataFile:
    """A data file being written under its final name; it appears on :meth:`commit`.

    Object stores get one upload that becomes visible when complete; local disks and
    HDFS get a hidden temporary name in the same folder, renamed on commit. On
    :meth:`abort` nothing stays.

    Raises:
        FileExistsError: When the name is taken (names are unique per attempt: a
            second writer is a bug, never overwritten).
    """

    def __init__(
        self,
        url: str,
        make_folder: bool = False,
        same_bytes_as: str | None = None,
        fence: str | None = None,
    ) -> None:
        """Open ``url`` for writing.

        Args:
            url: The file's final name, as fsspec opens it.
            make_folder: Create its folder if missing. Tasks never do: the driver makes
                a step's folders, and a task of a failed job that Spark has not stopped
                yet must not bring back a folder the driver removed.
            same_bytes_as: For a name every attempt of a task writes with the same bytes
                (a numbered shard): the step's name prefix, which starts the hidden
                temporary name (so a failed attempt's is found by it); the file may
                then replace one already there.
            fence: A file that must exist when the file is committed (the step's
                :meth:`StepNames.fence`); when it is gone, the file is dropped instead.
        """
        from fsspec.core import url_to_fs

        self.url = url
        self.fs, self.path = url_to_fs(url)
        self.fence = url_to_fs(fence)[1] if fence is not None else None
        if same_bytes_as is None and self.fs.exists(self.path):
            raise FileExistsError(f"{url}: a data file is never overwritten")
        folder, name = posixpath.split(self.path)
        if make_folder:
            self.fs.makedirs(folder, exist_ok=True)
        self.target = self.path
        if renames_are_free(self.fs.protocol, self.path):
            temporary = f".{same_bytes_as or ''}{name}.{secrets.token_hex(4)}.tmp"
            self.target = posixpath.join(folder, temporary)
        self.handle = self.fs.open(self.target, "wb")
        self.size = 0
        self.committed = False

    def write(self, data: bytes) -> None:
        """Append bytes."""
        with self._naming_a_full_disk():
            self.handle.write(data)
        self.size += len(data)

    def commit(self) -> int:
        """Make the file appear whole under its name; returns its bytes.

        Raises:
            OSError: When the step's fence is gone (the driver abandoned the step): the
                file is dropped, not committed.
        """
        if self.fence is not None and not self.fs.exists(self.fence):
            self.abort()
            raise OSError(f"{self.url}: its commit step was abandoned; the file is dropped")
        with self._naming_a_full_disk():
            self.handle.close()
            if self.target != self.path:
                self.fs.mv(self.target, self.path)
        self.committed = True
        return self.size

    def close(self) -> None:
        """:meth:`commit`, for writers that close what they write to."""
        self.commit()

    def abort(self) -> None:
        """Leave nothing behind, a file already committed included (its attempt failed).

        A buffered file's ``close`` uploads what it holds, so an error must not close
        it: it is discarded (an object store's upload is aborted) and marked closed, so
        that nothing uploads it later; where the file system has no discard, it is
        closed and removed.
        """
        if self.committed:
            self.fs.rm(self.path)
            return
        try:
            self.handle.discard()
            self.handle.closed = True
        except (AttributeError, RuntimeError):  # no discard, or one that needs a commit
            self.handle.close()
        if self.fs.exists(self.target):
            self.fs.rm(self.target)

    @contextmanager
    def _naming_a_full_disk(self) -> Iterator[None]:
        """A full disk names this file (a write error names none): the output is full."""
        try:
            yield
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
            raise OSError(errno.ENOSPC, f"{NO_SPACE_WRITING} {self.url}") from err


def write_once(url: str, chunks: Iterable[bytes]) -> int:
    """Write a data file under its final name so it appears whole; return its bytes.

    Raises:
        FileExistsError: When the name is taken.
    """
    file = DataFile(url, make_folder=True)
    try:
        for chunk in chunks:
            file.write(chunk)
    except BaseException:
        file.abort()
        raise
    return file.commit()
