"""The job: manifests in, windows out. Takes a SparkSession; never creates one.

One pass over the data:

1. read every physical line as text, with its file and split (:mod:`alm_spark.io`);
2. build windows and filter overlaps per line where it was read
   (:func:`~alm_spark.transforms.process_manifest_lines`), while
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
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote

from pyspark.sql import DataFrame, Observation, SparkSession

from alm_spark.config import PipelineConfig
from alm_spark.errors import AlmSparkError, OutputError
from alm_spark.figures import assemble_report
from alm_spark.fs import FileSystem, filesystem_for, is_within, join, parent_and_name
from alm_spark.io import (
    ManifestSources,
    escape_glob,
    read_manifest_lines,
    read_staged,
    resolve_manifest_paths,
    write_json_lines,
    write_staged_results,
)
from alm_spark.progress import Progress, format_bytes
from alm_spark.report import REPORT_FILE, render_report
from alm_spark.schemas import (
    KIND_BLOCK,
    KIND_ENTRY,
    KIND_LOST,
    KIND_REJECTED,
    KIND_REPORT,
    STAGED_BLOCK_SCHEMA,
    STAGED_REJECTED_SCHEMA,
    STAGED_REPORT_SCHEMA,
)
from alm_spark.session import job_sql_conf, scoped_conf
from alm_spark.transforms import (
    process_manifest_lines,
    result_metrics,
    sum_figures,
    with_line_numbers,
    with_split_offsets,
)
from alm_spark.windows import LOSS_COUNTERS

log = logging.getLogger(__name__)

METRICS_FILE = "_metrics.json"
SUCCESS_FILE = "_SUCCESS"
REJECTED_DIR = "_rejected"
LOST_WINDOWS_DIR = "_lost_windows"
PRODUCER = "alm_spark"  # in _metrics.json; only a directory carrying it is ever replaced


@dataclass
class RunResult:
    """What a run produced.

    Attributes:
        output_path: Qualified output directory.
        metrics: The content of ``_metrics.json``.
    """

    output_path: str
    metrics: dict[str, Any] = field(default_factory=dict)


def new_run_id() -> str:
    """A sortable, unique run id."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def _check_output_location(
    fs: FileSystem, output: str, sources: ManifestSources, mode: str = "overwrite"
) -> None:
    for path in (*sources.files, *sources.directories):
        qualified = fs.qualify(path)
        if is_within(qualified, output):
            raise OutputError(f"output.path: {output} contains the input {qualified}")
        if qualified in sources.directories and is_within(output, qualified):
            raise OutputError(
                f"output.path: {output} is inside the input directory {qualified}; "
                "a later run would read the output as input"
            )
    if not fs.exists(output):
        return
    if mode == "error":
        raise OutputError(f"output.path: {output} exists (output.mode is error)")
    if not fs.is_dir(output):
        raise OutputError(f"output.path: {output} exists and is a file")
    if fs.list_dir(output) and not _is_our_output(fs, output):
        raise OutputError(
            f"output.path: {output} exists and is not an alm_spark output "
            f"(no {METRICS_FILE} written by {PRODUCER}); refusing to replace it"
        )


def _is_our_output(fs: FileSystem, path: str) -> bool:
    try:
        metrics = json.loads(fs.read_text(join(path, METRICS_FILE)))
    except Exception:  # missing or unreadable (OSError, a Py4J error, bad JSON)
        return False
    return isinstance(metrics, dict) and metrics.get("producer") == PRODUCER


def _move_parts(fs: FileSystem, src_dir: str, dst_dir: str) -> int:
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


def _publish(fs: FileSystem, staging: str, output: str, run_id: str) -> None:
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


def _recover_leftovers(fs: FileSystem, output: str) -> None:
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


@dataclass
class _Staged:
    """What the Spark part of a run left in the staging directory."""

    raw: dict[str, Any]
    report: dict[str, Any]
    input_files: int
    numbered_dir: str


def _process(
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
        progress.input_bytes = fs.total_size([*sources.files, *sources.directories])
        timings["list_inputs"] = time.time() - clock
        offsets = counted = None
        if out_cfg.lost_window_details == "separate":
            progress.step("counting lines, to key lost windows by line number")
            clock = time.time()
            offsets, counted = _split_offsets(lines_df)
            timings["count_lines"] = time.time() - clock
        progress.step(
            f"processing {input_files} manifest file(s), {format_bytes(progress.input_bytes)}"
        )
        clock = time.time()
        observation = Observation(f"alm_spark_{uuid.uuid4().hex}")
        results_df = lines_df.transform(
            process_manifest_lines,
            config.builder,
            config.overlap,
            lost_windows=out_cfg.lost_window_details,
            line_offsets=offsets,
            progress=progress.counter,
        ).observe(observation, *result_metrics())
        with progress:
            write_staged_results(results_df, data_dir, out_cfg)
        raw = observation.get
        if counted is not None:
            _check_same_splits(spark, data_dir, config, counted)
        timings["process_and_write"] = time.time() - clock
        clock = time.time()
        numbered_dir = join(data_dir, "_rejected")
        if raw["lines_rejected"]:
            progress.step(f"numbering {raw['lines_rejected']:,} rejected line(s)")
            rejected_df = read_staged(
                spark, data_dir, KIND_REJECTED, STAGED_REJECTED_SCHEMA, out_cfg.format
            )
            blocks_df = read_staged(
                spark, data_dir, KIND_BLOCK, STAGED_BLOCK_SCHEMA, out_cfg.format
            )
            compression = out_cfg.codec if out_cfg.format == "jsonl" else "none"
            write_json_lines(
                rejected_df.transform(with_line_numbers, blocks_df), numbered_dir, compression
            )
        report = _report_figures(spark, fs, data_dir, config)
        timings["rejected_and_figures"] = time.time() - clock
    return _Staged(raw, report, input_files, numbered_dir)


def _finish(
    fs: FileSystem,
    staging: str,
    data_dir: str,
    staged: _Staged,
    config: PipelineConfig,
) -> int:
    """Move the written files into their final places in the staging directory."""
    part_files = _move_parts(fs, join(data_dir, f"kind={KIND_ENTRY}"), staging)
    fs.mkdirs(join(staging, REJECTED_DIR))
    _move_parts(fs, staged.numbered_dir, join(staging, REJECTED_DIR))
    if config.output.lost_window_details == "separate":
        fs.mkdirs(join(staging, LOST_WINDOWS_DIR))
        _move_parts(fs, join(data_dir, f"kind={KIND_LOST}"), join(staging, LOST_WINDOWS_DIR))
    fs.delete(data_dir)
    return part_files


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
        OutputError: When the output path cannot be used.
    """
    fs = fs or filesystem_for(spark)
    progress = progress or Progress(spark, enabled=False)
    started = time.time()
    run_id = new_run_id()
    sources = resolve_manifest_paths(fs, config.input.paths)
    output = fs.qualify(config.output.path)
    _recover_leftovers(fs, output)
    _check_output_location(fs, output, sources, config.output.mode)
    parent, name = parent_and_name(output)
    staging = join(parent, f".{name}.staging-{run_id}")
    data_dir = join(staging, "_data")
    timings: dict[str, float] = {}
    try:
        staged = _process(spark, fs, config, sources, data_dir, progress, timings)
        progress.step("publishing")
        clock = time.time()
        part_files = _finish(fs, staging, data_dir, staged, config)
        metrics = {"producer": PRODUCER, **_metrics(staged.raw)}
        timings["publish"] = time.time() - clock
        finished = time.time()
        metrics["run"] = {
            "run_id": run_id,
            "started_at": _utc(started),
            "finished_at": _utc(finished),
            "wall_seconds": round(finished - started, 3),
            "timings": {step: round(seconds, 3) for step, seconds in timings.items()},
            "spark_version": spark.version,
            "input_paths": list(config.input.paths),
            "input_files": staged.input_files,
            "input_bytes": progress.input_bytes,
            "output_path": output,
            "part_files": part_files,
        }
        metrics["config"] = config.to_dict()
        metrics["report"] = staged.report
        fs.write_text(join(staging, METRICS_FILE), json.dumps(metrics, indent=2) + "\n")
        fs.write_text(join(staging, REPORT_FILE), render_report(metrics))
        _publish(fs, staging, output, run_id)
    except BaseException:
        try:
            fs.delete(staging)
        except Exception:
            log.warning("could not remove staging directory %s", staging)
        raise
    return RunResult(output_path=output, metrics=metrics)


def format_summary(result: RunResult) -> str:
    """The end-of-run block printed by the CLI."""
    m = result.metrics
    losses = m["losses"]
    loss_text = "  ".join(f"{name.removeprefix('lost_')}={losses[name]}" for name in LOSS_COUNTERS)
    run = m["run"]
    rule = "=" * 64
    lines = [
        rule,
        "ALM PIPELINE COMPLETE",
        rule,
        f"Input lines:         {m['input_lines']:>10}   (non-blank, from {run['input_files']} "
        f"file(s); {m['blank_lines']} blank line(s) skipped)",
        f"Entries written:     {m['entries_written']:>10}",
        f"Lines rejected:      {m['lines_rejected']:>10}"
        + (f"   see {result.output_path}/{REJECTED_DIR}/" if m["lines_rejected"] else ""),
        f"Segments:            {m['segments']:>10}   ({m['audio_duration'] / 3600:.2f} h of audio)",
        f"Builder windows:     {m['builder_windows']:>10}",
        f"Filtered windows:    {m['filtered_windows']:>10}",
        f"Filtered duration:   {m['filtered_dur']:>10.1f} s ({m['filtered_dur'] / 3600:.2f} h)",
        f"Truncation events:   {m['truncation_events']:>10}",
        f"Losses (segments):   {loss_text}",
        f"Output:              {result.output_path}",
        f"Wall time:           {run['wall_seconds']:.1f} s",
        rule,
    ]
    if m["internal_errors"]:
        lines.insert(
            -1, f"WARNING: {m['internal_errors']} line(s) hit an internal error; see _rejected/"
        )
    return "\n".join(lines)
