"""Reading manifests and writing results; nothing else.

Manifests are read as text (one row per physical line) rather than with Spark's
JSON reader: a line is decoded in Python, exactly, so every value keeps its JSON
type even when a key's type differs from line to line.

Local input directories are listed here rather than by Spark, whose recursive listing
follows symlinks without noticing loops or files it has already seen: each physical
file is read once, by its real path, and what was skipped is logged.
"""

from __future__ import annotations

import contextlib
import glob as pyglob
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial, reduce
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from alm_spark.errors import InputError
from alm_spark.rows import DATA_FILE, KIND_ENTRY, KIND_REJECTED, RowKind
from alm_spark.run.session import scoped_conf
from alm_spark.storage.fs import (
    FileInfo,
    FileSystem,
    has_glob,
    is_within,
    local_path,
    parent_and_name,
)
from alm_spark.storage.outputs import FileNames, write_line_batches
from alm_spark.worker import worker_task

log = logging.getLogger(__name__)

_PARALLEL_LISTING = "spark.sql.sources.parallelPartitionDiscovery.threshold"

#: Files read from a directory (searched recursively); named files are read whatever
#: their name. Spark skips names starting with "_" or "." everywhere.
MANIFEST_NAME_GLOB = "*.{jsonl,json,jsonl.gz,json.gz}"
MANIFEST_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")


@dataclass(frozen=True)
class ManifestSources:
    """Input paths sorted by how Spark must read them.

    Attributes:
        files: Files Spark reads as named: local files by their real path, remote
            files as listed.
        directories: Directories Spark searches recursively: remote ones, and local
            ones by their real path where no symlink or file already read is inside.
        local_directories: Real locations of every local directory listed here.
        skipped: Paths not read, each with the reason: the same file or directory
            reached again (a symlink, a loop, overlapping inputs), or a broken symlink.
        local_bytes: Bytes in the local files.
    """

    files: tuple[str, ...]
    directories: tuple[str, ...]
    local_directories: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    local_bytes: int = 0


def _is_local(path: str) -> bool:
    return "://" not in path and not path.startswith(("file:", "hdfs:", "dbfs:"))


def check_local_inputs(paths: Sequence[str]) -> None:
    """Fail fast, before Spark starts, when a local input path does not exist.

    Remote URIs are checked later, through the cluster's file system.

    Raises:
        InputError: Naming ``input.manifest_path`` and the missing path.
    """
    for path in paths:
        if not _is_local(path):
            continue
        found = os.path.exists(path) or (has_glob(path) and pyglob.glob(path))
        if not found:
            raise InputError(f"input.manifest_path: no such file or directory: {path}")


_GLOB_ESCAPES = str.maketrans({ch: "\\" + ch for ch in "\\*?[]{}"})


def escape_glob(path: str) -> str:
    """Escape glob characters: Spark expands every path it is given as a pattern."""
    return path.translate(_GLOB_ESCAPES)


def _is_hidden(name: str) -> bool:
    return name.startswith(("_", "."))


def _read_from_directory(path: str, directory: str) -> bool:
    """Whether a directory read picks up ``path``: a manifest name, no hidden part."""
    parts = path[len(directory.rstrip("/")) + 1 :].split("/")
    return parts[-1].endswith(MANIFEST_SUFFIXES) and not any(_is_hidden(p) for p in parts)


class _LocalListing:
    """Local inputs by real location: each file once, each directory walked once.

    A directory tree without symlinks, and without anything already read, is handed to
    Spark whole (its recursive listing then finds exactly these files, and is much
    faster than naming thousands of files); other trees' files are named one by one.
    """

    def __init__(self) -> None:
        self.files: dict[str, str] = {}  # real path -> path given to Spark
        self.names: dict[str, str] = {}  # real path -> path it was first reached by
        self.owner: dict[str, int] = {}  # real path -> the tree it was found in
        self.directories: dict[str, str] = {}  # real path -> path it was reached by
        self.trees: list[tuple[str, bool]] = []  # (real top, read by Spark whole)
        self.skipped: list[str] = []
        self.size = 0

    def add_file(self, path: str, tree: int | None = None) -> bool:
        """Add one file; False when it was already read (then it is reported)."""
        real = os.path.realpath(path)
        if real in self.files:
            self.skipped.append(f"{path} (the same file as {self.names[real]})")
            return False
        # Spark skips a file named "_x" or ".x" even when named; read it by its link.
        self.files[real] = path if _is_hidden(os.path.basename(real)) else real
        self.names[real] = path
        if tree is not None:
            self.owner[real] = tree
        with contextlib.suppress(OSError):  # Spark reports what it cannot read
            self.size += os.stat(real).st_size
        return True

    def walk(self, top: str) -> None:
        """Add the manifests under ``top``, following symlinks, each directory once."""
        tree, clean, pending = len(self.trees), True, [top]
        while pending:
            directory = pending.pop()
            real = os.path.realpath(directory)
            if real in self.directories:
                first = self.directories[real]
                self.skipped.append(f"{directory}/ (the same directory as {first}/)")
                clean = False
                continue
            self.directories[real] = directory
            if directory == top:
                self.trees.append((real, True))
            try:
                entries = sorted(os.scandir(directory), key=lambda e: e.name)
            except OSError as err:
                raise InputError(
                    f"input.manifest_path: cannot list {directory}: {err.strerror}"
                ) from None
            subdirectories = []
            for entry in entries:
                if _is_hidden(entry.name):
                    continue
                path = os.path.join(directory, entry.name)
                if _is_directory(entry):
                    clean = clean and not entry.is_symlink()
                    subdirectories.append(path)
                elif not entry.name.endswith(MANIFEST_SUFFIXES):
                    continue
                elif os.path.isfile(path):
                    added = self.add_file(path, tree)
                    clean = clean and added and not entry.is_symlink()
                elif entry.is_symlink():
                    self.skipped.append(f"{path} (a broken symlink)")
                    clean = False
            pending.extend(reversed(subdirectories))
        if tree < len(self.trees):
            self.trees[tree] = (self.trees[tree][0], clean)

    def spark_paths(self) -> tuple[list[str], list[str]]:
        """Directories Spark lists whole and files it is given by name (``file:`` URIs)."""
        whole = {i for i, (_, clean) in enumerate(self.trees) if clean}
        files = [
            "file:" + read_as
            for real, read_as in self.files.items()
            if self.owner.get(real) not in whole
        ]
        return ["file:" + real for real, clean in self.trees if clean], files


def _is_directory(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows symlinks
    except OSError:
        return False


def _log_skipped(skipped: Sequence[str]) -> None:
    if skipped:
        shown = "; ".join(skipped[:10])
        more = f"; and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        log.warning("input: %d path(s) not read again: %s%s", len(skipped), shown, more)


def resolve_manifest_paths(fs: FileSystem, paths: Sequence[str]) -> ManifestSources:
    """Expand globs and sort input paths into files and directories.

    A path that exists is taken literally, glob characters and all. Globs skip
    hidden names (``_``/``.``), as directory reads do. Local directories are listed
    here and every local file is named by its real path, so a file reached twice
    (named and inside a directory, through a symlink, around a symlink loop) is read
    once; remote inputs covered by another input directory are dropped.

    Raises:
        InputError: When a path or glob matches nothing, or a named file is hidden.
    """
    found: list[FileInfo] = []
    for path in paths:
        if fs.exists(path):
            qualified = fs.qualify(path)
            if fs.is_dir(path):
                found.append(FileInfo(qualified, True))
                continue
            if _is_hidden(parent_and_name(qualified)[1]):
                raise InputError(
                    f"input.manifest_path: Spark does not read files whose names start with "
                    f"'_' or '.'; rename {path}"
                )
            found.append(FileInfo(qualified, False))
        elif has_glob(path):
            matches = [m for m in fs.glob(path) if not _is_hidden(parent_and_name(m.path)[1])]
            if not matches:
                raise InputError(f"input.manifest_path: the pattern matches nothing: {path}")
            found.extend(matches)
        else:
            raise InputError(f"input.manifest_path: no such file or directory: {path}")
    local = _LocalListing()
    files: list[str] = []
    directories: list[str] = []
    for info in found:
        where = local_path(info.path)
        if where is None:
            (directories if info.is_dir else files).append(info.path)
        elif info.is_dir:
            local.walk(where)
        else:
            local.add_file(where)
    directories = [
        d for d in dict.fromkeys(directories)
        if not any(o != d and is_within(d, o) for o in directories)
    ]  # fmt: skip
    files = [
        f for f in dict.fromkeys(files)
        if not any(is_within(f, d) and _read_from_directory(f, d) for d in directories)
    ]  # fmt: skip
    _log_skipped(local.skipped)
    local_trees, local_files = local.spark_paths()
    return ManifestSources(
        files=tuple(local_files + files),
        directories=tuple(local_trees + directories),
        local_directories=tuple("file:" + real for real in local.directories),
        skipped=tuple(local.skipped),
        local_bytes=local.size,
    )


def _with_location(df: DataFrame) -> DataFrame:
    return df.select(
        F.col("_metadata.file_path").alias("source"),
        F.col("_metadata.file_block_start").alias("block_start"),
        F.col("value"),
    )


def read_manifest_lines(spark: SparkSession, sources: ManifestSources) -> DataFrame:
    """Read every physical line of the manifests, with where it came from.

    Args:
        spark: The session.
        sources: Resolved input paths.

    Returns:
        ``source, block_start, value`` (:data:`~alm_spark.storage.schemas.MANIFEST_LINES_SCHEMA`).

    Raises:
        InputError: When no manifest file is found.
    """
    frames = []
    local_files = [f for f in sources.files if local_path(f) is not None]
    remote_files = [f for f in sources.files if local_path(f) is None]
    if local_files:
        # Spark would list thousands of named local files with one task per file.
        with scoped_conf(spark, {_PARALLEL_LISTING: str(2**31 - 1)}):
            reader = spark.read.text([escape_glob(f) for f in local_files])
        frames.append(_with_location(reader))
    if remote_files:
        frames.append(_with_location(spark.read.text([escape_glob(f) for f in remote_files])))
    if sources.directories:
        reader = (
            spark.read.option("recursiveFileLookup", "true")
            .option("pathGlobFilter", MANIFEST_NAME_GLOB)
            .text([escape_glob(d) for d in sources.directories])
        )
        frames.append(_with_location(reader))
    lines_df = reduce(DataFrame.unionByName, frames) if frames else None
    if lines_df is None or not lines_df.inputFiles():
        where = ", ".join((*sources.local_directories, *sources.directories))
        raise InputError(
            f"input.manifest_path: no manifest files ({', '.join(MANIFEST_SUFFIXES)}) under {where}"
        )
    return lines_df


def write_scratch_rows(results_df: DataFrame, path: str) -> None:
    """Write the rows the driver reads back, in one job, one folder per kind (``kind=block``).

    The rows are what tasks pass on after writing their data files
    (:func:`~alm_spark.storage.outputs.write_result_batches`): entry rows are left out
    (their figures are observed, their lines are in the output already).
    """
    rows_df = results_df.where(F.col("kind") != KIND_ENTRY).select("kind", "record")
    rows_df.write.mode("overwrite").partitionBy("kind").text(path)


def read_staged(spark: SparkSession, path: str, kind: RowKind) -> DataFrame:
    """Read one kind of scratch row back, as typed columns (``kind``'s fields)."""
    where = escape_glob(f"{path}/kind={kind.kind}")
    return spark.read.schema(kind.spark_schema()).json(where)


def write_lines_in_place(df: DataFrame, where: FileNames, codec: str) -> list[dict[str, Any]]:
    """Write each row as one JSON line into data files (one per task) under final names.

    Args:
        df: The rows.
        where: Where the files go and how they are named.
        codec: ``none``, ``gzip`` or ``zstd``.

    Returns:
        One :data:`~alm_spark.rows.DATA_FILE` dict per file (one small row per task).
    """
    lines_df = df.select(
        F.to_json(F.struct(*df.columns), {"ignoreNullFields": "false"}).alias("value")
    )
    return write_text_in_place(lines_df, where, codec, KIND_REJECTED)


def write_text_in_place(
    lines_df: DataFrame, where: FileNames, codec: str, holds: str
) -> list[dict[str, Any]]:
    """Write each ``value`` (already a line) into data files (one per task), final names.

    Args:
        lines_df: One ``value`` string column.
        where: Where the files go and how they are named.
        codec: ``none``, ``gzip`` or ``zstd``.
        holds: The row kind the files hold (recorded with them).

    Returns:
        One :data:`~alm_spark.rows.DATA_FILE` dict per file (one small row per task).
    """
    write = partial(write_line_batches, where=where, codec=codec, holds=holds)
    files_df = lines_df.mapInArrow(worker_task(write), DATA_FILE.spark_schema())
    return [row.asDict() for row in files_df.collect()]
