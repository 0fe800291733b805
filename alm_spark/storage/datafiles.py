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

import posixpath
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: Local paths that are object stores underneath (Databricks' FUSE mounts).
OBJECT_STORE_MOUNTS = ("/Volumes/", "/dbfs/")
#: fsspec protocols whose rename within a folder is atomic and copies nothing.
_RENAMING_PROTOCOLS = frozenset({"file", "local", "hdfs", "viewfs"})


def step_prefix(generation: int, step: int) -> str:
    """What every data file name of a commit step starts with."""
    return f"part-{generation:04d}-{step:06d}-"


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

    def name(self, task: int, attempt: int, suffix: str) -> str:
        """``part-GGGG-SSSSSS-<run>-TTTTT-<attempt><suffix>``.

        Args:
            task: The Spark partition.
            attempt: Spark's task attempt id.
            suffix: ``.jsonl``, ``.jsonl.gz``, ``.parquet``, ``.tar``, ...
        """
        return f"{self.prefix}{self.run_id}-{task:05d}-{attempt}{suffix}"


def renames_are_free(protocol: str | tuple[str, ...], path: str) -> bool:
    """Whether a rename within a folder at ``path`` is atomic and copies nothing."""
    protocols = {protocol} if isinstance(protocol, str) else set(protocol)
    if not protocols & _RENAMING_PROTOCOLS:
        return False
    return not path.startswith(OBJECT_STORE_MOUNTS)


def write_once(url: str, chunks: Iterable[bytes]) -> int:
    """Write a data file under its final name so it appears whole; return its bytes.

    Raises:
        FileExistsError: When the name is taken (names are unique per attempt: a
            second writer is a bug, never overwritten).
    """
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(url)
    if fs.exists(path):
        raise FileExistsError(f"{url}: a data file is never overwritten")
    folder, name = posixpath.split(path)
    fs.makedirs(folder, exist_ok=True)
    if not renames_are_free(fs.protocol, path):
        return _write(fs, path, chunks)  # one upload, visible when complete
    temporary = posixpath.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
    written = _write(fs, temporary, chunks)
    fs.mv(temporary, path)
    return written


def _write(fs: Any, path: str, chunks: Iterable[bytes]) -> int:
    """Write ``path``; on failure, nothing stays there.

    A buffered file's ``close`` uploads what it holds, so leaving a ``with`` block on
    an error would publish half a file: it is discarded instead (an object store's
    upload is aborted), or removed where the file system has no discard.
    """
    handle = fs.open(path, "wb")
    try:
        written = _copy(chunks, handle)
    except BaseException:
        try:
            handle.discard()
        except (AttributeError, RuntimeError):  # no discard, or one that needs a commit
            handle.close()
        if fs.exists(path):
            fs.rm(path)
        raise
    handle.close()
    return written


def _copy(chunks: Iterable[bytes], handle: object) -> int:
    written = 0
    for chunk in chunks:
        handle.write(chunk)  # type: ignore[attr-defined]
        written += len(chunk)
    return written
