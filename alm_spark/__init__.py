"""alm_spark: ALM training windows from diarized long-form audio manifests, on Spark.

The window logic (:mod:`alm_spark.core.windows`, :mod:`alm_spark.core.render`) is pure
Python/NumPy; the Spark layer (:mod:`alm_spark.spark.pipeline`) takes a session you build.
Importing this package has no side effects and does not import pyspark.
"""

from __future__ import annotations

from alm_spark.core.config import (
    BuilderConfig,
    InputConfig,
    OutputConfig,
    OverlapConfig,
    PipelineConfig,
    SparkConfig,
    load_config,
)
from alm_spark.core.errors import AlmSparkError, ConfigError, InputError, OutputError
from alm_spark.core.render import EntryRenderer, LineOutcome

__version__ = "0.1.0"

__all__ = [
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
    "load_config",
]
