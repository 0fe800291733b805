"""How much speech windows cover: unions of intervals, for the report."""

from __future__ import annotations

import numpy as np


def merge_intervals(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The union of intervals ``[start, end]`` as sorted, disjoint intervals."""
    if len(starts) == 0:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], np.maximum(ends[order], starts[order])
    reach = np.maximum.accumulate(e)
    firsts = np.flatnonzero(np.concatenate(([True], s[1:] > reach[:-1])))
    return s[firsts], np.maximum.reduceat(e, firsts)


def covered_seconds(
    seg_starts: np.ndarray, seg_ends: np.ndarray, win_starts: np.ndarray, win_ends: np.ndarray
) -> float:
    """Seconds of the segments (speech) that fall inside at least one window."""
    u_start, u_end = merge_intervals(win_starts, win_ends)
    if len(u_start) == 0 or len(seg_starts) == 0:
        return 0.0
    before = np.concatenate(([0.0], np.cumsum(u_end - u_start)))

    def covered_up_to(x: np.ndarray) -> np.ndarray:
        k = np.searchsorted(u_start, x, side="right") - 1
        inside = np.clip(x - u_start[np.maximum(k, 0)], 0, (u_end - u_start)[np.maximum(k, 0)])
        return np.where(k >= 0, before[np.maximum(k, 0)] + inside, 0.0)

    ends = np.maximum(seg_ends, seg_starts)
    return float(np.sum(covered_up_to(ends) - covered_up_to(seg_starts)))
