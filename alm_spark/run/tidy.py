"""What runs leave behind in an output, cleared: before a run works, and after one fails.

:func:`tidy` runs under the output's lock before anything else: it adopts an output
written before the commit log as its first generation, finishes the moves an older
version recorded, deletes every file named by a generation or step that no record
committed and the numbered shards a killed step noted, the scratch folder, and files a
record retired. :func:`abandon` deletes a failed run's own files.
"""

from __future__ import annotations

import json
import logging
import time

from alm_spark import rows
from alm_spark.names import (
    LOST_WINDOWS_DIR,
    NEMO_MANIFESTS_DIR,
    NUMBERED_INTENT,
    REJECTED_AUDIO_DIR,
    REJECTED_DIR,
    SCRATCH_DIR,
    SHARD_INDEX_DIR,
    SHARDS_DIR,
    SUCCESS_FILE,
    WAITING_DIR,
    WINDOWS_DIR,
)
from alm_spark.run.context import RunContext
from alm_spark.run.failures import wait_for_running_tasks
from alm_spark.storage.commits import Commit, CommitLog, DataFile, LogState
from alm_spark.storage.datafiles import StepNames, generation_prefix, step_prefix
from alm_spark.storage.fs import FileSystem, join
from alm_spark.storage.io import escape_glob
from alm_spark.storage.publish import (
    delete_files,
    drop_unrecorded,
    finish_moves,
    list_data_files,
    remove_empty_folders,
)

log = logging.getLogger(__name__)

#: The folders of data files (``""``: the output). A generation's tasks write files named
#: by its prefix into each, and numbered shards into the two of ``_shards``.
DATA_FOLDERS = (
    "",
    REJECTED_DIR,
    WINDOWS_DIR,
    LOST_WINDOWS_DIR,
    SHARDS_DIR,
    f"{SHARDS_DIR}/{NEMO_MANIFESTS_DIR}",
    f"{SHARDS_DIR}/{WAITING_DIR}",
    SHARD_INDEX_DIR,
    REJECTED_AUDIO_DIR,
)
#: What an old output's files hold, by folder (for adopting it as generation 1).
_KIND_BY_FOLDER = {
    f"{SHARDS_DIR}/{NEMO_MANIFESTS_DIR}": rows.KIND_SHARD_MANIFEST,
    REJECTED_DIR: rows.KIND_REJECTED,
    WINDOWS_DIR: rows.KIND_WINDOW,
    LOST_WINDOWS_DIR: rows.KIND_LOST,
    SHARDS_DIR: rows.KIND_SHARD,
    REJECTED_AUDIO_DIR: rows.KIND_AUDIO_REJECTED,
}
#: After a failure, the generation's files must stay gone this long to count as removed.
_QUIET_SECONDS = 1.0


def tidy(ctx: RunContext, commits: CommitLog) -> LogState:
    """The log's state once what earlier runs left is finished or cleared."""
    fs, output = ctx.fs, ctx.output
    state = commits.read()
    if state.last == 0:
        state = _adopt_old_output(ctx, commits)
    scratch = join(output, SCRATCH_DIR)
    if state.moves and fs.exists(scratch):
        finish_moves(fs, output, state.moves)  # shards an older version recorded as moves
    delete_numbered(fs, output, state, join(escape_glob(scratch), "*", "step-*"))
    fs.delete(scratch)
    delete_unfinished_steps(fs, output, state)
    delete_files(fs, output, dead(state))
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
    paths = list_data_files(
        fs,
        output,
        ("", REJECTED_DIR, WINDOWS_DIR, LOST_WINDOWS_DIR, SHARDS_DIR, REJECTED_AUDIO_DIR),
    )
    if not paths:
        return state
    added = tuple(DataFile(p, _kind_of(p)) for p in paths)
    adopted = Commit(1, 1, f"adopted-by-{ctx.run_id}", opens=True, closes=True, added=added)
    log.info("recording the %d data file(s) of %s as its first generation", len(paths), output)
    return commits.append(state, adopted)


def _kind_of(path: str) -> str:
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    return _KIND_BY_FOLDER.get(folder, _KIND_BY_FOLDER.get(folder.split("/")[0], rows.KIND_ENTRY))


def unfinished_generations(state: LogState) -> range:
    """Generations opened after the live one: their files are never live."""
    live = state.live.number if state.live else 0
    return range(live + 1, state.next_generation)


def delete_unfinished_steps(fs: FileSystem, output: str, state: LogState) -> None:
    """Delete what interrupted runs left.

    That is the files of generations opened after the live one that no record
    committed, and the files of the live generation's step after its last one.
    """
    pending = state.pending
    dropped = 0
    for generation in unfinished_generations(state):
        kept = set(pending.files) if pending and pending.number == generation else set()
        dropped += drop_unrecorded(fs, output, DATA_FOLDERS, generation_prefix(generation), kept)
    if state.live is not None:  # an update's step in flight
        prefix = step_prefix(state.live.number, state.live.last_step + 1)
        dropped += drop_unrecorded(fs, output, DATA_FOLDERS, prefix, set(state.live.files))
    if dropped:
        log.warning("removed %d data file(s) an interrupted run left in %s", dropped, output)


def delete_numbered(fs: FileSystem, output: str, state: LogState, steps: str) -> int:
    """Delete the numbered shards that the scratch folders ``steps`` note and no record has.

    A note that cannot be read was cut short by a kill: the step wrote no shard after it.

    Args:
        fs: The file system.
        output: The output.
        state: The log's state (what its records made live or pending).
        steps: A glob of step scratch folders (a run's, or every run's), escaped.
    """
    recorded = state.recorded_files
    noted: list[str] = []
    for info in fs.glob(join(steps, NUMBERED_INTENT)):
        try:
            noted += json.loads(fs.read_text(info.path))
        except ValueError:
            log.warning("ignoring %s, cut short by a kill before its step wrote", info.path)
    return delete_files(fs, output, [path for path in noted if path not in recorded])


def dead(state: LogState) -> list[str]:
    """Retired files, less those a recorded file of the same name replaced (a shard)."""
    recorded = state.recorded_files
    return [path for path in state.retired if path not in recorded]


def abandon(
    ctx: RunContext, state: LogState, step: StepNames | None, restore: bool, remove: bool
) -> None:
    """Delete the files of a failed ``step`` (named by its prefix) and the run's scratch.

    The step's numbered shards, noted in its scratch folder, go too, unless a record
    of ``state`` has them (an earlier step's).

    A failed job's other tasks are killed after it fails; until they stop they can
    still write (Spark 3.5's do, even after the tracker counts no running task), so the
    files must stay absent for a moment. Then an output the run created goes
    altogether (``remove``), or the old output, still live, gets ``_SUCCESS`` back
    (``restore``).
    """
    fs, output = ctx.fs, ctx.output
    scratch = join(output, SCRATCH_DIR, ctx.run_id)
    wait_for_running_tasks(ctx.spark)
    deadline = time.monotonic() + 30
    quiet_since = None
    quiet = False
    try:
        if step is not None:  # its numbered shards: deleted below while late writers stop
            in_flight = join(escape_glob(scratch), f"step-{step.step}")
            delete_numbered(fs, output, state, in_flight)
        while time.monotonic() < deadline:
            found = fs.exists(scratch)
            fs.delete(scratch)
            if step is not None:
                found = drop_unrecorded(fs, output, DATA_FOLDERS, step.prefix, set()) > 0 or found
            if found:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= _QUIET_SECONDS:
                quiet = True
                break
            time.sleep(0.1)
        remove_empty_folders(fs, output, [SCRATCH_DIR])
        if remove and quiet:
            fs.delete(output)
        elif restore and quiet:  # else a late writer may still add files: no _SUCCESS
            fs.write_text(join(output, SUCCESS_FILE), "")
    except Exception:
        log.warning("could not remove the files of the failed run in %s", output)
