"""The overlap filter (ALM_SPEC §2) over one entry's windows, with NumPy."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from alm_spark.algorithm.segments import FloatArray, IntArray


@dataclass
class OverlapResult:
    """The overlap filter's result for one entry (spec §2).

    Attributes:
        kept: Indices of surviving windows, in ``(start, end)`` sorted order.
        filtered_windows: Indices of windows whose rounded pair survives, in window order.
    """

    kept: IntArray
    filtered_windows: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def compute_overlaps(
    window_end: FloatArray, window_start: FloatArray, threshold: float, target_duration: float
) -> OverlapResult:
    """The overlap filter (spec §2) over one entry's ``(end, start)`` window pairs.

    Args:
        window_end: ``last.end`` of each window, in window order.
        window_start: ``first.start`` of each window, in window order.
        threshold: ``overlap_percentage / 100``.
        target_duration: The filter's target duration.

    Returns:
        Surviving windows in sorted order, and the windows ``filtered_windows`` holds.
    """
    count = len(window_end)
    if count == 0:
        return OverlapResult(kept=np.zeros(0, dtype=np.int64))
    order = np.lexsort((window_end, window_start))  # stable: equal pairs keep window order
    s_start = window_start[order]
    s_end = window_end[order]
    s_dur = s_end - s_start
    s_diff = np.abs(s_dur - target_duration)

    # Candidate partners j of i: later in sorted order and starting before i ends.
    hi = np.maximum(np.searchsorted(s_start, s_end, side="left"), np.arange(1, count + 1))
    span = hi - np.arange(1, count + 1)
    pair_i = np.repeat(np.arange(count), span)
    pair_j = pair_i + 1 + (np.arange(len(pair_i)) - np.repeat(np.cumsum(span) - span, span))
    overlap = np.maximum(
        0.0, np.minimum(s_end[pair_i], s_end[pair_j]) - np.maximum(s_start[pair_i], s_start[pair_j])
    )
    smaller = np.minimum(s_dur[pair_i], s_dur[pair_j])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(smaller != 0, overlap / np.where(smaller != 0, smaller, 1.0), 0.0)
    hit = ratio >= threshold
    pair_i, pair_j = pair_i[hit], pair_j[hit]
    di, dj = s_diff[pair_i], s_diff[pair_j]
    i_wins = (di < dj) | ((di == dj) & (s_dur[pair_i] >= s_dur[pair_j]))

    removed = [False] * count
    starts = np.searchsorted(pair_i, np.arange(count + 1), side="left").tolist()
    partners = pair_j.tolist()
    wins = i_wins.tolist()
    for i in range(count):
        if removed[i]:
            continue
        for p in range(starts[i], starts[i + 1]):
            j = partners[p]
            if removed[j]:
                continue
            if wins[p]:
                removed[j] = True
            else:
                removed[i] = True
                break
    survivors = np.flatnonzero(~np.asarray(removed, dtype=np.bool_))
    kept = order[survivors]

    # Python's round(): the exact binary value rounded half-to-even, as the reference does.
    pairs = [
        (round(e, 6), round(s, 6))
        for e, s in zip(window_end.tolist(), window_start.tolist(), strict=True)
    ]
    rounded = {pairs[k] for k in kept.tolist()}
    matches = [k for k, pair in enumerate(pairs) if pair in rounded]
    return OverlapResult(kept=kept, filtered_windows=np.asarray(matches, dtype=np.int64))
