"""Job settings: frozen sections that validate themselves, YAML files and overrides.

A config has six sections: ``input``, ``output``, ``builder``, ``overlap``, ``spark`` and
``audio``. ``builder`` and ``overlap`` use the reference's parameter names. Every value
is checked when its section is created, before any Spark work; a bad one raises
:class:`~alm_spark.errors.ConfigError` whose message starts with the setting's name.

- :mod:`~alm_spark.config.values`: the checks of single values;
- :mod:`~alm_spark.config.sections`: the sections and :func:`build_config`;
- :mod:`~alm_spark.config.loading`: YAML, ``section.key=value`` overrides, re-cut settings.
"""

from __future__ import annotations

from alm_spark.config.loading import (
    apply_overrides,
    load_config,
    parse_override,
    parse_yaml,
    read_yaml,
    recut_config,
)
from alm_spark.config.sections import (
    AudioConfig,
    BuilderConfig,
    InputConfig,
    OutputConfig,
    OverlapConfig,
    PipelineConfig,
    SparkConfig,
    build_config,
    bundled_sample_path,
)
from alm_spark.errors import ConfigError

__all__ = [
    "AudioConfig",
    "BuilderConfig",
    "ConfigError",
    "InputConfig",
    "OutputConfig",
    "OverlapConfig",
    "PipelineConfig",
    "SparkConfig",
    "apply_overrides",
    "build_config",
    "bundled_sample_path",
    "load_config",
    "parse_override",
    "parse_yaml",
    "read_yaml",
    "recut_config",
]
