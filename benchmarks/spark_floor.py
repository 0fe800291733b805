"""Spark's floor: read the input as text and write it back out, nothing else."""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession


def main() -> int:
    source, target, master = sys.argv[1], sys.argv[2], sys.argv[3]
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master(master)
        .appName("alm_spark-floor")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.read.text(source)
    df.write.mode("overwrite").text(target)
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
