"""alm_spark: ALM training windows from diarized long-form audio manifests, on Spark.

Two layers: :mod:`alm_spark.core` (window logic, validation, rendering, figures; no
pyspark) and :mod:`alm_spark.spark` (schemas, I/O, both engines, publishing, the job),
which takes a session you build. Importing this package has no side effects and does
not import pyspark; the Spark functions listed here are imported on first use.
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
]
