"""Re-cut: the kept windows of a finished output cut again, into a new output.

The windows come from the finished output's ``_windows/`` table (audio runs write it;
so does ``output.windows_table``); nothing is rebuilt and the finished output is only
read. The new output holds ``_shards/``, ``_rejected_audio/``, ``_metrics.json`` (the
finished run's figures with this cut's ``audio`` block and settings) and
``_report.html``. Clip keys are the finished run's.
"""

from __future__ import annotations

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from alm_spark.audio.passes import cut_audio_into, equal_layout, output_audio_metrics
from alm_spark.config import PipelineConfig
from alm_spark.errors import OutputError
from alm_spark.names import WINDOWS_DIR
from alm_spark.run.checks import check_finished, check_job, check_output_storage
from alm_spark.run.context import RunContext, RunResult
from alm_spark.run.metrics import build_metrics
from alm_spark.run.output import committed_output
from alm_spark.run.progress import Progress
from alm_spark.storage.commits import live_files
from alm_spark.storage.fs import FileSystem, is_within, join
from alm_spark.storage.io import ManifestSources, escape_glob
from alm_spark.storage.schemas import WINDOWS_TABLE_SCHEMA


def recut_audio(
    spark: SparkSession,
    config: PipelineConfig,
    finished: str,
    fs: FileSystem | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Cut the kept windows of a finished output again, into ``output.path``.

    Args:
        spark: An existing session (classic or Spark Connect).
        config: The settings of the re-cut, built with
            :func:`~alm_spark.config.recut_config` (as ``alm-spark recut`` does): the
            finished run's audio settings, then yours; its ``audio`` and ``output``
            sections apply.
        finished: The finished output to read the windows from.
        fs: File system for metadata operations; derived from ``spark`` when None.
        progress: Where to report steps and progress; silent when None.

    Raises:
        ConfigError: When the settings cannot be honoured (audio off, a path field the
            windows table lacks).
        InputError: When ``finished`` is not a finished output with a windows table.
        OutputError: When ``output.path`` cannot be used (or is ``finished`` itself).
    """
    job = check_job(config, recut_from=finished)
    return recut_output(RunContext.open(spark, job.config, fs, progress, job.recut_from))


def _live_tables(ctx: RunContext, source: str) -> list[str]:
    """The windows table's live files by the source's commit log.

    A run adding to the source meanwhile is not seen. An output written before the log
    has its folder read.
    """
    live = [p for p in live_files(ctx.fs, source) if p.startswith(f"{WINDOWS_DIR}/")]
    if not live:
        return [escape_glob(join(source, WINDOWS_DIR))]
    return [escape_glob(join(source, path)) for path in sorted(live)]


def recut_output(ctx: RunContext) -> RunResult:
    """Re-cut ``ctx.recut_from`` into ``ctx.output`` (the context of a checked re-cut)."""
    source, output, spark = str(ctx.recut_from), ctx.output, ctx.spark
    check_output_storage(ctx.fs, output)
    if is_within(output, source) or is_within(source, output):
        raise OutputError(
            f"output.path: {output} and the output being re-cut ({source}) must not contain "
            "each other"
        )
    finished = check_finished(
        ctx.fs, source, lambda table: spark.read.parquet(escape_glob(table)).columns
    )
    windows_df = spark.read.schema(WINDOWS_TABLE_SCHEMA).parquet(*_live_tables(ctx, source))
    windows_df = windows_df.withColumn("audio_path", F.col(ctx.config.audio.path_field))
    counts = (int(finished["filtered_windows"]), int(finished["entries_written"]))
    with committed_output(ctx, ManifestSources((), ())) as out:
        out.begin()
        with out.step((), last=True) as step:
            layout = equal_layout(ctx.config.audio, None, carry=False)  # one step, the last
            cut_audio_into(ctx, windows_df, counts, step, (layout, ()))
        ctx.step("publishing")
        audio = output_audio_metrics(ctx, out.current)
        run = {"output_path": output, "recut_from": source}
        out.metrics = build_metrics(ctx, finished, audio=audio, run=run)
    return RunResult(output_path=output, metrics=out.metrics or {})
