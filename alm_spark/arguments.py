"""The command line's grammar: ``alm-spark`` and its subcommands, and the job's options.

Its own module so that the command line (:mod:`alm_spark.cli`) and ``alm-spark submit``
(:mod:`alm_spark.run.launch`), which checks the job's arguments before spark-submit
starts, read the same grammar without importing each other.
"""

from __future__ import annotations

import argparse


def command_parser() -> argparse.ArgumentParser:
    """``alm-spark``'s parser: run, recut, report, verify, submit, paths, compare."""
    parser = argparse.ArgumentParser(
        prog="alm-spark",
        description="Build ALM training windows from diarized audio manifests on Spark.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="run the pipeline",
        description="Run the pipeline. Overrides look like section.key=value, values in YAML "
        "(builder.truncation=false, input.manifest_path=[a.jsonl,b.jsonl]).",
    )
    _add_job_arguments(run)
    recut = sub.add_parser(
        "recut",
        help="cut the audio of a finished output again, into a new output path",
        description="Cut every kept window of a finished output (its _windows/ table) into "
        "new shards at output.path, with the finished run's audio settings as changed by "
        "--config and overrides (audio.format=nemo, audio.sample_rate=24000, ...); windows "
        "are not rebuilt. Example: alm-spark recut out output.path=out_nemo audio.format=nemo",
    )
    recut.add_argument("finished", help="the finished output (local path or URI)")
    _add_job_arguments(recut)

    report = sub.add_parser(
        "report",
        help="rebuild _report.html of a finished output",
        description="Rebuild the HTML report of a finished output from its _metrics.json.",
    )
    report.add_argument("output", help="output directory (local path or URI fsspec can open)")
    report.add_argument("--out", help="where to write the page (default: OUTPUT/_report.html)")

    _add_verify(sub)
    sub.add_parser(
        "submit",
        help="spark-submit the job with this installation's Spark and Python",
        description="alm-spark submit [spark-submit options] -- [run arguments]: runs "
        "spark-submit (of SPARK_HOME, else the installed pyspark) on the entry script shipped "
        "in the package; the driver and executors run this Python unless "
        "spark.pyspark.python or PYSPARK_PYTHON say otherwise. Example: alm-spark submit "
        "--master spark://host:7077 -- --config job.yaml output.path=/data/out",
        add_help=False,
    )
    paths = sub.add_parser(
        "paths",
        help="print where the shipped entry script and example config are",
        description="Print the paths of files shipped for cluster jobs: entry (the "
        "spark-submit script), config (the example config), log4j. With names, only those.",
    )
    paths.add_argument("names", nargs="*", metavar="entry|config|log4j")

    compare = sub.add_parser(
        "compare",
        help="compare two outputs line by line (e.g. ours against NeMo Curator's)",
        description="Compare two manifests under the spec's equality rules: lines in any "
        "order, keys in any order, numbers by value (floats to 1e-6), null equal to absent.",
    )
    compare.add_argument("actual", help="output directory or JSONL file (.gz allowed)")
    compare.add_argument("expected", help="reference JSONL file or directory (.gz allowed)")
    compare.add_argument("--show", type=int, default=10, help="differences to print (default 10)")
    return parser


def _add_job_arguments(command: argparse.ArgumentParser) -> None:
    """The options ``run`` and ``recut`` share."""
    command.add_argument(
        "--config", help="YAML config (local path or URI); defaults apply without it"
    )
    command.add_argument("overrides", nargs="*", metavar="section.key=value")
    command.add_argument("--quiet", "-q", action="store_true", help="no progress or summary output")
    command.add_argument(
        "--progress",
        choices=["auto", "on", "off"],
        help="show steps and progress (default: output.progress, auto = on for local runs)",
    )
    command.add_argument("--debug", action="store_true", help="show tracebacks of failures")


def _add_verify(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``verify``'s options."""
    verify = sub.add_parser(
        "verify",
        help="check a finished output's shards before training on them",
        description="Check every live shard of a finished output: it opens, every clip has "
        "its audio and its facts (JSON member or manifest line) and the reverse, keys are "
        "unique, durations equal the audio headers, and the sums equal _metrics.json. Exit 0 "
        "when all holds, 1 with one line per problem, 2 when OUTPUT is not an output. "
        "Runs one Spark task per shard (spark.* overrides choose the cluster) unless --local.",
    )
    verify.add_argument("output", help="the finished output (local path or URI)")
    verify.add_argument("overrides", nargs="*", metavar="spark.key=value")
    verify.add_argument(
        "--decode", action="store_true", help="decode every clip, not only its header"
    )
    verify.add_argument("--local", action="store_true", help="check in this process, without Spark")
    verify.add_argument("--sample", type=int, metavar="N", help="check a seeded sample of N shards")
    verify.add_argument("--seed", type=int, default=0, help="the sample's seed (default 0)")
    verify.add_argument(
        "--max-problems", type=int, default=20, metavar="N",
        help="problem lines to print (all are counted; default 20)",
    )  # fmt: skip
    verify.add_argument("--debug", action="store_true", help="show tracebacks of failures")
