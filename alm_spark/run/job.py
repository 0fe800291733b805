"""The job: manifests in, windows out. Takes a SparkSession; never creates one.

One pass over the data:

1. read every physical line as text, with its file and split (:mod:`alm_spark.storage.io`);
2. build windows and filter overlaps per line where it was read
   (:func:`~alm_spark.engines.transforms.map_lines_to_results`), while
   ``DataFrame.observe`` totals the figures on the executors;
3. write output lines, rejected lines, per-split line counts, lost-window records and
   the tasks' report figures in one write, to a staging directory beside
   ``output.path``;
4. number the rejected lines and sum the report figures (small jobs over the staged
   records), move the files into place, write ``_metrics.json`` and ``_report.html``,
   swap the staging directory in for the old output, and write ``_SUCCESS`` last.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote

from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F

from alm_spark.audio.cut import (
    AUDIO_COUNTS,
    AUDIO_SECONDS,
    audio_metrics,
    check_audio_libraries,
    repacked_figures,
)
from alm_spark.audio.shards import ShardPlan, plan_shards
from alm_spark.audio.tasks import (
    AUDIO_WINDOWS_SCHEMA,
    cut_audio,
    first_pass_shards,
    publish_shards,
    repack_clips,
    sum_audio_figures,
)
from alm_spark.config import PipelineConfig
from alm_spark.engines.dataframe import dataframe_results
from alm_spark.engines.transforms import (
    map_lines_to_results,
    result_metrics,
    sum_figures,
    with_line_numbers,
    with_split_offsets,
)
from alm_spark.errors import AlmSparkError, ConfigError, InputError, OutputError
from alm_spark.names import (
    KIND_AUDIO_REJECTED,
    KIND_BLOCK,
    KIND_ENTRY,
    KIND_LOST,
    KIND_REJECTED,
    KIND_REPORT,
    KIND_WINDOW,
    LOSS_COUNTERS,
    LOST_WINDOWS_DIR,
    METRICS_FILE,
    PRODUCER,
    REJECTED_AUDIO_DIR,
    REJECTED_DIR,
    REPORT_FILE,
    SHARDS_DIR,
    SUCCESS_FILE,
    WINDOWS_DIR,
)
from alm_spark.report.figures import assemble_report, mark_overflows
from alm_spark.report.html import render_report
from alm_spark.report.summary import format_bytes
from alm_spark.run.failures import (
    DamagedInputError,
    find_damaged_input,
    names_no_damaged_file,
    wait_for_running_tasks,
)
from alm_spark.run.progress import Progress
from alm_spark.run.session import job_sql_conf, scoped_conf
from alm_spark.storage.fs import FileSystem, filesystem_for, is_within, join
from alm_spark.storage.io import (
    ManifestSources,
    escape_glob,
    input_size,
    read_manifest_lines,
    read_staged,
    resolve_manifest_paths,
    write_json_lines,
    write_staged_results,
    write_windows_table,
)
from alm_spark.storage.lock import OutputLock
from alm_spark.storage.publish import (
    check_output_location,
    check_output_parent,
    move_parts,
    new_run_id,
    publish,
    recover_leftovers,
    staging_path,
)
from alm_spark.storage.schemas import (
    STAGED_BLOCK_SCHEMA,
    STAGED_REJECTED_SCHEMA,
    STAGED_REPORT_SCHEMA,
    WINDOWS_TABLE_SCHEMA,
)

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a run produced.

    Attributes:
        output_path: Qualified output directory.
        metrics: The content of ``_metrics.json``.
    """

    output_path: str
    metrics: dict[str, Any] = field(default_factory=dict)


def _metrics(raw: dict[str, Any]) -> dict[str, Any]:
    entries = int(raw["entries_written"])
    rejected = int(raw["lines_rejected"])
    return {
        "input_lines": entries + rejected,
        "blank_lines": int(raw["blank_lines"]),
        "entries_written": entries,
        "lines_rejected": rejected,
        "internal_errors": int(raw["internal_errors"]),
        "entries_below_sample_rate": int(raw["below_sample_rate"]),
        "segments": int(raw["total_segments"]),
        "audio_duration": float(raw["total_dur"]),
        "builder_windows": int(raw["windows"]),
        "builder_windows_duration": float(raw["total_dur_window"]),
        "filtered_windows": int(raw["filtered_windows"]),
        "filtered_pairs": int(raw["filtered_pairs"]),
        "filtered_dur": float(raw["filtered_dur"]),
        "truncation_events": int(raw["truncation_events"]),
        "losses": {
            key: value
            for name in LOSS_COUNTERS
            for key, value in ((name, int(raw[name])), (f"dur_{name}", float(raw[f"dur_{name}"])))
        },
    }


def _split_offsets(lines_df: DataFrame) -> tuple[dict[tuple[str, int], int], dict[Any, int]]:
    """Lines before each split, and in it; one small row per input split reaches the driver."""
    rows = lines_df.transform(with_split_offsets).collect()
    offsets = {(r["source"], r["block_start"]): r["offset"] for r in rows}
    counts = {(unquote(r["source"]), r["block_start"]): r["lines"] for r in rows}
    return offsets, counts


def _check_same_splits(
    spark: SparkSession, data_dir: str, config: PipelineConfig, counted: dict[Any, int]
) -> None:
    """The processing pass must have seen the splits the counting pass numbered."""
    blocks_df = read_staged(spark, data_dir, KIND_BLOCK, STAGED_BLOCK_SCHEMA, config.output.format)
    seen = {(r["source"], r["block_start"]): r["lines"] for r in blocks_df.collect()}
    if seen != counted:
        raise AlmSparkError(
            "the input was split differently by the line count and by the processing pass, "
            "so lost-window keys would be wrong; nothing was published (rerun, or set "
            "spark.conf.spark.sql.files.minPartitionNum)"
        )


def _pinned_splits(spark: SparkSession, config: PipelineConfig) -> dict[str, str]:
    """Fix how files are split for the whole run, so separate passes split alike.

    Spark sizes splits by the cluster's current parallelism, which can change while
    executors come and go; pinning ``spark.sql.files.minPartitionNum`` removes that.
    """
    key = "spark.sql.files.minPartitionNum"
    if key in config.spark.conf or spark.conf.get(key, None):
        return {}
    try:
        return {key: str(spark.sparkContext.defaultParallelism)}
    except Exception:  # Spark Connect: no SparkContext
        return {}


def _report_figures(
    spark: SparkSession, fs: FileSystem, data_dir: str, config: PipelineConfig
) -> dict[str, Any]:
    """Sum the tasks' figures with Spark; only the sums come back."""
    if not fs.exists(join(data_dir, f"kind={KIND_REPORT}")):
        return assemble_report([], config.builder)
    figures_df = read_staged(
        spark, data_dir, KIND_REPORT, STAGED_REPORT_SCHEMA, config.output.format
    )
    rows = [row.asDict() for row in figures_df.transform(sum_figures).collect()]
    return assemble_report(rows, config.builder)


@dataclass
class _Staged:
    """What the Spark part of a run left in the staging directory."""

    raw: dict[str, Any]
    report: dict[str, Any]
    input_files: int
    numbered_dir: str


def _write_rejected(
    spark: SparkSession, data_dir: str, numbered_dir: str, config: PipelineConfig
) -> None:
    """Write ``_rejected/``: the staged records with their line numbers.

    The fused engine's records say "row k of the split at byte B", numbered here from
    the split counts; the DataFrame engine's carry their line number already.
    """
    out_cfg = config.output
    rejected_df = read_staged(
        spark, data_dir, KIND_REJECTED, STAGED_REJECTED_SCHEMA, out_cfg.format
    )
    if config.spark.engine == "fused":
        blocks_df = read_staged(spark, data_dir, KIND_BLOCK, STAGED_BLOCK_SCHEMA, out_cfg.format)
        rejected_df = rejected_df.transform(with_line_numbers, blocks_df)
    else:
        rejected_df = rejected_df.select("source", "line", "error", "raw")
    compression = out_cfg.codec if out_cfg.format == "jsonl" else "none"
    write_json_lines(rejected_df, numbered_dir, compression)


def _row_options(config: PipelineConfig) -> dict[str, Any]:
    """What the engines emit: lost-window records, window rows (table or audio step)."""
    audio = config.audio.enabled
    return {
        "lost_windows": config.output.lost_window_details,
        "windows_table": config.output.windows_table or audio,
        "audio_path_field": config.audio.path_field if audio else None,
    }


def _stage_results(
    spark: SparkSession,
    fs: FileSystem,
    config: PipelineConfig,
    sources: ManifestSources,
    data_dir: str,
    progress: Progress,
    timings: dict[str, float],
) -> _Staged:
    """Read, process and write every line; number the rejected ones; sum the figures."""
    out_cfg = config.output
    clock = time.time()
    settings = {**job_sql_conf(config.spark), **_pinned_splits(spark, config)}
    with scoped_conf(spark, settings):
        lines_df = read_manifest_lines(spark, sources)
        input_files = len(lines_df.inputFiles())
        progress.input_bytes = input_size(fs, sources)
        timings["list_inputs"] = time.time() - clock
        offsets = counted = None
        fused = config.spark.engine == "fused"
        rows = _row_options(config)
        keyed = out_cfg.lost_window_details == "separate" or rows["windows_table"]
        if keyed and fused:
            progress.step("counting lines, to key records by line number")
            clock = time.time()
            offsets, counted = _split_offsets(lines_df)
            timings["count_lines"] = time.time() - clock
        progress.step(
            f"processing {input_files} manifest file(s), {format_bytes(progress.input_bytes)} "
            f"({config.spark.engine} engine)"
        )
        clock = time.time()
        observation = Observation(f"alm_spark_{uuid.uuid4().hex}")
        dataframe_run = None
        if fused:
            results_df = lines_df.transform(
                map_lines_to_results,
                config.builder,
                config.overlap,
                **rows,
                line_offsets=offsets,
                progress=progress.counter,
            )
        else:
            dataframe_run = dataframe_results(
                lines_df,
                config.builder,
                config.overlap,
                **rows,
                progress=progress.counter,
            )
            results_df = dataframe_run.results_df
        try:
            with progress:
                write_staged_results(
                    results_df.observe(observation, *result_metrics()), data_dir, out_cfg
                )
        finally:
            if dataframe_run is not None:
                dataframe_run.release()
        raw = dict(observation.get)
        if dataframe_run is not None:
            # Blank lines never reach the DataFrame engine's rows: count them from splits.
            raw["blank_lines"] = (
                dataframe_run.total_lines - raw["entries_written"] - raw["lines_rejected"]
            )
        elif counted is not None:
            _check_same_splits(spark, data_dir, config, counted)
        if out_cfg.windows_table or config.audio.enabled:  # audio runs can be re-cut from it
            progress.step(f"writing the windows table ({raw['filtered_windows']:,} windows)")
            write_windows_table(spark, data_dir, out_cfg.format, join(data_dir, WINDOWS_DIR))
        timings["process_and_write"] = time.time() - clock
        clock = time.time()
        numbered_dir = join(data_dir, "_rejected")
        if raw["lines_rejected"]:
            progress.step(f"numbering {raw['lines_rejected']:,} rejected line(s)")
            _write_rejected(spark, data_dir, numbered_dir, config)
        report = _report_figures(spark, fs, data_dir, config)
        timings["rejected_and_figures"] = time.time() - clock
    return _Staged(raw, report, input_files, numbered_dir)


def _stage_audio(
    spark: SparkSession,
    fs: FileSystem,
    config: PipelineConfig,
    windows_df: DataFrame,
    counts: tuple[int, int],
    data_dir: str,
    staging: str,
    progress: Progress,
    timings: dict[str, float],
) -> dict[str, Any]:
    """Cut every kept window's clip into shards in the staging directory; the figures.

    Args:
        spark: The session.
        fs: File system for metadata operations.
        config: The job's settings (``audio`` and ``output.format``).
        windows_df: One row per kept window (:data:`AUDIO_WINDOWS_SCHEMA`).
        counts: How many windows and entries ``windows_df`` holds.
        data_dir: Where staged rows go (inside ``staging``).
        staging: The staging directory: ``_shards/`` and ``_rejected_audio/`` go there.
        progress: Steps and the status line.
        timings: Seconds per step, added to.
    """
    clock = time.time()
    audio = config.audio
    windows, entries = counts
    audio_dir = join(data_dir, "_audio")
    attempts_dir = join(staging, ".shard-attempts")
    progress.step(f"cutting {windows:,} clip(s) into {audio.format} shards")
    figures: dict[str, Any] = dict.fromkeys([*AUDIO_COUNTS, *AUDIO_SECONDS], 0)
    if windows:
        partitions = audio.partitions or max(1, min(entries, _parallelism(spark) * 2))
        counters = None if progress.clips is None else (progress.clips, progress.audio_ms)
        audio_df = cut_audio(windows_df, audio, attempts_dir, partitions, counters)
        progress.audio = True
        with progress:
            audio_df.write.mode("overwrite").partitionBy("kind").text(audio_dir)
        progress.audio = False
        figures = sum_audio_figures(spark, audio_dir)
    timings["audio"] = time.time() - clock
    staged_dirs, plan = [audio_dir], None
    if audio.repacked:
        clock = time.time()
        repack_dir, repack_attempts = join(data_dir, "_repack"), join(staging, ".repack-attempts")
        plan = _repack(
            spark, fs, config, audio_dir, attempts_dir, repack_dir, repack_attempts, progress
        )
        if plan.first_ranks:
            figures = repacked_figures(figures, sum_audio_figures(spark, repack_dir))
        staged_dirs.append(repack_dir)
        audio_dir, attempts_dir = repack_dir, repack_attempts
        timings["audio_repack"] = time.time() - clock
    wait_for_running_tasks(spark)  # a killed speculative attempt may still be writing
    shards = publish_shards(spark, fs, audio_dir, attempts_dir, join(staging, SHARDS_DIR))
    fs.mkdirs(join(staging, REJECTED_AUDIO_DIR))
    for staged_dir in staged_dirs:
        rejected_dir = join(staged_dir, f"kind={KIND_AUDIO_REJECTED}")
        move_parts(fs, rejected_dir, join(staging, REJECTED_AUDIO_DIR))
    return audio_metrics(figures, shards, audio, plan)


def _repack(
    spark: SparkSession,
    fs: FileSystem,
    config: PipelineConfig,
    first_dir: str,
    first_attempts: str,
    repack_dir: str,
    repack_attempts: str,
    progress: Progress,
) -> ShardPlan:
    """Plan the published shards and copy the first pass's clips into them."""
    audio = config.audio
    plan = plan_shards(
        first_pass_shards(spark, fs, first_dir),
        audio.equal_shards,
        audio.world_size,
        audio.shard_max_clips,
        max(1, int(audio.shard_max_mb * 1e6)),
    )
    if plan.first_ranks:
        each = f" of {plan.per_shard:,} clip(s)" if plan.per_shard is not None else ""
        progress.step(f"repacking the clips into {plan.shards:,} {audio.format} shard(s){each}")
        if plan.shards == 0:
            log.warning(
                "audio.equal_shards: %d clip(s) cannot fill %d shard(s) equally; none is kept "
                "(see _rejected_audio/)",
                plan.clips,
                audio.world_size,
            )
        most = max(1, plan.shards)  # a task per shard at most
        partitions = min(audio.partitions or _parallelism(spark) * 2, most)
        repack_df = repack_clips(
            spark, first_dir, audio, plan, first_attempts, repack_attempts, partitions
        )
        with progress:
            repack_df.write.mode("overwrite").partitionBy("kind").text(repack_dir)
    if fs.exists(first_attempts):
        fs.delete(first_attempts)  # the first pass's shards: every clip was copied out
    return plan


def _parallelism(spark: SparkSession) -> int:
    try:
        return int(spark.sparkContext.defaultParallelism)
    except Exception:  # Spark Connect: no SparkContext
        return int(spark.conf.get("spark.sql.shuffle.partitions", "200") or 200)


def _finish(
    fs: FileSystem,
    staging: str,
    data_dir: str,
    staged: _Staged,
    config: PipelineConfig,
) -> int:
    """Move the written files into their final places in the staging directory."""
    part_files = move_parts(fs, join(data_dir, f"kind={KIND_ENTRY}"), staging)
    fs.mkdirs(join(staging, REJECTED_DIR))
    move_parts(fs, staged.numbered_dir, join(staging, REJECTED_DIR))
    if config.output.windows_table or config.audio.enabled:
        fs.mkdirs(join(staging, WINDOWS_DIR))
        move_parts(fs, join(data_dir, WINDOWS_DIR), join(staging, WINDOWS_DIR))
    if config.output.lost_window_details == "separate":
        fs.mkdirs(join(staging, LOST_WINDOWS_DIR))
        move_parts(fs, join(data_dir, f"kind={KIND_LOST}"), join(staging, LOST_WINDOWS_DIR))
    fs.delete(data_dir)
    return part_files


#: After a failure, staging must stay gone this long before it is taken as removed.
_QUIET_SECONDS = 1.0


def _remove_staging(spark: SparkSession, fs: FileSystem, staging: str) -> None:
    """Remove a failed run's staging directory, and again if a dying task recreates it.

    A failed job's other tasks are killed after it fails; until they stop they can
    still create their attempt folders there (Spark 3.5 does, even after the tracker
    counts no running task), so the directory must stay absent for a moment.
    """
    wait_for_running_tasks(spark)
    deadline = time.monotonic() + 30
    quiet_since = None
    while time.monotonic() < deadline:
        try:
            if fs.exists(staging):
                fs.delete(staging)
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= _QUIET_SECONDS:
                return
        except Exception:
            log.warning("could not remove staging directory %s", staging)
            return
        time.sleep(0.1)


def _write_metrics(fs: FileSystem, staging: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """Write ``_metrics.json`` and ``_report.html`` into the staging directory."""
    metrics = mark_overflows(metrics)  # a sum beyond the largest double: null, named
    text = json.dumps(metrics, indent=2, allow_nan=False)
    fs.write_text(join(staging, METRICS_FILE), text + "\n")
    fs.write_text(join(staging, REPORT_FILE), render_report(metrics))
    return metrics


def _name_damaged_input(spark: SparkSession, sources: ManifestSources, err: Exception) -> None:
    """Raise :class:`DamagedInputError` naming the file when Spark (3.5) did not."""
    if not names_no_damaged_file(err):
        return
    damaged = find_damaged_input(spark, read_manifest_lines(spark, sources).inputFiles())
    if damaged is not None:
        raise DamagedInputError(damaged) from err


def _run_facts(
    spark: SparkSession, run_id: str, started: float, timings: dict[str, float]
) -> dict[str, Any]:
    """The ``run`` block's first fields, ending now: id, times, step timings, Spark."""
    finished = time.time()
    return {
        "run_id": run_id,
        "started_at": _utc(started),
        "finished_at": _utc(finished),
        "wall_seconds": round(finished - started, 3),
        "timings": {step: round(seconds, 3) for step, seconds in timings.items()},
        "spark_version": spark.version,
    }


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


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
    if config.audio.enabled:
        check_audio_libraries()
    fs = fs or filesystem_for(spark)
    progress = progress or Progress(spark, enabled=False)
    started = time.time()
    run_id = new_run_id()
    sources = resolve_manifest_paths(fs, config.input.paths)
    output = fs.qualify(config.output.path)
    check_output_parent(output, fs)
    with _staged_output(spark, fs, output, run_id, sources, config.output.mode) as staging:
        metrics = _run_staged(
            spark, config, fs, progress, started, run_id, sources, output, staging
        )
    return RunResult(output_path=output, metrics=metrics)


@contextmanager
def _staged_output(
    spark: SparkSession,
    fs: FileSystem,
    output: str,
    run_id: str,
    sources: ManifestSources,
    mode: str,
) -> Iterator[str]:
    """Everything that touches the output path, around the work that fills staging.

    Holds the output's lock (one run per output path), clears a killed run's leftovers,
    checks the location, yields the run's staging path, then publishes it; on any
    failure staging is removed and the old output stays as it was.
    """
    with OutputLock(fs, output, run_id):
        recover_leftovers(fs, output)
        check_output_location(fs, output, sources, mode)
        staging = staging_path(output, run_id)
        try:
            yield staging
            publish(fs, staging, output, run_id)
        except BaseException:
            _remove_staging(spark, fs, staging)
            raise


def _run_staged(
    spark: SparkSession,
    config: PipelineConfig,
    fs: FileSystem,
    progress: Progress,
    started: float,
    run_id: str,
    sources: ManifestSources,
    output: str,
    staging: str,
) -> dict[str, Any]:
    """Stage the whole run's output in ``staging``; returns its metrics."""
    data_dir = join(staging, "_data")
    timings: dict[str, float] = {}
    try:
        staged = _stage_results(spark, fs, config, sources, data_dir, progress, timings)
    except Exception as err:
        _name_damaged_input(spark, sources, err)
        raise
    audio = None
    if config.audio.enabled:
        windows_df = read_staged(
            spark, data_dir, KIND_WINDOW, AUDIO_WINDOWS_SCHEMA, config.output.format
        )
        counts = (int(staged.raw["filtered_windows"]), int(staged.raw["entries_written"]))
        audio = _stage_audio(
            spark, fs, config, windows_df, counts, data_dir, staging, progress, timings
        )
    progress.step("publishing")
    clock = time.time()
    part_files = _finish(fs, staging, data_dir, staged, config)
    metrics = {"producer": PRODUCER, **_metrics(staged.raw)}
    if audio is not None:
        metrics["audio"] = audio
    timings["publish"] = time.time() - clock
    metrics["run"] = {
        **_run_facts(spark, run_id, started, timings),
        "input_paths": list(config.input.paths),
        "input_files": staged.input_files,
        "inputs_skipped": list(sources.skipped[:100]),
        "input_bytes": progress.input_bytes,
        "output_path": output,
        "part_files": part_files,
    }
    metrics["config"] = config.to_dict()
    metrics["report"] = staged.report
    return _write_metrics(fs, staging, metrics)


def recut_audio(
    spark: SparkSession,
    config: PipelineConfig,
    finished: str,
    fs: FileSystem | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Cut the kept windows of a finished output again, into ``output.path``.

    The windows come from the finished output's ``_windows/`` table (audio runs write
    it; so does ``output.windows_table``); nothing is rebuilt and the finished output
    is only read. The new output holds ``_shards/``, ``_rejected_audio/``,
    ``_metrics.json`` (the finished run's figures with this cut's ``audio`` block and
    settings) and ``_report.html``. Clip keys are the finished run's.

    Args:
        spark: An existing session (classic or Spark Connect).
        config: Validated configuration; its ``audio`` and ``output`` sections apply
            (``audio.enabled`` is implied). Build it with
            :func:`~alm_spark.config.recut_config` to start from the finished
            run's audio settings, as ``alm-spark recut`` does.
        finished: The finished output to read the windows from.
        fs: File system for metadata operations; derived from ``spark`` when None.
        progress: Where to report steps and progress; silent when None.

    Raises:
        InputError: When ``finished`` is not a finished output with a windows table.
        OutputError: When ``output.path`` cannot be used (or is ``finished`` itself).
    """
    check_audio_libraries()
    fs = fs or filesystem_for(spark)
    progress = progress or Progress(spark, enabled=False)
    started, run_id = time.time(), new_run_id()
    check_recut_config(config)
    config = replace(config, audio=replace(config.audio, enabled=True))
    source = fs.qualify(finished)
    output = fs.qualify(config.output.path)
    check_output_parent(output, fs)
    if is_within(output, source) or is_within(source, output):
        raise OutputError(
            f"output.path: {output} and the output being re-cut ({source}) must not contain "
            "each other"
        )
    old = _finished_metrics(fs, source)
    table = escape_glob(join(source, WINDOWS_DIR))
    missing = sorted(
        set(WINDOWS_TABLE_SCHEMA.fieldNames()) - set(spark.read.parquet(table).columns)
    )
    if missing:  # written by an older version
        raise InputError(
            f"{source}: its {WINDOWS_DIR}/ table lacks {', '.join(missing)} (written by an "
            "older alm_spark); run the job again to re-cut it"
        )
    windows_df = spark.read.schema(WINDOWS_TABLE_SCHEMA).parquet(table)
    windows_df = windows_df.withColumn("audio_path", F.col(config.audio.path_field))
    counts = (int(old["filtered_windows"]), int(old["entries_written"]))
    nothing_read = ManifestSources((), ())
    with _staged_output(spark, fs, output, run_id, nothing_read, config.output.mode) as staging:
        data_dir = join(staging, "_data")
        timings: dict[str, float] = {}
        audio = _stage_audio(
            spark, fs, config, windows_df, counts, data_dir, staging, progress, timings
        )
        progress.step("publishing")
        fs.delete(data_dir)
        metrics = {
            **old,
            "audio": audio,
            "recut_from": source,
            "config": {**old.get("config", {}), "audio": config.to_dict()["audio"]},
            "run": {
                **_run_facts(spark, run_id, started, timings),
                "output_path": output,
                "recut_from": source,
            },
        }
        metrics = _write_metrics(fs, staging, metrics)
    return RunResult(output_path=output, metrics=metrics)


def check_recut_config(config: PipelineConfig) -> None:
    """Refuse settings a re-cut cannot honour, before any Spark work.

    Raises:
        ConfigError: When ``audio.path_field`` is not a column of the windows table.
    """
    field = config.audio.path_field
    if field not in WINDOWS_TABLE_SCHEMA.fieldNames():
        raise ConfigError(
            f"audio.path_field: a re-cut reads the path from the windows table, which holds "
            f"audio_filepath and swift_audio_filepath, not {field}"
        )


def _finished_metrics(fs: FileSystem, source: str) -> dict[str, Any]:
    """The ``_metrics.json`` of a finished output that has a windows table."""
    if not fs.exists(join(source, SUCCESS_FILE)):
        raise InputError(f"{source}: not a finished alm_spark output (no {SUCCESS_FILE})")
    try:
        metrics = json.loads(fs.read_text(join(source, METRICS_FILE)))
    except Exception as err:
        raise InputError(f"{source}: cannot read {METRICS_FILE}: {err}") from None
    if not isinstance(metrics, dict) or metrics.get("producer") != PRODUCER:
        raise InputError(f"{source}: {METRICS_FILE} was not written by {PRODUCER}")
    if not fs.exists(join(source, WINDOWS_DIR)):
        if "recut_from" in metrics:  # a re-cut holds clips, not windows
            raise InputError(
                f"{source}: is a re-cut and has no {WINDOWS_DIR}/ table; re-cut "
                f"{metrics['recut_from']} instead"
            )
        raise InputError(
            f"{source}: has no {WINDOWS_DIR}/ table to re-cut from (runs write it with "
            "audio.enabled or output.windows_table: true)"
        )
    return metrics
