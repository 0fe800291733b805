"""The run context: what every driver step of a run or a re-cut shares.

One :class:`RunContext` is made per run and passed to each step, instead of the
session, the file system, the settings, the progress, the timings and the paths one
by one. It also serves the engines as their :class:`~alm_spark.engines.base.Steps`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import SparkSession

from alm_spark.config import PipelineConfig
from alm_spark.engines.results import Counter
from alm_spark.run.progress import Progress
from alm_spark.storage.datafiles import StepNames
from alm_spark.storage.fs import FileSystem, filesystem_for, join
from alm_spark.storage.publish import new_run_id


@dataclass
class RunResult:
    """What a run produced.

    Attributes:
        output_path: Qualified output directory.
        metrics: The content of ``_metrics.json``.
    """

    output_path: str
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunContext:
    """What a run's driver steps share.

    Attributes:
        spark: The session.
        fs: The file system for metadata operations (Hadoop's, or fsspec's on Connect).
        config: The run's settings, checked.
        progress: Steps and the status line.
        output: The qualified output path.
        run_id: The run's sortable, unique id.
        started: When the run started (seconds since the epoch).
        timings: Seconds per step, for ``_metrics.json``.
        recut_from: The finished output a re-cut reads its windows from (None: a run).
        scratch: The run's scratch folder (``_scratch/<run>`` in the output), for the
            rows Spark writes and audio cut before its commit, once the output is locked.
        names: How the current commit step's data files are named, once it is open.
    """

    spark: SparkSession
    fs: FileSystem
    config: PipelineConfig
    progress: Progress
    output: str
    run_id: str = field(default_factory=new_run_id)
    started: float = field(default_factory=time.time)
    timings: dict[str, float] = field(default_factory=dict)
    recut_from: str | None = None
    scratch: str = ""
    names: StepNames | None = None

    @classmethod
    def open(
        cls,
        spark: SparkSession,
        config: PipelineConfig,
        fs: FileSystem | None = None,
        progress: Progress | None = None,
        recut_from: str | None = None,
    ) -> RunContext:
        """A context for a new run (or a re-cut of ``recut_from``).

        The file system is the session's and the progress silent unless given.
        """
        fs = fs or filesystem_for(spark)
        progress = progress or Progress(spark, enabled=False)
        output = fs.qualify(config.output.path)
        source = fs.qualify(recut_from) if recut_from is not None else None
        return cls(spark, fs, config, progress, output, recut_from=source)

    @property
    def data_dir(self) -> str:
        """Where the run's Spark jobs write their rows, inside the scratch folder."""
        return join(self.scratch, "data")

    @property
    def counter(self) -> Counter | None:
        """The accumulator counting processed lines (None when progress is off)."""
        return self.progress.counter  # type: ignore[no-any-return]

    def step(self, message: str) -> None:
        """Say what the run does next."""
        self.progress.step(message)

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Add the time the block takes to ``timings[name]``."""
        clock = time.time()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.time() - clock

    def parallelism(self) -> int:
        """The cluster's default parallelism (shuffle partitions on Spark Connect)."""
        try:
            return int(self.spark.sparkContext.defaultParallelism)
        except Exception:  # Spark Connect: no SparkContext
            return int(self.spark.conf.get("spark.sql.shuffle.partitions", "200") or 200)
