"""Named points where the driver kills itself, for tests that prove a run is kill-safe.

A test sets ``ALM_SPARK_CRASH_AT`` to a point's name (``between_records``), or to a name
and a count (``between_records:2``: the second time the run gets there), and the driver
SIGKILLs itself there: no ``finally`` block, no ``atexit`` hook, no cleanup runs, as when
a node is lost. Unset, :func:`crash_point` costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

#: The environment variable naming the point.
CRASH_ENV = "ALM_SPARK_CRASH_AT"
#: The points a run passes, in order.
CRASH_POINTS = (
    "after_data_write",  # a step's tasks wrote their data files; nothing recorded
    "before_record",  # other attempts' files deleted; the step's record not written
    "between_records",  # a step committed; the next step not started
    "during_cleanup",  # the last record written; retired files not deleted, no _SUCCESS
)
_reached: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Kill this process now if ``ALM_SPARK_CRASH_AT`` names this point (and count)."""
    wanted = os.environ.get(CRASH_ENV)
    if not wanted:
        return
    point, _, count = wanted.partition(":")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
