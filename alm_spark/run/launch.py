"""``alm-spark submit`` and ``alm-spark paths``: spark-submit from this installation.

``alm-spark submit [spark-submit options] -- [job arguments]`` runs the spark-submit of
the pyspark installed beside this package, with the entry script shipped in the
package, so it works as written from any directory, without an activated virtual
environment: it sets ``SPARK_HOME`` (pip's ``bin/spark-submit`` otherwise looks it up
with whatever ``python3`` is first on ``PATH``), runs the driver and, unless told
otherwise, the executors with this interpreter, and starts the driver JVM with the
job's quiet log configuration. The job's settings are checked before Spark starts.

``alm-spark paths`` prints where the files a cluster job needs are: the entry script
and the example config (for a Databricks script task or an EMR step).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import NoReturn

from alm_spark.errors import ConfigError

#: What a Python process holding a session exports for its JVM: a spark-submit started from
#: it must not inherit them (it would attach to that JVM, or skip ``spark-env.sh``).
PARENT_SESSION_VARIABLES = ("PYSPARK_GATEWAY_PORT", "PYSPARK_GATEWAY_SECRET", "SPARK_ENV_LOADED")

#: Files shipped in the package for cluster jobs, by the name ``alm-spark paths`` uses.
SHIPPED_FILES = {
    "entry": "alm_pipeline.py",  # the spark-submit entry script (jobs/alm_pipeline.py)
    "config": "alm_pipeline.yaml",  # the example config (conf/alm_pipeline.yaml)
    "log4j": "log4j2.properties",  # the driver's console log configuration
}


def shipped_path(name: str) -> Path:
    """Path of a file shipped in the package (see :data:`SHIPPED_FILES`)."""
    return Path(str(resources.files("alm_spark").joinpath("data", SHIPPED_FILES[name])))


def print_paths(names: Sequence[str]) -> int:
    """Print one shipped file's path, or every one as ``name<TAB>path``."""
    unknown = [n for n in names if n not in SHIPPED_FILES]
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown file (known: {', '.join(SHIPPED_FILES)})")
    if names:
        for name in names:
            print(shipped_path(name))
    else:
        for name in SHIPPED_FILES:
            print(f"{name}\t{shipped_path(name)}")
    return 0


def spark_home() -> Path:
    """``SPARK_HOME`` when set (a cluster's own Spark), else the installed pyspark."""
    if os.environ.get("SPARK_HOME"):  # pyspark 3.5 treats an empty value as set
        return Path(os.environ["SPARK_HOME"])
    try:
        import pyspark
    except ImportError:
        raise ConfigError(
            "alm-spark submit: no Spark found; install pyspark (pip install 'alm-spark[spark]') "
            "or set SPARK_HOME"
        ) from None
    return Path(pyspark.__file__).resolve().parent


def split_arguments(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``[spark-submit options] -- [job arguments]`` at the first ``--``."""
    args = list(argv)
    if "--" in args:
        at = args.index("--")
        return args[:at], args[at + 1 :]
    return args, []


def _has_option(options: Sequence[str], name: str) -> bool:
    return any(o == name or o.startswith(name + "=") for o in options)


def _has_conf(options: Sequence[str], key: str) -> bool:
    return any(o.startswith(f"{key}=") for o in options) or any(
        o == "--conf" and i + 1 < len(options) and options[i + 1].startswith(f"{key}=")
        for i, o in enumerate(options)
    )


def submit_command(argv: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The spark-submit command line and environment ``alm-spark submit argv`` runs.

    Raises:
        ConfigError: When the job's settings are bad (nothing is started).
    """
    from alm_spark.arguments import command_parser
    from alm_spark.config import load_config

    options, job_args = split_arguments(argv)
    parsed = command_parser().parse_args(["run", *job_args])
    config = load_config(parsed.config, parsed.overrides)
    home = spark_home()
    env = dict(os.environ, SPARK_HOME=str(home))
    for name in PARENT_SESSION_VARIABLES:
        env.pop(name, None)
    env.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if not _has_conf(options, "spark.pyspark.python"):
        env.setdefault("PYSPARK_PYTHON", sys.executable)
    command = [str(home / "bin" / "spark-submit"), *options]
    if not _has_option(options, "--driver-java-options") and not _has_conf(
        options, "spark.driver.extraJavaOptions"
    ):
        from alm_spark.run.session import LOG_LEVEL_PROPERTY

        log4j = shipped_path("log4j")
        level = config.spark.log_level
        command += [
            "--driver-java-options",
            f"-Dlog4j2.configurationFile=file:{log4j} -D{LOG_LEVEL_PROPERTY}={level}",
        ]
    command += [str(shipped_path("entry")), *job_args]
    return command, env


def submit(argv: Sequence[str]) -> NoReturn:
    """Replace this process with spark-submit of the job (see the module docstring)."""
    command, env = submit_command(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, env)
