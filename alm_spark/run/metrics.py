"""``_metrics.json``: built by one function for runs and re-cuts, then written with the report."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

from alm_spark.names import LOSS_COUNTERS, METRICS_FILE, PRODUCER, REPORT_FILE
from alm_spark.report.figures import mark_overflows
from alm_spark.report.html import render_report
from alm_spark.run.context import RunContext
from alm_spark.storage.fs import join


def entry_figures(totals: dict[str, Any]) -> dict[str, Any]:
    """A run's figures from the engines' summed rows: the top of ``_metrics.json``."""
    entries = int(totals["entries_written"])
    rejected = int(totals["lines_rejected"])
    return {
        "producer": PRODUCER,
        "input_lines": entries + rejected,
        "blank_lines": int(totals["blank_lines"]),
        "entries_written": entries,
        "lines_rejected": rejected,
        "internal_errors": int(totals["internal_errors"]),
        "entries_below_sample_rate": int(totals["below_sample_rate"]),
        "segments": int(totals["total_segments"]),
        "audio_duration": float(totals["total_dur"]),
        "builder_windows": int(totals["windows"]),
        "builder_windows_duration": float(totals["total_dur_window"]),
        "filtered_windows": int(totals["filtered_windows"]),
        "filtered_pairs": int(totals["filtered_pairs"]),
        "filtered_dur": float(totals["filtered_dur"]),
        "truncation_events": int(totals["truncation_events"]),
        "losses": {
            key: value
            for name in LOSS_COUNTERS
            for key, value in (
                (name, int(totals[name])),
                (f"dur_{name}", float(totals[f"dur_{name}"])),
            )
        },
    }


def build_metrics(
    ctx: RunContext,
    figures: dict[str, Any],
    *,
    audio: dict[str, Any] | None = None,
    run: dict[str, Any] | None = None,
    report: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The content of ``_metrics.json``, ending the run's timings now.

    Args:
        ctx: The run.
        figures: What the text pipeline found: :func:`entry_figures` for a run; the
            finished output's metrics for a re-cut (its report and settings included).
        audio: The audio step's block, when audio was cut.
        run: The ``run`` block's fields beyond the id, times, timings and Spark version.
        report: The report's figures (a run's; a re-cut keeps the finished run's).

    Returns:
        ``figures``, then ``audio``, ``recut_from`` (a re-cut), ``run``, ``config`` (a
        re-cut keeps the finished run's text settings and records its audio ones) and
        ``report``.
    """
    metrics = dict(figures)
    config = ctx.config.to_dict()
    if audio is not None:
        metrics["audio"] = audio
    if ctx.recut_from is not None:
        metrics["recut_from"] = ctx.recut_from
        config = {**figures.get("config", {}), "audio": config["audio"]}
    finished = time.time()
    metrics["run"] = {
        "run_id": ctx.run_id,
        "started_at": _utc(ctx.started),
        "finished_at": _utc(finished),
        "wall_seconds": round(finished - ctx.started, 3),
        "timings": {step: round(seconds, 3) for step, seconds in ctx.timings.items()},
        "spark_version": ctx.spark.version,
        **(run or {}),
    }
    metrics["config"] = config
    if report is not None:
        metrics["report"] = report
    return metrics


def sum_totals(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The engines' totals of several commit steps, summed key by key (in step order)."""
    if not steps:
        return {}
    summed: dict[str, Any] = {}
    for totals in steps:
        for key, value in totals.items():
            summed[key] = summed.get(key, 0) + (value or 0)
    return summed


def read_metrics(ctx: RunContext) -> dict[str, Any]:
    """The output's ``_metrics.json`` as written (an update with nothing to do)."""
    metrics: dict[str, Any] = json.loads(ctx.fs.read_text(join(ctx.output, METRICS_FILE)))
    return metrics


def write_metrics(ctx: RunContext, metrics: dict[str, Any]) -> dict[str, Any]:
    """Write ``_metrics.json`` and ``_report.html`` into the output; returns what was written.

    A sum beyond the largest double is written as null, and named.
    """
    metrics = mark_overflows(metrics)
    text = json.dumps(metrics, indent=2, allow_nan=False)
    ctx.fs.write_text(join(ctx.output, METRICS_FILE), text + "\n")
    ctx.fs.write_text(join(ctx.output, REPORT_FILE), render_report(metrics))
    return metrics


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
