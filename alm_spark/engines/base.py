"""What an engine is to the job: lines in, result rows out, and what to do after.

An engine (:class:`Engine`) turns the physical lines of a run into rows of
:data:`~alm_spark.rows.RESULT` and returns an :class:`EngineRun`, which knows what its
way of working leaves to do once the rows are written: how many blank lines there
were, how rejected lines get their numbers, and what to release. The job calls only
this interface (:func:`~alm_spark.engines.registry.engine_named`); a new engine is one
new module and one line in the registry.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from pyspark.sql import DataFrame

from alm_spark.algorithm.render import LineSettings
from alm_spark.engines.results import Counter
from alm_spark.storage.outputs import ResultFiles

#: Reads the staged ``block`` rows (lines per split) of the rows just written.
StagedBlocks = Callable[[], DataFrame]


class Steps(Protocol):
    """Where an engine reports the steps it runs on the driver (the run's progress)."""

    @property
    def counter(self) -> Counter | None:
        """Counts processed lines for the status line (None when progress is off)."""

    def step(self, message: str) -> None:
        """Say what the run does next."""

    def timed(self, name: str) -> AbstractContextManager[None]:
        """Time a step into the run's timings under ``name``."""


class EngineRun(Protocol):
    """An engine's rows for one run, and what is left to do once they are written."""

    @property
    def results_df(self) -> DataFrame:
        """Rows of :data:`~alm_spark.rows.RESULT`, ready to be written."""

    def finish(self, observed: dict[str, Any], staged_blocks: StagedBlocks) -> dict[str, Any]:
        """The run's totals once the rows are written: ``observed`` with ``blank_lines``.

        Raises:
            AlmSparkError: When what was written cannot be trusted (the input was
                split differently by two passes).
        """

    def numbered_rejected(self, rejected_df: DataFrame, staged_blocks: StagedBlocks) -> DataFrame:
        """``source, line, error, raw`` from the staged rejected rows."""

    def release(self) -> None:
        """Free what the run cached."""


class Engine(Protocol):
    """Something that processes a run's lines (see the module docstring)."""

    name: str

    def start(
        self,
        lines_df: DataFrame,
        settings: LineSettings,
        steps: Steps,
        files: ResultFiles | None = None,
    ) -> EngineRun:
        """Plan the rows for ``lines_df`` (:data:`~alm_spark.rows.MANIFEST_LINE` rows).

        With ``files``, the tasks that make the rows also write the data files
        (:func:`~alm_spark.storage.outputs.write_result_batches`), in the same pass.
        """
