"""The job: manifests in, windows out. Takes a SparkSession; never creates one.

One pass over the data, inside one commit step of the output
(:func:`~alm_spark.run.output.committed_output`):

1. read every physical line as text, with its file and split (:mod:`alm_spark.storage.io`);
2. build windows and filter overlaps per line with the configured engine
   (:mod:`alm_spark.engines`), while ``DataFrame.observe`` totals the figures on the
   executors; the same tasks write the output lines, lost-window records and window
   rows into the output under their final names (:mod:`alm_spark.storage.outputs`), and
   Spark writes only small rows (figures, split counts, rejected records, one row per
   data file) to the run's scratch folder;
3. number the rejected lines into ``_rejected/`` and sum the report figures (small jobs
   over those rows), delete files of attempts Spark did not keep, and cut audio when
   asked (:mod:`alm_spark.audio.passes`);
4. hand the files, inputs and figures to the commit, which makes them live, then writes
   ``_metrics.json``, ``_report.html`` and ``_SUCCESS``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote

from pyspark.sql import DataFrame, Observation, SparkSession

from alm_spark import rows
from alm_spark.algorithm.render import LineSettings
from alm_spark.audio.passes import (
    cut_audio_into,
    equal_layout,
    output_audio_metrics,
    waiting_files,
)
from alm_spark.config import PipelineConfig
from alm_spark.engines.base import EngineRun
from alm_spark.engines.registry import engine_named
from alm_spark.engines.transforms import result_metrics, sum_figures
from alm_spark.names import LOST_WINDOWS_DIR, REJECTED_DIR, WINDOWS_DIR
from alm_spark.report.figures import assemble_report, sum_report_rows
from alm_spark.report.summary import format_bytes
from alm_spark.rows import KIND_ENTRY, KIND_REPORT, KIND_WINDOW, RowKind
from alm_spark.run.checks import Job, check_job, check_output_storage
from alm_spark.run.context import RunContext, RunResult
from alm_spark.run.crash import crash_point
from alm_spark.run.failures import (
    DamagedInputError,
    OutputFullError,
    fills_a_data_file,
    find_damaged_input,
    names_no_damaged_file,
    wait_for_running_tasks,
)
from alm_spark.run.metrics import build_metrics, entry_figures, read_metrics, sum_totals
from alm_spark.run.output import OutputCommits, OutputStep, committed_output
from alm_spark.run.progress import Progress
from alm_spark.run.recut import recut_output
from alm_spark.run.session import job_sql_conf, scoped_conf
from alm_spark.storage.commits import InputFile
from alm_spark.storage.datafiles import StepNames, fsspec_url
from alm_spark.storage.fs import FileSystem, join
from alm_spark.storage.inputs import checksum_batches, identify_all
from alm_spark.storage.io import (
    ManifestSources,
    read_manifest_lines,
    read_staged,
    resolve_manifest_paths,
    write_lines_in_place,
    write_scratch_rows,
)
from alm_spark.storage.outputs import FileNames, ResultFiles, write_empty_table
from alm_spark.storage.publish import drop_unrecorded
from alm_spark.storage.steps import InputPlan, split_into_steps
from alm_spark.worker import worker_task

log = logging.getLogger(__name__)


@dataclass
class _Written:
    """What a step's text pipeline wrote: its totals."""

    totals: dict[str, Any]


def run_pipeline(
    spark: SparkSession,
    config: PipelineConfig,
    fs: FileSystem | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Run the whole job and publish its output.

    Args:
        spark: An existing session (classic or Spark Connect).
        config: Validated configuration.
        fs: File system for metadata operations; derived from ``spark`` when None.
        progress: Where to report steps and progress; silent when None.

    Returns:
        The output location and the run's figures.

    Raises:
        InputError: When an input path is missing or holds no manifests.
        OutputError: When the output path cannot be used, or another run is writing it.
    """
    return run_job(spark, check_job(config), fs, progress)


def run_job(
    spark: SparkSession,
    job: Job,
    fs: FileSystem | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Run a checked job (:func:`~alm_spark.run.checks.check_job`): a run or a re-cut."""
    if job.recut_from is not None:
        ctx = RunContext.open(spark, job.config, fs, progress, job.recut_from)
        return recut_output(ctx)
    ctx = RunContext.open(spark, job.config, fs, progress)
    sources = resolve_manifest_paths(ctx.fs, job.config.input.paths)
    check_output_storage(ctx.fs, ctx.output)
    settings = {**job_sql_conf(job.config.spark), **_pinned_splits(ctx)}
    with committed_output(ctx, sources) as out, scoped_conf(ctx.spark, settings):
        listing = _list_inputs(ctx, sources)
        plan = out.plan(listing.inputs)
        if not out.has_work(plan):
            _update_figures(plan)  # says which committed files are no longer listed
            ctx.step(f"nothing to update: all {plan.skipped:,} input file(s) are committed")
            return RunResult(output_path=ctx.output, metrics=read_metrics(ctx))
        out.begin()
        try:
            _commit_steps(ctx, out, listing, plan)
        except Exception as err:
            _name_damaged_input(spark, sources, err)
            if fills_a_data_file(err):  # a task's own write: the output's disk is full
                raise OutputFullError(ctx.output) from err
            raise
        ctx.step("publishing")
        out.metrics = _output_metrics(ctx, out, plan, sources)
    return RunResult(output_path=ctx.output, metrics=out.metrics or {})


@dataclass
class _Listing:
    """The input files a run found, and how to read any of them."""

    lines_df: DataFrame
    inputs: tuple[InputFile, ...]
    paths: dict[str, str]  # the path Spark reads, by normalized URI
    listed: int  # how many URIs Spark listed (more than inputs: one file reached twice)

    def read(self, spark: SparkSession, inputs: Sequence[InputFile]) -> DataFrame:
        """The lines of ``inputs`` (all of them, each listed once: the listing's own)."""
        if len(inputs) == len(self.inputs) == self.listed:
            return self.lines_df
        files = tuple(self.paths[i.uri] for i in inputs)
        return read_manifest_lines(spark, ManifestSources(files, ()))


def _list_inputs(ctx: RunContext, sources: ManifestSources) -> _Listing:
    """Every input file with its identity (one Spark listing), in a stable order."""
    with ctx.timed("list_inputs"):
        lines_df = read_manifest_lines(ctx.spark, sources)
        paths: dict[str, str] = {}
        inputs = []
        listed = sorted(lines_df.inputFiles())
        unquoted = [unquote(uri) for uri in listed]  # Spark lists URIs, percent-encoded
        for path, identity in zip(unquoted, identify_all(ctx.fs, unquoted), strict=True):
            if identity.uri not in paths:
                paths[identity.uri] = path
                inputs.append(identity)
        if ctx.config.input.identity == "checksum" and inputs:
            inputs = _checksummed(ctx, inputs, paths)
    return _Listing(lines_df, tuple(inputs), paths, len(listed))


def _checksummed(
    ctx: RunContext, inputs: list[InputFile], paths: dict[str, str]
) -> list[InputFile]:
    """``inputs`` versioned by their bytes' SHA-256, hashed on the executors.

    One small row per input file comes back (the listing is the driver's already).
    """
    ctx.step(f"hashing {len(inputs):,} input file(s) (input.identity: checksum)")
    rows = [(i.uri, paths[i.uri]) for i in inputs]
    files_df = ctx.spark.createDataFrame(rows, "uri string, path string")
    files_df = files_df.repartition(max(1, min(len(rows), ctx.parallelism() * 2)))
    hashed_df = files_df.mapInArrow(worker_task(checksum_batches), "uri string, version string")
    versions = {row["uri"]: row["version"] for row in hashed_df.collect()}
    return [replace(i, version=versions[i.uri]) for i in inputs]


def _commit_steps(ctx: RunContext, out: OutputCommits, listing: _Listing, plan: InputPlan) -> None:
    """Process the planned inputs step by step, each committed with its audio.

    With equal shards, clips a step cannot fill a round of shards with wait for the next
    step; when no input is left to process but clips wait (an interrupted run whose other
    inputs are gone), one step with no input places them.
    """
    config = ctx.config
    max_bytes = int(config.output.step_gb * 1e9)
    steps = split_into_steps(plan.process, config.output.step_files, max_bytes)
    if not steps and config.audio.enabled and waiting_files(out.current, plan.retire_files):
        steps = [()]
    for number, inputs in enumerate(steps, 1):
        last = number == len(steps)
        waiting = waiting_files(out.current, plan.retire_files if number == 1 else ())
        with out.step(inputs, last, plan if number == 1 else None) as step:
            if len(steps) > 1:
                ctx.step(f"commit step {number} of {len(steps)}")
            windows_df, counts = None, (0, 0)
            if inputs:
                totals = _write_text(ctx, listing.read(ctx.spark, inputs), step).totals
                counts = (int(totals["filtered_windows"]), int(totals["entries_written"]))
                if config.audio.enabled and counts[0]:  # no row, no folder to read
                    windows_df = _read_staged(ctx, rows.AUDIO_WINDOW)
            if config.audio.enabled:
                retiring = plan.retire_steps if number == 1 else ()
                layout = equal_layout(config.audio, out.current, not last, retiring)
                cut_audio_into(ctx, windows_df, counts, step, (layout, waiting))
    if not steps:
        out.close()


def _output_metrics(
    ctx: RunContext,
    out: OutputCommits,
    plan: InputPlan,
    sources: ManifestSources,
) -> dict[str, Any]:
    """``_metrics.json`` for the whole output: the committed steps' figures summed."""
    generation = out.current
    steps = list(generation.figures.values()) if generation else []
    # A step with no input (equal shards' waiting clips only) has audio figures alone.
    totals = sum_totals([step["totals"] for step in steps if "totals" in step])
    report_rows = sum_report_rows([row for step in steps for row in step.get("report", ())])
    inputs = generation.inputs.values() if generation else ()
    files = generation.files.values() if generation else ()
    run = {
        "input_paths": list(ctx.config.input.paths),
        "input_files": len(inputs),
        "inputs_skipped": list(sources.skipped[:100]),
        "input_bytes": sum(i.size for i in inputs),
        "output_path": ctx.output,
        "part_files": sum(1 for f in files if f.kind == KIND_ENTRY),
    }
    if ctx.config.output.mode == "update":
        run["update"] = _update_figures(plan)
    report = assemble_report(report_rows, ctx.config.builder)
    figures = entry_figures(totals)
    audio = output_audio_metrics(ctx, generation) if ctx.config.audio.enabled else None
    return build_metrics(ctx, figures, audio=audio, run=run, report=report)


def _update_figures(plan: InputPlan) -> dict[str, Any]:
    """What an update did with the input files, for ``_metrics.json``."""
    if plan.unlisted:
        log.warning(
            "%d committed input file(s) are no longer listed; their outputs are kept: %s",
            len(plan.unlisted),
            ", ".join(plan.unlisted[:5]) + (", ..." if len(plan.unlisted) > 5 else ""),
        )
    if plan.dropped:
        log.warning(
            "%d input file(s) no longer listed shared a commit step with a changed file; "
            "their outputs went with that step: %s",
            len(plan.dropped),
            ", ".join(plan.dropped[:5]),
        )
    return {
        "new": plan.new,
        "changed": plan.changed,
        "skipped": plan.skipped,
        "processed": len(plan.process),
        "retired_steps": list(plan.retire_steps),
        "unlisted": list(plan.unlisted[:100]),
        "unlisted_files": len(plan.unlisted),
        "dropped": list(plan.dropped[:100]),
    }


def _write_text(ctx: RunContext, lines_df: DataFrame, step: OutputStep) -> _Written:
    """Read, process and write a step's lines; number the rejected ones; sum the figures."""
    config = ctx.config
    ctx.progress.input_bytes = sum(i.size for i in step.inputs)
    engine = engine_named(config.spark.engine)
    files = _result_files(ctx)
    step.folders.update(_make_folders(ctx, files))
    run = engine.start(lines_df, LineSettings.for_run(config), ctx, files)
    ctx.step(
        f"processing {len(step.inputs)} manifest file(s), "
        f"{format_bytes(ctx.progress.input_bytes)} ({engine.name} engine)"
    )
    with ctx.timed("process_and_write"):
        totals = _write_results(ctx, run)
        crash_point("after_data_write")
        written = _data_files(ctx)
        if files.windows is not None and not any(f["holds"] == KIND_WINDOW for f in written):
            # Readers of a run without windows still find the table's columns.
            path = write_empty_table(files.windows, rows.WINDOW)
            written.append({"path": path, "holds": KIND_WINDOW})
    with ctx.timed("rejected_and_figures"):
        if totals["lines_rejected"]:
            ctx.step(f"numbering {totals['lines_rejected']:,} rejected line(s)")
            written += _write_rejected(ctx, run)
        report_rows = _report_rows(ctx)
    _drop_unrecorded_files(ctx, files, written)
    for file in written:
        step.add(file["path"], file["holds"])
    step.figures = {"totals": totals, "report": report_rows}
    return _Written(totals)


def _drop_unrecorded_files(
    ctx: RunContext, files: ResultFiles, written: list[dict[str, Any]]
) -> None:
    """Delete the data files no committed task attempt reported.

    Failed, killed, retried and speculative attempts may have left files (whole ones,
    or hidden temporary ones); only the attempts Spark committed are in ``written``.
    """
    wait_for_running_tasks(ctx.spark)  # a killed attempt may still be writing
    recorded = {f["path"] for f in written}
    prefix = _step_names(ctx).prefix
    dropped = drop_unrecorded(ctx.fs, ctx.output, _step_folders(files), prefix, recorded)
    if dropped:
        log.info("removed %d data file(s) of task attempts Spark did not keep", dropped)


def _step_names(ctx: RunContext) -> StepNames:
    if ctx.names is None:
        raise RuntimeError("no commit step is open")
    return ctx.names


def _result_files(ctx: RunContext) -> ResultFiles:
    """Where the processing tasks write entry, lost-window and windows-table files."""
    out, audio = ctx.config.output, ctx.config.audio
    root, names = fsspec_url(ctx.output), _step_names(ctx)
    lost = FileNames(root, LOST_WINDOWS_DIR, names)
    windows = FileNames(root, WINDOWS_DIR, names)
    return ResultFiles(
        entries=FileNames(root, "", names),
        lost=lost if out.lost_window_details == "separate" else None,
        windows=windows if out.windows_table or audio.enabled else None,  # re-cuts read it
        format=out.format,
        codec=out.codec,
        pass_windows=audio.enabled,
    )


def _write_results(ctx: RunContext, run: EngineRun) -> dict[str, Any]:
    """Process and write every line in one job; the totals observed while writing."""
    observation = Observation(f"alm_spark_{uuid.uuid4().hex}")
    try:
        with ctx.progress:
            observed_df = run.results_df.observe(observation, *result_metrics())
            write_scratch_rows(observed_df, ctx.data_dir)
    finally:
        run.release()
    return run.finish(dict(observation.get), lambda: _read_staged(ctx, rows.STAGED_BLOCK))


def _data_files(ctx: RunContext) -> list[dict[str, Any]]:
    """The data files the committed task attempts wrote (one small row per file)."""
    if not ctx.fs.exists(join(ctx.data_dir, f"kind={rows.KIND_DATA_FILE}")):
        return []
    return [row.asDict() for row in _read_staged(ctx, rows.DATA_FILE).collect()]


def _read_staged(ctx: RunContext, kind: RowKind) -> DataFrame:
    return read_staged(ctx.spark, ctx.data_dir, kind)


def _pinned_splits(ctx: RunContext) -> dict[str, str]:
    """Fix how files are split for the whole run, so separate passes split alike.

    Spark sizes splits by the cluster's current parallelism, which can change while
    executors come and go; pinning ``spark.sql.files.minPartitionNum`` removes that.
    """
    key = "spark.sql.files.minPartitionNum"
    if key in ctx.config.spark.conf or ctx.spark.conf.get(key, None):
        return {}
    try:
        return {key: str(ctx.spark.sparkContext.defaultParallelism)}
    except Exception:  # Spark Connect: no SparkContext
        return {}


def _write_rejected(ctx: RunContext, run: EngineRun) -> list[dict[str, Any]]:
    """Write the rejected lines with their line numbers into ``_rejected/``; the files."""
    out = ctx.config.output
    numbered_df = run.numbered_rejected(
        _read_staged(ctx, rows.STAGED_REJECTED), lambda: _read_staged(ctx, rows.STAGED_BLOCK)
    )
    compression = out.codec if out.format == "jsonl" else "none"
    where = FileNames(fsspec_url(ctx.output), REJECTED_DIR, _step_names(ctx))
    return write_lines_in_place(numbered_df, where, compression)


def _report_rows(ctx: RunContext) -> list[dict[str, Any]]:
    """The tasks' report figures summed by Spark (only the sums come back)."""
    if not ctx.fs.exists(join(ctx.data_dir, f"kind={KIND_REPORT}")):
        return []
    figures_df = _read_staged(ctx, rows.STAGED_REPORT)
    return [r.asDict() for r in figures_df.transform(sum_figures).collect()]


def _step_folders(files: ResultFiles) -> tuple[str, ...]:
    """The folders a step's tasks write into (``""``: the output itself)."""
    kinds = (files.entries, files.lost, files.windows)
    return (*(where.folder for where in kinds if where is not None), REJECTED_DIR)


def _make_folders(ctx: RunContext, files: ResultFiles) -> tuple[str, ...]:
    """Make the folders the step's tasks write into (tasks never make folders)."""
    folders = _step_folders(files)
    for folder in folders:
        ctx.fs.mkdirs(join(ctx.output, folder) if folder else ctx.output)
    return folders


def _name_damaged_input(spark: SparkSession, sources: ManifestSources, err: Exception) -> None:
    """Raise :class:`DamagedInputError` naming the file when Spark (3.5) did not."""
    if not names_no_damaged_file(err):
        return
    damaged = find_damaged_input(spark, read_manifest_lines(spark, sources).inputFiles())
    if damaged is not None:
        raise DamagedInputError(damaged) from err
