"""Everything a run does to its output path, around the work that fills staging.

:func:`staged_output` holds the output's lock (one run per output path), clears a
killed run's leftovers, checks the location, gives the run its staging directory and
publishes it (:mod:`alm_spark.storage.publish`); on any failure staging is removed and
the old output stays as it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from alm_spark.run.context import RunContext
from alm_spark.run.failures import wait_for_running_tasks
from alm_spark.storage.io import ManifestSources
from alm_spark.storage.lock import OutputLock
from alm_spark.storage.publish import (
    check_output_location,
    publish,
    recover_leftovers,
    staging_path,
)

log = logging.getLogger(__name__)

#: After a failure, staging must stay gone this long before it is taken as removed.
_QUIET_SECONDS = 1.0


@contextmanager
def staged_output(ctx: RunContext, sources: ManifestSources) -> Iterator[str]:
    """Lock the output, set ``ctx.staging`` and yield it; publish it when the block ends.

    Args:
        ctx: The run.
        sources: The inputs (the output must neither contain one nor lie inside one).

    Raises:
        OutputError: When another run holds the output, or the location is unusable.
    """
    fs, output = ctx.fs, ctx.output
    with OutputLock(fs, output, ctx.run_id):
        recover_leftovers(fs, output)
        check_output_location(fs, output, sources, ctx.config.output.mode)
        ctx.staging = staging_path(output, ctx.run_id)
        try:
            yield ctx.staging
            publish(fs, ctx.staging, output, ctx.run_id)
        except BaseException:
            _remove_staging(ctx)
            raise
        # Again at the end: a killed run's Python workers are not in its process group
        # (PySpark's daemon starts its own) and may write into its staging folder for a
        # moment after the run's start removed it.
        recover_leftovers(fs, output)


def _remove_staging(ctx: RunContext) -> None:
    """Remove a failed run's staging directory, and again if a dying task recreates it.

    A failed job's other tasks are killed after it fails; until they stop they can
    still create their attempt folders there (Spark 3.5 does, even after the tracker
    counts no running task), so the directory must stay absent for a moment.
    """
    fs, staging = ctx.fs, ctx.staging
    wait_for_running_tasks(ctx.spark)
    deadline = time.monotonic() + 30
    quiet_since = None
    while time.monotonic() < deadline:
        try:
            if fs.exists(staging):
                fs.delete(staging)
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= _QUIET_SECONDS:
                return
        except Exception:
            log.warning("could not remove staging directory %s", staging)
            return
        time.sleep(0.1)
