"""alm_spark: ALM training windows from diarized long-form audio manifests, on Spark.

The package reads as the pipeline: :mod:`~alm_spark.config` (settings),
:mod:`~alm_spark.algorithm` (the reference's algorithm on one line; no pyspark),
:mod:`~alm_spark.engines` (lines to result rows on the executors),
:mod:`~alm_spark.audio` (clips and shards), :mod:`~alm_spark.storage` (file systems,
schemas, reading, writing, publishing), :mod:`~alm_spark.run` (the driver: the job, the
re-cut, checks, metrics), :mod:`~alm_spark.report` (figures, the HTML report, the
summary; no pyspark) and :mod:`~alm_spark.testing` (generators and comparison). The job
takes a session you build. Importing this package has no side effects and does not
import pyspark; the Spark functions listed here are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from alm_spark.algorithm.render import EntryRenderer, LineOutcome
from alm_spark.config import (
    BuilderConfig,
    InputConfig,
    OutputConfig,
    OverlapConfig,
    PipelineConfig,
    SparkConfig,
    load_config,
)
from alm_spark.errors import AlmSparkError, ConfigError, InputError, OutputError

if TYPE_CHECKING:
    from alm_spark.engines.frames import (
        MANIFEST_SCHEMA,
        build_windows,
        entry_stats,
        explode_segments,
        filter_overlaps,
        parse_manifests,
        read_manifests,
    )
    from alm_spark.run.job import run_pipeline
    from alm_spark.run.verify import verify_output
    from alm_spark.storage.schemas import WINDOWS_TABLE_SCHEMA

__version__ = "0.1.0"

#: The Spark layer's public names, imported when first used (they need pyspark).
_SPARK_API = {
    "MANIFEST_SCHEMA": "alm_spark.engines.frames",
    "build_windows": "alm_spark.engines.frames",
    "entry_stats": "alm_spark.engines.frames",
    "explode_segments": "alm_spark.engines.frames",
    "filter_overlaps": "alm_spark.engines.frames",
    "parse_manifests": "alm_spark.engines.frames",
    "read_manifests": "alm_spark.engines.frames",
    "run_pipeline": "alm_spark.run.job",
    "verify_output": "alm_spark.run.verify",
    "WINDOWS_TABLE_SCHEMA": "alm_spark.storage.schemas",
}


def __getattr__(name: str) -> Any:
    module = _SPARK_API.get(name)
    if module is None:
        raise AttributeError(f"module 'alm_spark' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "MANIFEST_SCHEMA",
    "WINDOWS_TABLE_SCHEMA",
    "AlmSparkError",
    "BuilderConfig",
    "ConfigError",
    "EntryRenderer",
    "InputConfig",
    "InputError",
    "LineOutcome",
    "OutputConfig",
    "OutputError",
    "OverlapConfig",
    "PipelineConfig",
    "SparkConfig",
    "__version__",
    "build_windows",
    "entry_stats",
    "explode_segments",
    "filter_overlaps",
    "load_config",
    "parse_manifests",
    "read_manifests",
    "run_pipeline",
    "verify_output",
]
