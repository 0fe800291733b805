"""The engines by name (``spark.engine``)."""

from __future__ import annotations

from alm_spark.engines.base import Engine
from alm_spark.engines.dataframe import DataFrameEngine
from alm_spark.engines.fused import FusedEngine

#: Every engine, by the name ``spark.engine`` gives it.
ENGINES: dict[str, Engine] = {engine.name: engine for engine in (FusedEngine(), DataFrameEngine())}


def engine_named(name: str) -> Engine:
    """The engine ``spark.engine`` names (the setting is checked against ``names.ENGINES``)."""
    return ENGINES[name]
