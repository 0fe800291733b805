"""Everything a run does to its output path, around the work that writes data files.

:func:`committed_output` holds the output's lock (one run per output path), reads the
commit log (:mod:`alm_spark.storage.commits`), finishes or clears what an interrupted run
left, and opens a new generation with a record before any data file is written. The
run's tasks then write data files into the output itself, under names that start with
the generation and the step (numbered audio shards, whose names carry no step, are
noted in the step's scratch folder before they are written). When the work is done one
record makes them live and retires the old generation; the retired files are deleted,
``_metrics.json`` and ``_report.html`` rewritten, and ``_SUCCESS`` written last.
Nothing is renamed or copied.

If the run fails before any of its steps is committed, its files are deleted and the old
output, still the live one by the log, gets its ``_SUCCESS`` back. If it fails later, its
committed steps stay (``update`` goes on from them) and ``_SUCCESS`` stays absent. If it
is killed, the next run deletes what no record committed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from alm_spark.audio.shards import shard_number
from alm_spark.config.recorded import first_difference, output_settings
from alm_spark.errors import ConfigError
from alm_spark.names import SCRATCH_DIR, STEP_OPEN, SUCCESS_FILE
from alm_spark.run.context import RunContext
from alm_spark.run.crash import crash_point
from alm_spark.run.metrics import write_metrics
from alm_spark.run.tidy import (
    DATA_FOLDERS,
    abandon,
    dead,
    tidy,
    unfinished_generations,
)
from alm_spark.storage.commits import (
    Commit,
    CommitLog,
    DataFile,
    Generation,
    InputFile,
    LogState,
    record_path,
)
from alm_spark.storage.datafiles import StepNames, generation_prefix, step_prefix
from alm_spark.storage.fs import FileSystem, join
from alm_spark.storage.io import ManifestSources
from alm_spark.storage.lock import LockPolicy, OutputLock
from alm_spark.storage.publish import (
    check_output_location,
    delete_files,
    drop_unrecorded,
    recover_leftovers,
    remove_empty_folders,
)
from alm_spark.storage.steps import InputPlan, plan_inputs

log = logging.getLogger(__name__)


@dataclass
class OutputStep:
    """What one commit step adds to the output: filled by the job, committed here.

    Attributes:
        names: How the step's data files are named.
        first_shard: The number its first numbered shard takes (after the output's).
        added: The data files it makes live.
        folders: Folders the step made (kept even when empty).
        inputs: The input files it processed.
        figures: Its figures, recorded for later runs.
        retired: Files of earlier steps it retires (equal shards' waiting clips it placed).
    """

    names: StepNames
    first_shard: int = 0
    added: list[DataFile] = field(default_factory=list)
    folders: set[str] = field(default_factory=set)
    inputs: tuple[InputFile, ...] = ()
    figures: dict[str, Any] = field(default_factory=dict)
    retired: list[str] = field(default_factory=list)

    def add(self, path: str, kind: str) -> None:
        """A data file a task wrote under its final name (relative to the output)."""
        self.added.append(DataFile(path, kind))


@contextmanager
def committed_output(ctx: RunContext, sources: ManifestSources) -> Iterator[OutputCommits]:
    """Lock the output, tidy it and yield its commits; finish the output when the block ends.

    The job plans the inputs (:meth:`OutputCommits.plan`), begins, and runs each commit
    step in :meth:`OutputCommits.step`. A run that never began (an ``update`` with
    nothing to do) changes nothing.

    Args:
        ctx: The run.
        sources: The inputs (the output must neither contain one nor lie inside one).

    Raises:
        OutputError: When another run holds the output, or the location is unusable.
        ConfigError: ``update`` with settings that differ from the output's.
        CommitConflict: When another writer committed to the output meanwhile.
    """
    fs, output = ctx.fs, ctx.output
    waits = ctx.config.output.mode == "update"  # a retried driver meets its dead run's lock
    with OutputLock(fs, output, ctx.run_id, LockPolicy(wait_for_stale=waits)):
        recover_leftovers(fs, output)
        mode = ctx.config.output.mode
        if mode == "error" and _only_unfinished(fs, output):
            mode = "overwrite"  # what a killed first run left is no output: tidy it
        check_output_location(fs, output, sources, mode)
        existed = fs.exists(output)
        commits = CommitLog(fs, output)
        _resumed_generation(ctx, commits.read())  # a refusal changes nothing
        out = OutputCommits(ctx, commits, tidy(ctx, commits), existed)
        try:
            yield out
        except BaseException:
            out.abandon()
            raise
        if out.begun:
            out.finish()


class OutputCommits:
    """One run's commits to its output: the generation its steps go into, and the records.

    ``overwrite`` and ``error`` open a new generation; its last step's record closes it
    and retires the old one. ``update`` adds steps to the generation of an interrupted
    run (and closes it), or else to the live one, under the settings it recorded.

    Attributes:
        ctx: The run.
        state: The log's state as of the newest record.
        generation: The number of the generation this run's steps go into.
        metrics: ``_metrics.json`` for the whole output, set by the job before the end.
        begun: Whether the run has begun changing the output.
    """

    def __init__(self, ctx: RunContext, commits: CommitLog, state: LogState, existed: bool):
        self.ctx, self._commits, self.state, self._existed = ctx, commits, state, existed
        self._had_success = ctx.fs.exists(join(ctx.output, SUCCESS_FILE))
        self._unfinished = unfinished_generations(state)
        # The step a killed run (same log as this one) had in flight: cleaned again last.
        self._first_step = 1
        self._resumed = _resumed_generation(ctx, state)
        if self._resumed is not None:
            self.generation = self._resumed.number
            self._first_step = self._resumed.last_step + 1
        else:
            self.generation = state.next_generation
        self._committed_steps = 0
        self._in_flight: StepNames | None = None
        self.made_folders: set[str] = set()
        self.metrics: dict[str, Any] | None = None
        self.begun = False

    @property
    def current(self) -> Generation | None:
        """The state of this run's generation (None before it has a record)."""
        for generation in (self.state.pending, self.state.live):
            if generation is not None and generation.number == self.generation:
                return generation
        return None

    @property
    def closes(self) -> bool:
        """Whether this run's last step closes its generation (it is not live yet)."""
        live = self.state.live
        return live is None or live.number != self.generation

    def plan(self, listed: Sequence[InputFile]) -> InputPlan:
        """What to do with the listed inputs: all of them, or (``update``) what changed.

        With equal shards a change retires every step (a step's clips fill the next
        one's shards). Retiring the live output's steps one record at a time would leave
        a killed update's output short, so such an update writes a new generation, as
        ``overwrite`` does, under the recorded settings: the old one stays live until
        the new one closes.
        """
        audio = self.ctx.config.audio
        linked = audio.enabled and audio.equal_shards
        plan = plan_inputs(self._resumed, listed, linked=linked)
        if linked and plan.retire_steps and not self.closes:
            self.ctx.step("a changed input with equal shards: the output is written anew")
            self._resumed, self._first_step = None, 1
            self.generation = self.state.next_generation
            plan = replace(plan, retire_steps=(), retire_files=())
        return plan

    def has_work(self, plan: InputPlan) -> bool:
        """Whether the run must change the output (an ``update`` may have nothing to do)."""
        if self._resumed is None or plan.process or plan.retire_steps:
            return True
        return self.closes or not self._had_success  # an open generation, or a killed run

    def begin(self) -> None:
        """Remove ``_SUCCESS``; open a new generation with a record unless resuming one."""
        fs, output = self.ctx.fs, self.ctx.output
        if self._resumed is None:
            opening = Commit(
                self.state.last + 1,
                self.generation,
                self.ctx.run_id,
                opens=True,
                settings=output_settings(self.ctx.config),
                purges=bool(self.state.retired),  # deleted by _tidy
            )
            self.state = self._commits.append(self.state, opening)
        if self._had_success:
            fs.delete(join(output, SUCCESS_FILE))
        self.begun = True

    @contextmanager
    def step(
        self, inputs: Sequence[InputFile], last: bool, plan: InputPlan | None = None
    ) -> Iterator[OutputStep]:
        """Run one commit step: yield it to be filled, then record it.

        Args:
            inputs: The input files it processes.
            last: Whether it is the run's last step (its record closes the generation).
            plan: The run's plan, on its first step: the steps it retires go with it.
        """
        current = self.current
        number = (current.last_step if current else 0) + 1
        self.ctx.names = StepNames(self.generation, number, self.ctx.run_id)
        self.ctx.scratch = join(self.ctx.output, SCRATCH_DIR, self.ctx.run_id, f"step-{number}")
        step = OutputStep(self.ctx.names, _next_shard_number(self.state), inputs=tuple(inputs))
        # The step's fence: tasks commit data files only while it is there.
        self.ctx.fs.mkdirs(self.ctx.scratch)
        self.ctx.fs.write_text(join(self.ctx.scratch, STEP_OPEN), "")
        self._in_flight = self.ctx.names
        yield step
        crash_point("before_record")
        record = Commit(
            self.state.last + 1,
            self.generation,
            self.ctx.run_id,
            step=number,
            closes=last and self.closes,
            inputs=step.inputs,
            added=tuple(step.added),
            retired=(*(plan.retire_files if plan else ()), *step.retired),
            retired_steps=plan.retire_steps if plan else (),
            figures=step.figures,
        )
        self.state = self._commits.append(self.state, record)  # raises unless it is there
        self._in_flight = None
        self._committed_steps += 1
        self.made_folders |= step.folders
        if not last:
            crash_point("between_records")

    def close(self) -> None:
        """Close the generation with a record of no step (nothing was left to process)."""
        if self.closes:
            record = Commit(self.state.last + 1, self.generation, self.ctx.run_id, closes=True)
            self.state = self._commits.append(self.state, record)

    def finish(self) -> None:
        """After the last record: moves, figures, deletions, ``_SUCCESS`` last."""
        _finish(self, self._unfinished, self._first_step)
        if self.state.retired:  # _finish deleted them
            live = self.state.live.number if self.state.live else 0
            purge = Commit(self.state.last + 1, live, self.ctx.run_id, purges=True)
            self.state = self._commits.append(self.state, purge)
        _tidy_folders(self)
        self.ctx.fs.write_text(join(self.ctx.output, SUCCESS_FILE), "")

    def abandon(self) -> None:
        """A failure: delete the step in flight's files; the output as the log has it.

        When the log holds a record this run does not know of (its own record landed
        and then the call failed, or another writer's), nothing is touched: the next
        run tidies by the log, with the notes of numbered shards in the scratch folder.
        """
        if not self.begun:
            return
        try:
            unknown = self._commits.read().last != self.state.last
        except Exception:  # the log cannot be read now: assume the worst
            unknown = True
        if unknown:
            log.warning("the commit log of %s moved on; the next run tidies it", self.ctx.output)
            return
        nothing_committed = self._committed_steps == 0
        abandon(
            self.ctx,
            self.state,
            self._in_flight,
            restore=self._had_success and nothing_committed,
            remove=not self._existed and nothing_committed,
        )


def _next_shard_number(state: LogState) -> int:
    """One past the highest shard number any recorded file has (0 for none).

    Numbers go on across steps and generations: a new generation's shards never take
    the names of the live one's, which stay readable until its record retires them.
    """
    paths = [*state.recorded_files, *state.retired]
    numbers = [n for n in map(shard_number, paths) if n is not None]
    return max(numbers) + 1 if numbers else 0


def _resumed_generation(ctx: RunContext, state: LogState) -> Generation | None:
    """``update``: the generation to add to (an open one, else the live one), checked.

    None for other modes, or when the output has no generation yet.

    Raises:
        ConfigError: When a setting that changes the output differs from the recorded one.
    """
    if ctx.config.output.mode != "update":
        return None
    generation = state.pending or state.live
    if generation is None:
        return None
    if generation.settings is None:
        raise ConfigError(
            f"output.mode: update needs the settings an output records; {ctx.output} was "
            "written by an older alm_spark: run once with output.mode=overwrite"
        )
    if generation.files and (generation.last_step == 0 or 0 in generation.figures):
        raise ConfigError(
            f"output.mode: update needs an output written in commit steps; {ctx.output} was "
            "written by an older alm_spark: run once with output.mode=overwrite"
        )
    if ctx.config.audio.enabled and any("audio" not in f for f in generation.figures.values()):
        raise ConfigError(
            f"output.mode: update needs an audio output whose steps recorded their audio; "
            f"{ctx.output} was written by an older alm_spark: run once with "
            "output.mode=overwrite"
        )
    current = json.loads(json.dumps(output_settings(ctx.config)))
    difference = first_difference(generation.settings, current)
    if difference is not None:
        raise ConfigError(f"{difference} (output.mode: update keeps an output's settings)")
    return generation


def _only_unfinished(fs: FileSystem, output: str) -> bool:
    """Whether ``output`` holds only what runs that never finished left (no live files)."""
    if not fs.exists(record_path(output, 1)):
        return False
    return CommitLog(fs, output).read().live is None


def _finish(out: OutputCommits, unfinished: range, first_step: int) -> None:
    """After the last record: move shards in, write the figures, delete what it retired.

    Args:
        out: The run's commits.
        unfinished: Generations opened after the live one when the run began.
        first_step: The run's first step number, which a killed run had in flight too.
    """
    ctx, state = out.ctx, out.state
    fs, output = ctx.fs, ctx.output
    with ctx.timed("publish"):  # nothing is moved: only the run's scratch goes
        fs.delete(join(output, SCRATCH_DIR))
    if out.metrics is not None:
        out.metrics["run"]["timings"]["publish"] = round(ctx.timings["publish"], 3)
        out.metrics = write_metrics(ctx, out.metrics)
    # Again: a killed run's Python workers are not in its process group (PySpark's
    # daemon starts its own) and may have written for a moment after this run began.
    for generation in unfinished:
        if generation != out.generation:
            drop_unrecorded(fs, output, DATA_FOLDERS, generation_prefix(generation), set())
    current = out.current
    kept = set(current.files) if current else set()
    late = step_prefix(out.generation, first_step)
    drop_unrecorded(fs, output, DATA_FOLDERS, late, kept)
    crash_point("during_cleanup")
    if state.retired:
        deleted = delete_files(fs, output, dead(state))
        log.info("deleted %d retired data file(s)", deleted)


def _tidy_folders(out: OutputCommits) -> None:
    """Remove data folders left empty, except those the run made (readers expect them)."""
    keep = out.made_folders | _folders(out.state)
    remove_empty_folders(out.ctx.fs, out.ctx.output, set(DATA_FOLDERS[1:]) - keep)


def _folders(state: LogState) -> set[str]:
    """The folders holding a live file."""
    return {path.rsplit("/", 1)[0] for path in state.live_files if "/" in path}
