"""alm_spark: ALM training windows from diarized long-form audio manifests, on Spark.

The window logic (:mod:`alm_spark.windows`, :mod:`alm_spark.process`) is pure
Python/NumPy; the Spark layer (:mod:`alm_spark.pipeline`) takes a session you build.
Importing this package has no side effects and does not import pyspark.
"""

from __future__ import annotations

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
from alm_spark.process import EntryProcessor, LineOutcome

__version__ = "0.1.0"

__all__ = [
    "AlmSparkError",
    "BuilderConfig",
    "ConfigError",
    "EntryProcessor",
    "InputConfig",
    "InputError",
    "LineOutcome",
    "OutputConfig",
    "OutputError",
    "OverlapConfig",
    "PipelineConfig",
    "SparkConfig",
    "__version__",
    "load_config",
]
