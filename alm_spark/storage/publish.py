"""The publish protocol: a run's output appears complete or not at all.

Everything is written into a hidden staging directory beside ``output.path``. When
every file is in place the old output is renamed aside, the staging directory is
renamed to ``output.path``, ``_SUCCESS`` is written into it and the old output is
deleted; if the second rename fails the old output is put back. The next run first
puts back an output that an interrupted swap had moved aside and removes staging
directories of interrupted runs (:func:`recover_leftovers`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from datetime import datetime, timezone

from alm_spark.errors import OutputError
from alm_spark.names import METRICS_FILE, PRODUCER, SUCCESS_FILE
from alm_spark.storage.fs import (
    FileSystem,
    is_within,
    join,
    os_path,
    parent_and_name,
    real_location,
)
from alm_spark.storage.io import ManifestSources, escape_glob

log = logging.getLogger(__name__)


def staging_path(output: str, run_id: str) -> str:
    """The hidden staging directory of a run, beside the output."""
    parent, name = parent_and_name(output)
    return join(parent, f".{name}.staging-{run_id}")


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
    """Whether ``path`` holds an output this package wrote (its ``_metrics.json`` says so)."""
    try:
        metrics = json.loads(fs.read_text(join(path, METRICS_FILE)))
    except Exception:  # missing or unreadable (OSError, a Py4J error, bad JSON)
        return False
    return isinstance(metrics, dict) and metrics.get("producer") == PRODUCER


def move_parts(fs: FileSystem, src_dir: str, dst_dir: str) -> int:
    """Move Spark's ``part-*`` files into ``dst_dir`` as ``.jsonl``; returns how many."""
    if not fs.exists(src_dir):
        return 0
    moved = 0
    for info in fs.list_dir(src_dir):
        name = parent_and_name(info.path)[1]
        if info.is_dir or not name.startswith("part-"):
            continue
        target = name.replace(".txt", ".jsonl", 1) if ".txt" in name else name
        fs.rename(info.path, join(dst_dir, target))
        moved += 1
    return moved


def drop_unrecorded(fs: FileSystem, root: str, folders: tuple[str, ...], recorded: set[str]) -> int:
    """Delete data files (``part-*`` and hidden ``.part-*``) that ``recorded`` does not name.

    Args:
        fs: The file system.
        root: The folder the paths in ``recorded`` are relative to.
        folders: The folders of ``root`` to look in (``""``: ``root`` itself).
        recorded: Paths relative to ``root`` of the files to keep.

    Returns:
        How many files were deleted.
    """
    dropped = 0
    for folder in folders:
        where = join(root, folder) if folder else root
        if not fs.exists(where):
            continue
        for info in fs.list_dir(where):
            name = parent_and_name(info.path)[1]
            relative = f"{folder}/{name}" if folder else name
            if info.is_dir or not name.startswith(("part-", ".part-")) or relative in recorded:
                continue
            fs.delete(info.path)
            dropped += 1
    return dropped


def publish(fs: FileSystem, staging: str, output: str, run_id: str) -> None:
    """Swap the finished staging directory in for the output path, then mark it done.

    The old output is renamed aside first; if the new one cannot take its place, the
    old one is put back. ``_SUCCESS`` is written after the swap, so it is the last file
    to appear at ``output.path`` even where a directory rename copies file by file.
    """
    parent, name = parent_and_name(output)
    retired = join(parent, f".{name}.replaced-{run_id}")
    had_output = fs.exists(output)
    if had_output:
        fs.rename(output, retired)
    try:
        fs.rename(staging, output)
    except BaseException:
        if had_output and not fs.exists(output):
            fs.rename(retired, output)
        raise
    fs.write_text(join(output, SUCCESS_FILE), "")
    if had_output:
        fs.delete(retired)


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
