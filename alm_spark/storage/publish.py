"""The output's files: where a run may write, and tidying what runs left.

Data files are written into the output under their final names and made live by
commit records (:mod:`alm_spark.storage.commits`); nothing here copies one. This module
finds a step's or a generation's files by their name prefix (never by listing a whole
output), deletes files the log retired or no committed attempt reported, finishes the
moves a commit recorded, and lists an output written before the commit log existed so
that it can be adopted as its first generation. It also clears what versions before the
log left beside an output: staging directories, and an output moved aside by a swap.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone

from alm_spark.errors import OutputError
from alm_spark.names import METRICS_FILE, PRODUCER
from alm_spark.storage.commits import record_path
from alm_spark.storage.fs import (
    FileInfo,
    FileSystem,
    is_within,
    join,
    os_path,
    parent_and_name,
    real_location,
)
from alm_spark.storage.io import ManifestSources, escape_glob

log = logging.getLogger(__name__)


def new_run_id() -> str:
    """A sortable, unique run id."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def check_output_parent(output: str, fs: FileSystem | None = None) -> None:
    """Refuse an output path below an existing file: nothing can be created there.

    Local paths are checked up to their first existing ancestor; remote ones, through
    ``fs`` when given, at their parent.

    Raises:
        OutputError: Naming ``output.path`` and the file in the way.
    """
    local = os_path(output)
    if local is not None:
        ancestor = os.path.dirname(os.path.abspath(local))
        while not os.path.lexists(ancestor) and ancestor != os.path.dirname(ancestor):
            ancestor = os.path.dirname(ancestor)
        blocked = os.path.lexists(ancestor) and not os.path.isdir(ancestor)
        kind = "a file" if os.path.exists(ancestor) else "a broken symlink"
    elif fs is not None:
        ancestor = parent_and_name(output)[0]
        blocked = bool(ancestor) and fs.exists(ancestor) and not fs.is_dir(ancestor)
        kind = "a file"
    else:
        return
    if blocked:
        raise OutputError(
            f"output.path: {output} cannot be created: {ancestor} is {kind}, not a directory"
        )


def check_output_location(
    fs: FileSystem, output: str, sources: ManifestSources, mode: str = "overwrite"
) -> None:
    """Refuse an output path that would lose data or be read back as input.

    Local locations are compared with symlinks resolved: an output reached through a
    symlink into an input directory is inside it.

    Raises:
        OutputError: Naming ``output.path`` and the reason.
    """
    real_output = real_location(output)
    directories = {*sources.directories, *sources.local_directories}
    for path in (*sources.files, *sources.directories, *sources.local_directories):
        real = real_location(path)
        if is_within(real, real_output):
            raise OutputError(f"output.path: {output} contains the input {real}")
        if path in directories and is_within(real_output, real):
            via = "" if real_output == output else f" (it is {real_output})"
            raise OutputError(
                f"output.path: {output} is inside the input directory {real}{via}; "
                "a later run would read the output as input"
            )
    if not fs.exists(output):
        return
    if mode == "error":
        raise OutputError(f"output.path: {output} exists (output.mode is error)")
    if not fs.is_dir(output):
        raise OutputError(f"output.path: {output} exists and is a file")
    if fs.list_dir(output) and not is_our_output(fs, output):
        raise OutputError(
            f"output.path: {output} exists and is not an alm_spark output "
            f"(no {METRICS_FILE} written by {PRODUCER}); refusing to replace it"
        )


def is_our_output(fs: FileSystem, path: str) -> bool:
    """Whether ``path`` holds an output this package wrote.

    Its ``_metrics.json`` says so, or its commit log exists (a first run killed before
    writing ``_metrics.json`` leaves only that).
    """
    if fs.exists(record_path(path, 1)):
        return True
    try:
        metrics = json.loads(fs.read_text(join(path, METRICS_FILE)))
    except Exception:  # missing or unreadable (OSError, a Py4J error, bad JSON)
        return False
    return isinstance(metrics, dict) and metrics.get("producer") == PRODUCER


def drop_unrecorded(
    fs: FileSystem, root: str, folders: tuple[str, ...], prefix: str, recorded: set[str]
) -> int:
    """Delete the files named ``prefix*`` or ``.prefix*`` that ``recorded`` does not name.

    Args:
        fs: The file system.
        root: The folder the paths in ``recorded`` are relative to.
        folders: The folders of ``root`` to look in (``""``: ``root`` itself).
        prefix: What the names of a step's or a generation's files start with.
        recorded: Paths relative to ``root`` of the files to keep.

    Returns:
        How many files were deleted.
    """
    dropped = 0
    for folder, info in _named(fs, root, folders, prefix):
        name = parent_and_name(info.path)[1]
        if (f"{folder}/{name}" if folder else name) not in recorded:
            fs.delete(info.path)
            dropped += 1
    return dropped


def _named(
    fs: FileSystem, root: str, folders: tuple[str, ...], prefix: str
) -> Iterator[tuple[str, FileInfo]]:
    """The files of ``folders`` named ``prefix*`` or ``.prefix*`` (a prefix listing)."""
    for folder in folders:
        where = join(root, folder) if folder else root
        if not fs.exists(where):
            continue
        for start in (prefix, "." + prefix):
            for info in fs.glob(join(escape_glob(where), escape_glob(start) + "*")):
                if not info.is_dir:
                    yield folder, info


def delete_files(fs: FileSystem, root: str, paths: Iterable[str]) -> int:
    """Delete the files at ``paths`` (relative to ``root``) that exist; how many."""
    deleted = 0
    for path in paths:
        full = join(root, path)
        if fs.exists(full):
            fs.delete(full)
            deleted += 1
    return deleted


def finish_moves(fs: FileSystem, root: str, moves: Iterable[tuple[str, str]]) -> int:
    """Move each ``(from, to)`` (relative to ``root``) whose source is still there; how many.

    A file already at ``to`` is a retired one of the same name (an older generation's
    shard): the commit that recorded the move made it dead.
    """
    moved = 0
    for source, target in moves:
        src, dst = join(root, source), join(root, target)
        if not fs.exists(src):
            continue  # moved before a kill
        if fs.exists(dst):
            fs.delete(dst)
        else:
            fs.mkdirs(parent_and_name(dst)[0])
        fs.rename(src, dst)
        moved += 1
    return moved


def list_data_files(fs: FileSystem, root: str, folders: tuple[str, ...]) -> list[str]:
    """Every file under ``folders`` of ``root``, relative to it (an old output's listing)."""
    found: list[str] = []
    pending = list(folders)
    while pending:
        folder = pending.pop()
        where = join(root, folder) if folder else root
        if not fs.exists(where):
            continue
        for info in fs.list_dir(where):
            name = parent_and_name(info.path)[1]
            relative = f"{folder}/{name}" if folder else name
            if info.is_dir:
                if folder:  # the output's own folders are listed by name, not walked
                    pending.append(relative)
            elif folder or name.startswith("part-"):
                found.append(relative)
    return sorted(found)


def remove_empty_folders(fs: FileSystem, root: str, folders: Iterable[str]) -> None:
    """Remove those of ``folders`` (deepest first) that exist and hold nothing."""
    for folder in sorted(folders, key=lambda f: -f.count("/")):
        where = join(root, folder)
        if fs.exists(where) and fs.is_dir(where) and not fs.list_dir(where):
            fs.delete(where)


def recover_leftovers(fs: FileSystem, output: str) -> None:
    """Clear what an interrupted run left beside the output.

    A retired output (``.NAME.replaced-RUN``) is the last complete output; when a run
    was killed between the two renames of a swap, ``output.path`` is empty and the
    retired output is put back first. Staging directories are never complete (the
    ``_SUCCESS`` marker is only written after a swap), so they are deleted.
    """
    parent, name = parent_and_name(output)
    leftover = re.compile(
        rf"\.{re.escape(name)}\.(staging|replaced)-\d{{8}}T\d{{6}}Z-[0-9a-f]{{8}}"
    )
    found = sorted(
        (info.path for info in fs.glob(join(escape_glob(parent), f".{escape_glob(name)}.*"))),
        key=lambda path: parent_and_name(path)[1].rsplit("-", 2)[-2:],
    )
    found = [path for path in found if leftover.fullmatch(parent_and_name(path)[1])]
    retired = [path for path in found if ".replaced-" in parent_and_name(path)[1]]
    if retired and not fs.exists(output):
        log.warning("restoring %s, the output an interrupted run had moved aside", retired[-1])
        fs.rename(retired[-1], output)
        found.remove(retired[-1])
    for path in found:
        log.warning("removing %s, left by an interrupted run", path)
        fs.delete(path)
