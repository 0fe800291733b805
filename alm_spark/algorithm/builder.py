"""Window building (ALM_SPEC §1) with NumPy.

Pure Python/NumPy, no Spark import: the per-entry logic the job runs on executors,
usable and testable on its own.

The spec describes a nested loop: every start segment grows a window until a
candidate fails a check. Here each stopping condition is computed for all start
segments at once:

* the first low-bandwidth segment at or after ``i`` (a reverse running minimum);
* the first segment whose ``end - start[i]`` exceeds ``max_duration``
  (binary lifting over a sparse table of running maxima of ``end``);
* the first segment that brings a sixth speaker label or a ``"no-speaker"`` label
  (the (K+1)-th smallest next-occurrence over the labels).

The window stops at the smallest of the three; ties resolve in the spec's check
order (bandwidth, duration, speakers). Speaker durations are accumulated with
``np.add.at`` in member order, so every sum is the same left-to-right double
addition the reference performs. Never use ``sum()`` on floats here: Python 3.12+
compensates it and the reference does not.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from alm_spark.algorithm.segments import (
    MIN_SEGMENTS_PER_WINDOW,
    SPEAKER_DURATION_SLOTS,
    BoolArray,
    FloatArray,
    IntArray,
    SegmentTable,
    WindowParams,
    next_true,
    sequential_sum,
)
from alm_spark.names import LOSS_COUNTERS

# Upper bound on elements in one temporary (labels x positions, or window members);
# larger problems are processed in chunks to keep memory flat.
_CHUNK_ELEMENTS = 1 << 22


@dataclass
class LossRecord:
    """A rejected window start (one ``stats.lost_win_full_data`` item).

    Attributes:
        index: The start segment ``i``.
        stop: Whole segments ``i..stop-1`` are in the window.
        part: The truncated part appended after them, unstripped, or None.
        next_index: Index of ``next_seg``.
    """

    index: int
    stop: int
    part: dict[str, Any] | None
    next_index: int


@dataclass
class BuildResult:
    """The builder's result for one entry whose sample rate passed the gate.

    Kept windows are columns in start order: whole segments ``first[w]..stop[w]-1``
    then ``parts[w]`` (a truncated part) when not None.
    """

    first: IntArray
    stop: IntArray
    parts: list[dict[str, Any] | None]
    speaker_durations: FloatArray
    speakers: IntArray
    speech: FloatArray
    window_start: FloatArray
    window_end: FloatArray
    losses: list[LossRecord]
    counters: dict[str, int]
    durations_lost: dict[str, float]
    truncation_events: int

    @property
    def window_count(self) -> int:
        """Number of kept windows."""
        return len(self.first)


def _first_duration_overflow(
    start: FloatArray, end: FloatArray, origins: IntArray, max_duration: float
) -> IntArray:
    """First ``c >= i`` with ``end[c] - start[i] > max_duration``, for each origin ``i``.

    ``x - s > M`` is monotone in ``x``, so the answer is where the running maximum of
    ``end`` from ``i`` first exceeds; binary lifting over a sparse table of range
    maxima finds it for all origins in O(log n) vectorized steps.
    """
    n = len(end)
    levels = [end]
    width = 1
    while width * 2 <= n:
        prev = levels[-1]
        levels.append(np.maximum(prev[:-width], prev[width:]))
        width *= 2
    pos = origins.copy()
    running = np.full(len(origins), -np.inf)
    origin_start = start[origins]
    for level in range(len(levels) - 1, -1, -1):
        span = 1 << level
        table = levels[level]
        can = pos + span <= n
        if not can.any():
            continue
        cand = np.where(can, pos, 0)
        merged = np.maximum(running, table[cand])
        ok = can & ((merged - origin_start) <= max_duration)
        running = np.where(ok, merged, running)
        pos = np.where(ok, pos + span, pos)
    return pos


def _first_label_overflow(label: IntArray, n_labels: int, max_speakers: int) -> IntArray:
    """First ``c >= i`` where labels ``i..c`` hold more than ``max_speakers`` distinct ids.

    For each position the (K+1)-th smallest "next occurrence" over all labels is where
    the (K+1)-th distinct label enters. Chunked so labels x positions stays bounded.
    """
    n = len(label)
    if n_labels <= max_speakers:
        return np.full(n, n, dtype=np.int64)
    if n_labels * n > _CHUNK_ELEMENTS:
        return _scan_label_overflow(label, max_speakers)
    positions = np.arange(n, dtype=np.int64)
    occurrences = [np.flatnonzero(label == lab) for lab in range(n_labels)]
    result = np.empty(n, dtype=np.int64)
    chunk = max(1, _CHUNK_ELEMENTS // n_labels)
    for lo in range(0, n, chunk):
        pos = positions[lo : lo + chunk]
        nxt = np.empty((n_labels, len(pos)), dtype=np.int64)
        for lab, occ in enumerate(occurrences):
            if len(occ) == 0:
                nxt[lab] = n
                continue
            k = np.searchsorted(occ, pos, side="left")
            nxt[lab] = np.where(k < len(occ), occ[np.minimum(k, len(occ) - 1)], n)
        result[lo : lo + chunk] = np.partition(nxt, max_speakers, axis=0)[max_speakers]
    return result


def _scan_label_overflow(label: IntArray, max_speakers: int) -> IntArray:
    """Same as :func:`_first_label_overflow`, by a two-pointer scan: O(n) for any label count."""
    labels = label.tolist()
    n = len(labels)
    out = [n] * n
    counts: dict[int, int] = {}
    c = 0  # window [i, c) holds at most max_speakers distinct labels
    for i in range(n):
        c = max(c, i)
        while c < n:
            lab = labels[c]
            if lab >= 0:
                if lab not in counts and len(counts) == max_speakers:
                    break
                counts[lab] = counts.get(lab, 0) + 1
            c += 1
        out[i] = c
        if c > i and labels[i] >= 0:
            left = counts[labels[i]] - 1
            if left:
                counts[labels[i]] = left
            else:
                del counts[labels[i]]
    return np.asarray(out, dtype=np.int64)


def _speaker_stops(table: SegmentTable, params: WindowParams) -> IntArray:
    """First candidate at or after each position that fails the spk() check."""
    nospk = table.no_speaker_label
    is_nospk = table.label == nospk if nospk >= 0 else np.zeros(table.size, dtype=np.bool_)
    if params.strips_speaker:
        # Window copies carry no speaker: only the candidate's own label counts.
        fails = is_nospk | ((table.label >= 0) & (params.max_speakers < 1))
        return next_true(fails)
    overflow = _first_label_overflow(table.label, len(table.label_names), params.max_speakers)
    return np.minimum(next_true(is_nospk), overflow)


def truncate_segment(segment: dict[str, Any], cut: float) -> dict[str, Any]:
    """The spec's ``part``: a shallow copy cut at ``cut`` on a word boundary."""
    kept = [w for w in segment.get("words", ()) if w["end"] <= cut]
    part = dict(segment)
    part["words"] = kept
    part["text"] = " ".join([w["word"] for w in kept if w.get("word")])
    part["end"] = kept[-1]["end"] if kept else segment["start"]
    return part


class Truncator:
    """Truncated parts for one entry, sharing work between window starts.

    A long segment is cut by every window start that reaches it. When its word ends
    are in order (the usual case) the kept words are a prefix, found by bisection,
    and starts that keep the same prefix share one part object.
    """

    def __init__(self, segments: list[dict[str, Any]]) -> None:
        self.segments = segments
        self.words: dict[int, tuple[list[Any], list[str], list[int]] | None] = {}
        self.parts: dict[tuple[int, int], dict[str, Any]] = {}

    def _prefix_index(self, c: int) -> tuple[list[Any], list[str], list[int]] | None:
        if c not in self.words:
            words = self.segments[c].get("words", [])
            ends = [w["end"] for w in words]
            if all(a <= b for a, b in pairwise(ends)):
                tokens: list[str] = []
                counts = [0]
                for w in words:
                    if w.get("word"):
                        tokens.append(w["word"])
                    counts.append(len(tokens))
                self.words[c] = (ends, tokens, counts)
            else:
                self.words[c] = None
        return self.words[c]

    def part(self, c: int, cut: float) -> dict[str, Any]:
        """The part of segment ``c`` that ends at or before ``cut`` (spec §1 truncation)."""
        index = self._prefix_index(c)
        if index is None:
            return truncate_segment(self.segments[c], cut)
        ends, tokens, counts = index
        k = bisect_right(ends, cut)
        part = self.parts.get((c, k))
        if part is None:
            segment = self.segments[c]
            kept = segment.get("words", [])[:k]
            part = dict(segment)
            part["words"] = kept
            part["text"] = " ".join(tokens[: counts[k]])
            part["end"] = kept[-1]["end"] if kept else segment["start"]
            self.parts[(c, k)] = part
        return part


def compute_windows(table: SegmentTable, params: WindowParams) -> BuildResult:
    """Run the builder's window loop (spec §1 step 3) over one entry's segments.

    Args:
        table: The entry's segments.
        params: Builder settings.

    Returns:
        Kept windows, loss records, loss counters and the truncation count.
    """
    n = table.size
    start, end = table.start, table.end
    low_bw = table.bandwidth < params.min_bandwidth
    origins = np.flatnonzero(~low_bw).astype(np.int64)

    stop_bw = next_true(low_bw)[origins]
    stop_dur = _first_duration_overflow(start, end, origins, params.max_duration)
    stop_spk = _speaker_stops(table, params)[origins]
    stop = np.minimum(np.minimum(stop_bw, stop_dur), stop_spk)
    stop_clipped = np.minimum(stop, n - 1)
    spans, parts, truncation_events = _truncated_parts(
        table, params, origins, (stop, stop_bw, stop_dur, stop_spk)
    )
    appended, part_end = spans.appended, spans.part_end

    whole = stop - origins
    last_whole_end = end[np.maximum(stop - 1, 0)]
    window_end = np.where(appended, part_end, np.where(whole > 0, last_whole_end, end[origins]))
    window_dur = window_end - start[origins]
    members = whole + appended
    lost = ~((params.min_duration <= window_dur) & (window_dur <= params.max_duration))
    lost |= members < MIN_SEGMENTS_PER_WINDOW
    if params.strips_metrics and params.min_bandwidth > 0:
        lost |= members > 0

    candidates = np.flatnonzero(~lost)
    durations, n_speakers, has_nospk, speech = _speaker_durations(table, params, spans[candidates])
    spk_ok = (params.min_speakers <= n_speakers) & (n_speakers <= params.max_speakers) & ~has_nospk
    kept = candidates[spk_ok]
    lost_spk = candidates[~spk_ok]

    lost_idx = np.flatnonzero(lost)
    next_index = stop_clipped[lost_idx]
    counters, durations_lost = _tally_losses(
        table, low_bw, origins[lost_spk], origins[lost_idx], next_index
    )
    losses = [
        LossRecord(index=int(origins[k]), stop=int(stop[k]), part=parts.get(k), next_index=int(nx))
        for k, nx in zip(lost_idx.tolist(), next_index.tolist(), strict=True)
    ]
    return BuildResult(
        first=origins[kept],
        stop=stop[kept],
        parts=[parts.get(k) for k in kept.tolist()],
        speaker_durations=durations[spk_ok],
        speakers=n_speakers[spk_ok],
        speech=speech[spk_ok],
        window_start=start[origins[kept]],
        window_end=window_end[kept],
        losses=losses,
        counters=counters,
        durations_lost=durations_lost,
        truncation_events=truncation_events,
    )


def _truncated_parts(
    table: SegmentTable,
    params: WindowParams,
    origins: IntArray,
    stops: tuple[IntArray, IntArray, IntArray, IntArray],
) -> tuple[_Spans, dict[int, dict[str, Any]], int]:
    """Every start's window members with its truncated part, if any (spec §1 truncation).

    Args:
        table: The entry's segments.
        params: Builder settings.
        origins: The window starts.
        stops: Each start's stop, then its stops by bandwidth, duration and speakers.

    Returns:
        The spans, the parts by start index, and how many starts took the truncation
        branch (``truncation_events``, parts appended or not).
    """
    stop, stop_bw, stop_dur, stop_spk = stops
    start = table.start
    # The truncation branch: the stop candidate failed on duration (checked after bandwidth).
    truncating = (stop < table.size) & (stop != stop_bw) & (stop == stop_dur) & params.truncation
    cut = start[origins] + params.max_duration
    truncating &= start[np.minimum(stop, table.size - 1)] < cut
    count = len(origins)
    spans = _Spans(origins, stop, np.zeros(count, dtype=np.bool_), np.full(count, np.nan))
    parts: dict[int, dict[str, Any]] = {}
    truncator = Truncator(table.segments)
    for k in np.flatnonzero(truncating).tolist():
        c = int(stop[k])
        # spk(window + [part]) has the candidate's label set: it fails iff the candidate does.
        if stop_spk[k] != c:
            part = truncator.part(c, float(cut[k]))
            parts[k] = part
            spans.appended[k] = True
            spans.part_end[k] = float(part["end"])
    return spans, parts, int(truncating.sum())


def _tally_losses(
    table: SegmentTable,
    low_bw: BoolArray,
    spk_lost: IntArray,
    win_lost: IntArray,
    next_index: IntArray,
) -> tuple[dict[str, int], dict[str, float]]:
    """Loss counters and their durations (sums of the start segments', in start order).

    Args:
        table: The entry's segments.
        low_bw: Segments below the bandwidth minimum (lost_bw starts).
        spk_lost: Starts whose window failed the speaker check.
        win_lost: Starts with a window loss.
        next_index: ``next_seg`` of each window loss.
    """
    nospk = table.no_speaker_label
    next_no_speaker = ~table.has_speaker_key[next_index]
    if nospk >= 0:
        next_no_speaker |= table.label[next_index] == nospk
    next_low_bw = ~next_no_speaker & low_bw[next_index]
    groups = {
        "lost_bw": np.flatnonzero(low_bw),
        "lost_sr": np.zeros(0, dtype=np.int64),
        "lost_spk": spk_lost,
        "lost_win": win_lost,
        "lost_no_spkr": win_lost[next_no_speaker],
        "lost_next_seg_bm": win_lost[next_low_bw],
    }
    dur = table.end - table.start
    counters = {name: len(groups[name]) for name in LOSS_COUNTERS}
    durations = {f"dur_{name}": sequential_sum(dur[groups[name]]) for name in LOSS_COUNTERS}
    return counters, durations


@dataclass
class _Spans:
    """Windows' members.

    Positions ``first[w]..stop[w]-1``, plus position ``stop[w]`` when a truncated part
    ending at ``part_end[w]`` was appended (``appended[w]``).
    """

    first: IntArray
    stop: IntArray
    appended: BoolArray
    part_end: FloatArray

    def __getitem__(self, which: IntArray) -> _Spans:
        return _Spans(
            self.first[which], self.stop[which], self.appended[which], self.part_end[which]
        )


def _speaker_durations(
    table: SegmentTable, params: WindowParams, spans: _Spans
) -> tuple[FloatArray, IntArray, BoolArray, FloatArray]:
    """Speaker figures of each window: spk() top 5, label count, "no-speaker", total.

    A truncated part has its segment's label and a shorter duration.
    """
    first, stop, appended, part_end = spans.first, spans.stop, spans.appended, spans.part_end
    count = len(first)
    out = np.zeros((count, SPEAKER_DURATION_SLOTS), dtype=np.float64)
    n_speakers = np.zeros(count, dtype=np.int64)
    has_nospk = np.zeros(count, dtype=np.bool_)
    speech = np.zeros(count, dtype=np.float64)  # summed speaker time, for reporting only
    if count == 0 or params.strips_speaker:
        return out, n_speakers, has_nospk, np.zeros(count, dtype=np.float64)
    lengths = stop - first + appended
    n_labels = max(len(table.label_names), 1)
    nospk = table.no_speaker_label
    bounds = np.concatenate(([0], np.cumsum(lengths)))
    lo = 0
    while lo < count:
        hi = int(np.searchsorted(bounds, bounds[lo] + _CHUNK_ELEMENTS, side="right")) - 1
        hi = min(max(hi, lo + 1), count)
        sl = slice(lo, hi)
        seg_len = lengths[sl]
        win = np.repeat(np.arange(lo, hi, dtype=np.int64), seg_len)
        offsets = np.arange(len(win), dtype=np.int64) - np.repeat(
            bounds[lo:hi] - bounds[lo], seg_len
        )
        pos = np.repeat(first[sl], seg_len) + offsets
        values = table.end[pos] - table.start[pos]
        is_part = np.repeat(appended[sl], seg_len) & (pos == np.repeat(stop[sl], seg_len))
        if is_part.any():
            values = np.where(is_part, part_end[win] - table.start[pos], values)
        lab = table.label[pos]
        counted = lab >= 0
        keys = win[counted] * n_labels + lab[counted]
        uniq, inverse = np.unique(keys, return_inverse=True)
        acc = np.zeros(len(uniq), dtype=np.float64)
        np.add.at(acc, inverse, values[counted])  # in member order: plain left-to-right sums
        key_win = uniq // n_labels
        n_speakers += np.bincount(key_win, minlength=count)
        speech += np.bincount(key_win, weights=acc, minlength=count)
        if nospk >= 0:
            has_nospk[key_win[(uniq % n_labels) == nospk]] = True
        order = np.lexsort((-acc, key_win))
        ranked_win = key_win[order]
        first_of_win = np.searchsorted(ranked_win, ranked_win, side="left")
        rank = np.arange(len(order)) - first_of_win
        top = rank < SPEAKER_DURATION_SLOTS
        out[ranked_win[top], rank[top]] = acc[order][top]
        lo = hi
    return out, n_speakers, has_nospk, speech


def speaker_totals(
    table: SegmentTable, first: int, stop: int, part: dict[str, Any] | None
) -> dict[str, float]:
    """spk() of one window: label to summed duration, in member order (spec §1).

    Members are segments ``first..stop-1`` and, when not None, the truncated ``part``
    of segment ``stop``. Sums are the same left-to-right additions as the builder's.
    """
    totals: dict[str, float] = {}
    labels = table.label.tolist()
    starts, ends = table.start.tolist(), table.end.tolist()
    members = [(pos, ends[pos] - starts[pos]) for pos in range(first, stop)]
    if part is not None:
        members.append((stop, float(part["end"]) - starts[stop]))
    for pos, duration in members:
        if labels[pos] >= 0:
            name = table.label_names[labels[pos]]
            totals[name] = totals.get(name, 0.0) + duration
    return totals


def window_summary(table: SegmentTable, build: BuildResult, w: int) -> dict[str, Any]:
    """What describes kept window ``w`` of an entry, as plain values.

    ``window``, ``start``, ``end`` (the truncated end when its last segment was cut),
    ``duration``, ``speakers`` (:func:`speaker_totals`) and ``speaker_durations`` (the
    reference's top-5 list).
    """
    start, end = float(build.window_start[w]), float(build.window_end[w])
    return {
        "window": w,
        "start": start,
        "end": end,
        "duration": end - start,
        "speakers": speaker_totals(table, int(build.first[w]), int(build.stop[w]), build.parts[w]),
        "speaker_durations": build.speaker_durations[w].tolist(),
    }
