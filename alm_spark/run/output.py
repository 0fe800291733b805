"""Everything a run does to its output path, around the work that writes data files.

:func:`committed_output` holds the output's lock (one run per output path), reads the
commit log (:mod:`alm_spark.storage.commits`), finishes or clears what an interrupted run
left, and opens a new generation with a record before any data file is written. The
run's tasks then write data files into the output itself, under names that start with
the generation and the step. When the work is done one record makes them live and
retires the old generation; the retired files are deleted, ``_metrics.json`` and
``_report.html`` rewritten, and ``_SUCCESS`` written last. Nothing is renamed or copied
except audio shards, which are still cut into the run's scratch folder and moved in
after their record (a move the next run finishes if this one is killed).

If the run fails, its generation's files are deleted and the old output, still the
live one by the log, gets its ``_SUCCESS`` back. If it is killed, the next run deletes
them: every file of a generation opened after the live one is a leftover.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from alm_spark import rows
from alm_spark.config.recorded import output_settings
from alm_spark.names import (
    LOST_WINDOWS_DIR,
    NEMO_MANIFESTS_DIR,
    REJECTED_AUDIO_DIR,
    REJECTED_DIR,
    SCRATCH_DIR,
    SHARDS_DIR,
    SUCCESS_FILE,
    WINDOWS_DIR,
)
from alm_spark.run.context import RunContext
from alm_spark.run.failures import wait_for_running_tasks
from alm_spark.run.metrics import write_metrics
from alm_spark.storage.commits import Commit, CommitLog, DataFile, InputFile, LogState
from alm_spark.storage.datafiles import StepNames, generation_prefix
from alm_spark.storage.fs import FileSystem, join
from alm_spark.storage.io import ManifestSources
from alm_spark.storage.lock import OutputLock
from alm_spark.storage.publish import (
    check_output_location,
    delete_files,
    drop_unrecorded,
    finish_moves,
    list_data_files,
    recover_leftovers,
    remove_empty_folders,
)

log = logging.getLogger(__name__)

#: Folders where a generation's tasks write files named by its prefix (``""``: the output).
TASK_FOLDERS = ("", REJECTED_DIR, WINDOWS_DIR, LOST_WINDOWS_DIR)
#: Every folder of data files.
DATA_FOLDERS = (*TASK_FOLDERS, SHARDS_DIR, f"{SHARDS_DIR}/{NEMO_MANIFESTS_DIR}", REJECTED_AUDIO_DIR)
#: What an old output's files hold, by folder (for adopting it as generation 1).
_KIND_BY_FOLDER = {
    REJECTED_DIR: rows.KIND_REJECTED,
    WINDOWS_DIR: rows.KIND_WINDOW,
    LOST_WINDOWS_DIR: rows.KIND_LOST,
    SHARDS_DIR: rows.KIND_SHARD,
    REJECTED_AUDIO_DIR: rows.KIND_AUDIO_REJECTED,
}
#: After a failure, the generation's files must stay gone this long to count as removed.
_QUIET_SECONDS = 1.0


@dataclass
class OutputStep:
    """What one commit step adds to the output: filled by the job, committed here.

    Attributes:
        names: How the step's data files are named.
        added: The data files it makes live.
        moves: Files still to be moved into place after its record (audio shards).
        folders: Folders the step made (kept even when empty).
        inputs: The input files it processed.
        figures: Its figures, recorded for later runs.
        metrics: ``_metrics.json`` for the output, written after the record.
    """

    names: StepNames
    added: list[DataFile] = field(default_factory=list)
    moves: list[tuple[str, str]] = field(default_factory=list)
    folders: set[str] = field(default_factory=set)
    inputs: tuple[InputFile, ...] = ()
    figures: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] | None = None

    def add(self, path: str, kind: str) -> None:
        """A data file a task wrote under its final name (relative to the output)."""
        self.added.append(DataFile(path, kind))

    def move(self, source: str, target: str, kind: str) -> None:
        """A file the record makes live at ``target`` once moved from ``source``."""
        self.moves.append((source, target))
        self.added.append(DataFile(target, kind))


@contextmanager
def committed_output(ctx: RunContext, sources: ManifestSources) -> Iterator[OutputStep]:
    """Lock the output, open a generation and yield its step; commit it when the block ends.

    Sets ``ctx.scratch`` and ``ctx.names``.

    Args:
        ctx: The run.
        sources: The inputs (the output must neither contain one nor lie inside one).

    Raises:
        OutputError: When another run holds the output, or the location is unusable.
        CommitConflict: When another writer committed to the output meanwhile.
    """
    fs, output = ctx.fs, ctx.output
    with OutputLock(fs, output, ctx.run_id):
        recover_leftovers(fs, output)
        check_output_location(fs, output, sources, ctx.config.output.mode)
        commits = CommitLog(fs, output)
        existed = fs.exists(output)
        state = _tidy(ctx, commits)
        had_success = fs.exists(join(output, SUCCESS_FILE))
        generation = state.next_generation
        opening = Commit(
            state.last + 1,
            generation,
            ctx.run_id,
            opens=True,
            settings=output_settings(ctx.config),
            purges=bool(state.retired),  # deleted by _tidy
        )
        unfinished = _unfinished_generations(state)
        state = commits.append(state, opening)
        if had_success:
            fs.delete(join(output, SUCCESS_FILE))
        ctx.scratch = join(output, SCRATCH_DIR, ctx.run_id)
        ctx.names = StepNames(generation, 1, ctx.run_id)
        step = OutputStep(ctx.names)
        try:
            yield step
            closing = Commit(
                state.last + 1,
                generation,
                ctx.run_id,
                closes=True,
                inputs=step.inputs,
                added=tuple(step.added),
                moves=tuple(step.moves),
                figures=step.figures,
            )
            state = commits.append(state, closing)  # raises unless the record is there
        except BaseException:
            _abandon(ctx, had_success, existed)
            raise
        _finish(ctx, commits, state, step, unfinished)


def _tidy(ctx: RunContext, commits: CommitLog) -> LogState:
    """The log's state once what earlier runs left is finished or cleared."""
    fs, output = ctx.fs, ctx.output
    state = commits.read()
    if state.last == 0:
        state = _adopt_old_output(ctx, commits)
    scratch = join(output, SCRATCH_DIR)
    if state.moves and fs.exists(scratch):
        finish_moves(fs, output, state.moves)  # a killed run's shards, already committed
    fs.delete(scratch)
    _delete_unfinished_generations(fs, output, state)
    delete_files(fs, output, _dead(state))
    return state


def _adopt_old_output(ctx: RunContext, commits: CommitLog) -> LogState:
    """Record an output written before the commit log as generation 1 (its files live).

    A run that replaces it then retires its files like any older generation's, so a
    killed run leaves it as it was.
    """
    fs, output = ctx.fs, ctx.output
    state = LogState()
    if not fs.exists(output):
        return state
    paths = list_data_files(fs, output, (*TASK_FOLDERS, SHARDS_DIR, REJECTED_AUDIO_DIR))
    if not paths:
        return state
    added = tuple(DataFile(p, _kind_of(p)) for p in paths)
    adopted = Commit(1, 1, f"adopted-by-{ctx.run_id}", opens=True, closes=True, added=added)
    log.info("recording the %d data file(s) of %s as its first generation", len(paths), output)
    return commits.append(state, adopted)


def _kind_of(path: str) -> str:
    folder = path.split("/", 1)[0] if "/" in path else ""
    return _KIND_BY_FOLDER.get(folder, rows.KIND_ENTRY)


def _unfinished_generations(state: LogState) -> range:
    """Generations opened after the live one: their files are never live."""
    live = state.live.number if state.live else 0
    return range(live + 1, state.next_generation)


def _delete_unfinished_generations(fs: FileSystem, output: str, state: LogState) -> None:
    for generation in _unfinished_generations(state):
        dropped = drop_unrecorded(fs, output, TASK_FOLDERS, generation_prefix(generation), set())
        if dropped:
            log.warning("removed %d data file(s) an interrupted run left in %s", dropped, output)


def _dead(state: LogState) -> list[str]:
    """Retired files, less those a live file of the same name replaced (a shard)."""
    live = state.live_files
    return [path for path in state.retired if path not in live]


def _finish(
    ctx: RunContext, commits: CommitLog, state: LogState, step: OutputStep, unfinished: range
) -> None:
    """After the record: move shards in, write the figures, delete what it retired.

    ``_SUCCESS`` comes last: from then on every data file in the output is live.
    """
    fs, output = ctx.fs, ctx.output
    with ctx.timed("publish"):
        finish_moves(fs, output, state.moves)
    if step.metrics is not None:
        step.metrics["run"]["timings"]["publish"] = round(ctx.timings["publish"], 3)
        step.metrics = write_metrics(ctx, step.metrics)
    fs.delete(join(output, SCRATCH_DIR))
    # Again: a killed run's Python workers are not in its process group (PySpark's
    # daemon starts its own) and may have written for a moment after this run began.
    for generation in unfinished:
        drop_unrecorded(fs, output, TASK_FOLDERS, generation_prefix(generation), set())
    if state.retired:
        deleted = delete_files(fs, output, _dead(state))
        log.info("deleted %d retired data file(s)", deleted)
        live = state.live.number if state.live else 0
        state = commits.append(state, Commit(state.last + 1, live, ctx.run_id, purges=True))
    remove_empty_folders(fs, output, set(DATA_FOLDERS[1:]) - step.folders - _folders(state))
    fs.write_text(join(output, SUCCESS_FILE), "")


def _folders(state: LogState) -> set[str]:
    """The folders holding a live file."""
    return {path.rsplit("/", 1)[0] for path in state.live_files if "/" in path}


def _abandon(ctx: RunContext, had_success: bool, existed: bool) -> None:
    """Delete a failed run's files; the old output, still live, gets ``_SUCCESS`` back.

    A failed job's other tasks are killed after it fails; until they stop they can
    still write (Spark 3.5's do, even after the tracker counts no running task), so the
    files must stay absent for a moment. An output the run created goes altogether.
    """
    fs, output = ctx.fs, ctx.output
    prefix = generation_prefix(ctx.names.generation) if ctx.names else None
    wait_for_running_tasks(ctx.spark)
    deadline = time.monotonic() + 30
    quiet_since = None
    try:
        while time.monotonic() < deadline:
            found = fs.exists(ctx.scratch)
            fs.delete(ctx.scratch)
            if prefix is not None:
                found = drop_unrecorded(fs, output, TASK_FOLDERS, prefix, set()) > 0 or found
            if found:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= _QUIET_SECONDS:
                break
            time.sleep(0.1)
        if not existed:
            fs.delete(output)
        elif had_success:
            fs.write_text(join(output, SUCCESS_FILE), "")
    except Exception:
        log.warning("could not remove the files of the failed run in %s", output)
