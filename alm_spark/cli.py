"""Command line: ``alm-spark run|recut|report|verify|compare`` (also ``python -m alm_spark``).

This is an entry point, like ``jobs/alm_pipeline.py``: it is the one place that
builds a SparkSession. Exit codes: 0 success, 1 failure while running, 2 a bad
setting, a missing input or an unusable output path (nothing written).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from alm_spark.arguments import command_parser
from alm_spark.config import PipelineConfig, SparkConfig, load_config, recut_config
from alm_spark.errors import AlmSparkError, ConfigError, InputError, OutputError

if TYPE_CHECKING:
    from alm_spark.run.checks import Job

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

log = logging.getLogger("alm_spark")


def _error(message: str) -> None:
    print(f"alm-spark: error: {message}", file=sys.stderr)


def _under_spark_submit() -> bool:
    return "PYSPARK_GATEWAY_PORT" in os.environ or "SPARK_ENV_LOADED" in os.environ


def _check_java() -> None:
    if _under_spark_submit() or os.environ.get("JAVA_HOME") or shutil.which("java"):
        return
    raise ConfigError(
        "Java 17 or newer is required (Spark runs on the JVM) and 'java' is not on PATH; "
        "install it (Debian/Ubuntu: apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
    )


def build_session(config: PipelineConfig) -> Any:
    """Build (or join) the SparkSession for a run, with the job's settings.

    Under spark-submit, spark-submit's master wins over the config's ``spark.master``
    (one line says so when they differ). Started directly, executors run this
    interpreter unless ``spark.conf.spark.pyspark.python`` or ``PYSPARK_PYTHON`` names
    another; on a cluster that path must exist on the workers.
    """
    from pyspark.sql import SparkSession

    from alm_spark.run.session import (
        NO_CRC_CONF,
        configure_builder,
        console_conf,
        driver_java_options,
        is_local_path,
    )

    spark_config = _session_target(config)
    if spark_config.remote:
        return _connect_session(spark_config)
    builder = SparkSession.builder
    settings: dict[str, str] = {}
    if not _under_spark_submit():
        master = spark_config.master or "local[*]"
        local = master.startswith("local")
        # Workers must run a Python with our packages: the user's choice, else this one.
        python = spark_config.conf.get("spark.pyspark.python") or os.environ.get(
            "PYSPARK_PYTHON", sys.executable
        )
        os.environ["PYSPARK_PYTHON"] = python
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        if not local:
            log.info("executors run %s (set spark.conf.spark.pyspark.python to change)", python)
        settings["spark.driver.extraJavaOptions"] = driver_java_options(spark_config, local=local)
    settings.update(console_conf(spark_config))
    if is_local_path(config.output.path):
        settings.update(NO_CRC_CONF)
    for key, value in settings.items():
        if key not in spark_config.conf:
            builder = builder.config(key, value)
    spark = configure_builder(builder, spark_config).getOrCreate()
    try:  # a session that already existed (a notebook, a Databricks job) keeps its own
        spark.sparkContext.setLogLevel(spark_config.log_level)
    except Exception:
        log.debug("could not set the Spark log level")
    return spark


def _submit_target() -> tuple[str | None, str | None]:
    """(master, remote) spark-submit was given; its default master is ``local[*]``."""
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # joins spark-submit's JVM, whose properties hold them
    conf = SparkConf()
    remote = conf.get("spark.remote", None)
    return (None if remote else str(conf.get("spark.master", "local[*]"))), remote


def _session_target(config: PipelineConfig) -> SparkConfig:
    """The config's Spark settings with where the run goes decided.

    Under spark-submit its ``--master`` or ``--remote`` wins, and one line says which of
    the config's settings was not used. Started directly, ``SPARK_REMOTE`` is a remote
    like ``spark.remote``, and refused beside ``spark.master`` as that is.

    Raises:
        ConfigError: When a master and a remote are both given, or Connect is unusable.
    """
    from dataclasses import replace

    spark = config.spark
    if _under_spark_submit():
        master, remote = _submit_target()
        wins = f"spark-submit's remote {remote}" if remote else f"spark-submit's master {master}"
        for name, value in (("master", spark.master), ("remote", spark.remote)):
            if value and value != (remote if name == "remote" else master):
                print(
                    f"alm-spark: spark.{name}={value} from the config was not used: {wins} wins",
                    file=sys.stderr,
                )
        spark = replace(spark, master=None, remote=remote)
    elif os.environ.get("SPARK_REMOTE") and not spark.remote:
        if spark.master:
            raise ConfigError(
                f"spark.master: cannot be used with SPARK_REMOTE={os.environ['SPARK_REMOTE']}; "
                "a run goes to a master or to a Spark Connect server, not both"
            )
        spark = replace(spark, remote=os.environ["SPARK_REMOTE"])
    if spark.remote:
        from alm_spark.run.session import connect_problem

        problem = connect_problem()
        if problem:
            raise ConfigError(f"spark.remote: {problem}")
    return spark


def _connect_session(spark_config: SparkConfig) -> Any:
    """A Spark Connect session: nothing of the job's needs a JVM on this side."""
    from pyspark.sql import SparkSession

    from alm_spark.run.session import connect_conf

    settings = connect_conf(spark_config)
    builder = SparkSession.builder.remote(str(spark_config.remote))
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def _progress_enabled(config: PipelineConfig, quiet: bool, master: str) -> bool:
    """``output.progress``: ``auto`` shows progress when the job runs on a local master."""
    setting = config.output.progress
    if quiet or setting == "off":
        return False
    return setting == "on" or master.startswith("local")


def _job(args: argparse.Namespace) -> Job:
    """The ``run`` or ``recut`` to do, its settings checked before a JVM starts."""
    from alm_spark.run.checks import check_job

    overrides = list(args.overrides)
    if args.progress:
        overrides.append(f"output.progress={args.progress}")
    if args.command == "recut":  # the finished run's audio settings, the file, overrides
        config = recut_config(_recorded_config(args.finished), args.config, overrides)
        return check_job(config, recut_from=args.finished)
    return check_job(load_config(args.config, overrides))


def _run(args: argparse.Namespace) -> int:
    from alm_spark.run.failures import quiet_failure_logs

    job = _job(args)
    config = job.config
    remote = config.spark.remote or (
        None if config.spark.master else os.environ.get("SPARK_REMOTE")
    )
    if not remote:  # a Spark Connect client starts no JVM
        _check_java()
    from alm_spark.report.summary import format_summary
    from alm_spark.run.job import run_job
    from alm_spark.run.progress import Progress

    spark = build_session(config)
    if not args.debug:  # a failure is reported in one line, not as executors' stack traces
        quiet_failure_logs(spark)
    master = str(spark.conf.get("spark.master", "local[*]"))
    progress = Progress(spark, enabled=_progress_enabled(config, args.quiet, master))
    try:
        result = run_job(spark, job, progress=progress)
    finally:
        progress.close()
        if not _under_spark_submit():
            spark.stop()
    if not args.quiet:
        print(format_summary(result.metrics, result.output_path))
    return EXIT_OK


def _recorded_config(output: str) -> dict[str, Any] | None:
    """The settings a finished output recorded; None where unreadable (refused later)."""
    import fsspec

    from alm_spark.names import METRICS_FILE
    from alm_spark.storage.datafiles import fsspec_url

    try:
        with fsspec.open(fsspec_url(output.rstrip("/") + "/" + METRICS_FILE), "rt") as f:
            recorded = json.load(f).get("config")
    except Exception:  # missing, unreadable, not JSON: recut_audio names the cause
        return None
    return recorded if isinstance(recorded, dict) else None


def _report(args: argparse.Namespace) -> int:
    import fsspec

    from alm_spark.names import METRICS_FILE, PRODUCER, REPORT_FILE
    from alm_spark.report.html import render_report

    source = args.output.rstrip("/") + "/" + METRICS_FILE
    try:
        with fsspec.open(source, "rt", encoding="utf-8") as handle:
            metrics = json.load(handle)
    except FileNotFoundError:
        raise InputError(f"{source}: not found; is {args.output} a finished output?") from None
    except ValueError as err:
        raise InputError(f"{source}: not valid JSON ({err})") from None
    if not isinstance(metrics, dict) or metrics.get("producer") != PRODUCER:
        raise InputError(f"{source}: not written by {PRODUCER}")
    try:
        page = render_report(metrics)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(
            f"{source}: cannot build a report from it (written by another version?): {err!r}"
        ) from None
    target = args.out or args.output.rstrip("/") + "/" + REPORT_FILE
    with fsspec.open(target, "wt", encoding="utf-8") as handle:
        handle.write(page)
    print(f"wrote {target}")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from alm_spark.run.verify import Checks, verify_output

    for name, value in (("--sample", args.sample), ("--max-problems", args.max_problems)):
        if value is not None and value < 1:
            raise ConfigError(f"{name}: expected a whole number of at least 1, got {value}")
    others = [o for o in args.overrides if not o.strip().startswith("spark.")]
    if others:
        raise ConfigError(f"{others[0]}: verify takes spark.* settings only")
    spark = None
    if not args.local:
        config = load_config(None, list(args.overrides))
        if not (config.spark.remote or os.environ.get("SPARK_REMOTE")):
            _check_java()
        spark = build_session(config)
    try:
        checks = Checks(args.decode, args.sample, args.seed, args.max_problems)
        found = verify_output(args.output, spark, checks)
    finally:
        if spark is not None and not _under_spark_submit():
            spark.stop()
    for line in found.problems:
        print(line)
    if found.problem_count > len(found.problems):
        print(f"... and {found.problem_count - len(found.problems)} more problem(s)")
    checked = (
        f"{found.shards:,} of {found.live_shards:,} shard(s)"
        if found.shards != found.live_shards
        else f"{found.shards:,} shard(s)"
    )
    verdict = "OK" if found.ok else f"{found.problem_count:,} problem(s)"
    print(f"verified {checked}, {found.clips:,} clip(s), {found.seconds / 3600:.3f} h: {verdict}")
    return EXIT_OK if found.ok else EXIT_FAILED


def _paths(args: argparse.Namespace) -> int:
    from alm_spark.run.launch import print_paths

    return print_paths(args.names)


def _compare(args: argparse.Namespace) -> int:
    from alm_spark.testing.compare import compare_paths

    for path in (args.actual, args.expected):
        if not os.path.exists(path):
            raise InputError(f"{path}: no such file or directory")
    result = compare_paths(args.actual, args.expected)
    print(
        f"actual lines: {result.actual_lines}  expected lines: {result.expected_lines}  "
        f"matched: {result.matched}"
    )
    for problem in result.problems[: args.show]:
        print(f"  {problem}")
    if len(result.problems) > args.show:
        print(f"  ... {len(result.problems) - args.show} more")
    print("EQUAL" if result.equal else "DIFFERENT")
    return EXIT_OK if result.equal else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["submit"]:  # everything after it is spark-submit's or the job's
        from alm_spark.run.launch import submit

        try:
            return submit(argv[1:])
        except (ConfigError, InputError) as err:
            _error(str(err))
            return EXIT_USAGE
    args = command_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        commands = {
            "run": _run,
            "recut": _run,
            "report": _report,
            "verify": _verify,
            "compare": _compare,
            "paths": _paths,
        }
        return commands[args.command](args)
    except (ConfigError, InputError, OutputError) as err:
        _error(str(err))
        return EXIT_USAGE
    except AlmSparkError as err:
        _error(str(err))
        return EXIT_FAILED
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_FAILED
    except Exception as err:
        from alm_spark.run.failures import describe_failure

        debug = getattr(args, "debug", False)
        if debug:
            traceback.print_exc()
        _error(describe_failure(err) + ("" if debug else "; rerun with --debug for the traceback"))
        return EXIT_FAILED
