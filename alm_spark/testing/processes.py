"""The environment of a child process that runs Spark, started by a test or a benchmark."""

from __future__ import annotations

import os
import sys

from alm_spark.run.launch import PARENT_SESSION_VARIABLES


def spark_child_env(**extra: str) -> dict[str, str]:
    """This environment for a child Spark process, with ``extra`` set.

    Without the variables of a session this process may hold (the child starts its own
    JVM), and with this Python as PySpark's driver and workers' Python.
    """
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    for name in PARENT_SESSION_VARIABLES:
        env.pop(name, None)
    env.update(extra)
    return env
