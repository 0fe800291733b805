"""The DataFrame engine's grouped-map logic as plain pandas functions, and back again.

Each function takes one entry's rows and returns rows, ``fn(key, pdf) -> pdf``, so it
runs and is tested without Spark; :mod:`alm_spark.engines.frames` wraps them with
``applyInPandas``. The window logic inside is :mod:`alm_spark.algorithm.builder`, the
same code the fused engine runs, so both engines agree by construction.

* :func:`build_entry`: an entry's exploded segments -> one row per builder window
  and one row of per-entry statistics (``kind`` tells them apart);
* :func:`filter_entry`: an entry's windows -> the reference's ``filtered_windows``,
  each marked ``filtered`` when its own pair survived the overlap filter (the others
  came back through rounded-pair matching, spec §2);
* :func:`rebuild_results`: those rows -> the builder and overlap results the renderer
  turns into the output line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from alm_spark.algorithm.builder import (
    BuildResult,
    LossRecord,
    Truncator,
    compute_windows,
    window_summary,
)
from alm_spark.algorithm.overlap import OverlapResult, compute_overlaps
from alm_spark.algorithm.segments import (
    SPEAKER_DURATION_SLOTS,
    SegmentTable,
    WindowParams,
    sequential_sum,
)
from alm_spark.config import BuilderConfig, OverlapConfig
from alm_spark.names import LOSS_COUNTERS

#: The typed fields of one segment, as :func:`segment_fields` extracts them.
SEGMENT_FIELDS = ("start", "end", "speaker", "has_speaker", "bandwidth", "word_ends", "words")
#: Columns of an exploded segment row besides the entry key.
SEGMENT_COLUMNS = ("audio_sample_rate", "segment", *SEGMENT_FIELDS)
#: Columns of a builder window row besides the entry key.
WINDOW_COLUMNS = (
    "window",
    "start",
    "end",
    "duration",
    "speakers",
    "speaker_durations",
    "first_segment",
    "last_segment",
    "truncated",
    "speech",
)
#: A kept window: a builder window plus whether its own pair survived the filter.
KEPT_COLUMNS = (*WINDOW_COLUMNS, "filtered")
#: Fields of one ``lost_windows`` item: whole segments ``index..stop-1``, then the
#: truncated part of segment ``stop`` when ``truncated``; ``next_seg`` is ``next_index``.
LOST_WINDOW_FIELDS = ("index", "stop", "truncated", "next_index")
#: Columns of an entry's statistics row besides the entry key.
STATS_COLUMNS = (
    "total_segments",
    "total_dur",
    "below_sample_rate",
    "truncation_events",
    *LOSS_COUNTERS,
    *(f"dur_{name}" for name in LOSS_COUNTERS),
    "lost_windows",
)
#: ``kind`` of :func:`build_entry`'s rows.
ROW_WINDOW = "window"
ROW_STATS = "stats"
BUILT_COLUMNS = ("kind", *WINDOW_COLUMNS, *STATS_COLUMNS)


def _double(value: Any) -> float:
    """A JSON number as a double; integers past the double range become infinities."""
    try:
        return float(value)
    except OverflowError:
        return math.copysign(math.inf, value)


def segment_fields(segment: dict[str, Any], bandwidth: float) -> dict[str, Any]:
    """The typed fields of a validated segment (see :data:`SEGMENT_FIELDS`).

    ``speaker`` is the label text or None; ``bandwidth`` is ``metrics.bandwidth``
    (0 when missing); ``word_ends`` and ``words`` are the words' ``end`` and ``word``
    values as flat lists, None without a ``words`` key. A ``word`` that is not text
    (only empty values are accepted, spec §4) reads as None: it never joins a text.
    """
    words = segment.get("words")
    speaker = segment.get("speaker")
    return {
        "start": float(segment["start"]),
        "end": float(segment["end"]),
        "speaker": speaker if isinstance(speaker, str) else None,
        "has_speaker": "speaker" in segment,
        "bandwidth": bandwidth,
        "word_ends": None if words is None else [_double(w["end"]) for w in words],
        "words": None
        if words is None
        else [w.get("word") if isinstance(w.get("word"), str) else None for w in words],
    }


def table_from_segments(pdf: pd.DataFrame) -> SegmentTable:
    """A :class:`SegmentTable` from one entry's exploded segment rows.

    Rows are sorted by ``segment`` (Spark keeps no row order through a shuffle); the
    row an outer explode leaves for an entry without segments is dropped.
    """
    rows = pdf[pdf["segment"].notna()].sort_values("segment", kind="stable")
    segments: list[dict[str, Any]] = []
    for start, end, ends, words in zip(
        rows["start"].tolist(),
        rows["end"].tolist(),
        rows["word_ends"].tolist(),
        rows["words"].tolist(),
        strict=True,
    ):
        segment: dict[str, Any] = {"start": start, "end": end}
        if ends is not None:
            segment["words"] = [
                {"end": e, "word": w} for e, w in zip(list(ends), list(words), strict=True)
            ]
        segments.append(segment)
    columns = (
        rows["start"].tolist(),
        rows["end"].tolist(),
        rows["bandwidth"].tolist(),
        rows["speaker"].tolist(),
        [bool(v) for v in rows["has_speaker"].tolist()],
    )
    return SegmentTable.from_columns(segments, columns)


def _sample_rate(pdf: pd.DataFrame) -> float:
    rates = pdf["audio_sample_rate"].dropna()
    return float(rates.iloc[0]) if len(rates) else 0.0


def build_entry(
    key: Sequence[Any], pdf: pd.DataFrame, key_names: Sequence[str], builder: BuilderConfig
) -> pd.DataFrame:
    """The builder (spec §1) over one entry's exploded segments.

    Args:
        key: The entry's key values, in ``key_names`` order.
        pdf: The entry's rows: :data:`SEGMENT_COLUMNS` (one row with a null
            ``segment`` for an entry without segments).
        key_names: Names of the key columns.
        builder: Builder settings.

    Returns:
        The key columns and :data:`BUILT_COLUMNS`: one ``window`` row per builder
        window (in window order) and one ``stats`` row.
    """
    params = WindowParams.from_builder(builder)
    table = table_from_segments(pdf)
    total_dur = sequential_sum(table.end - table.start)
    stats: dict[str, Any] = {
        "kind": ROW_STATS,
        "total_segments": table.size,
        "total_dur": total_dur,
        "below_sample_rate": False,
        "truncation_events": 0,
        **dict.fromkeys(LOSS_COUNTERS, 0),
        **{f"dur_{name}": 0.0 for name in LOSS_COUNTERS},
        "lost_windows": [],
    }
    rows: list[dict[str, Any]] = []
    if _sample_rate(pdf) < builder.min_sample_rate:
        stats.update(below_sample_rate=True, lost_sr=table.size, dur_lost_sr=total_dur)
    else:
        build = compute_windows(table, params)
        stats.update(build.counters)
        stats.update(build.durations_lost)
        stats["truncation_events"] = build.truncation_events
        stats["lost_windows"] = [
            {
                "index": loss.index,
                "stop": loss.stop,
                "truncated": loss.part is not None,
                "next_index": loss.next_index,
            }
            for loss in build.losses
        ]
        for w in range(build.window_count):
            part = build.parts[w]
            stop = int(build.stop[w])
            rows.append(
                {
                    "kind": ROW_WINDOW,
                    **window_summary(table, build, w),
                    "first_segment": int(build.first[w]),
                    "last_segment": stop if part is not None else stop - 1,
                    "truncated": part is not None,
                    "speech": float(build.speech[w]),
                }
            )
    rows.append(stats)
    # Every column of every row, None where a kind has no value (pandas would use NaN).
    columns = {name: [row.get(name) for row in rows] for name in BUILT_COLUMNS}
    frame = pd.DataFrame({name: pd.Series(v, dtype=object) for name, v in columns.items()})
    for name, value in zip(key_names, key, strict=True):
        frame[name] = value
    return frame[[*key_names, *BUILT_COLUMNS]]


def filter_entry(
    key: Sequence[Any], pdf: pd.DataFrame, key_names: Sequence[str], overlap: OverlapConfig
) -> pd.DataFrame:
    """The overlap filter (spec §2) over one entry's builder windows.

    Args:
        key: The entry's key values (unused: the rows carry them).
        pdf: The entry's window rows (the key columns and :data:`WINDOW_COLUMNS`).
        key_names: Names of the key columns.
        overlap: Overlap-filter settings.

    Returns:
        The rows of the entry's ``filtered_windows``, in window order, with
        :data:`KEPT_COLUMNS`: ``filtered`` is true for the windows whose pair is in
        the reference's ``filtered`` list.
    """
    del key
    windows = pdf.sort_values("window", kind="stable").reset_index(drop=True)
    result = compute_overlaps(
        windows["end"].to_numpy(dtype=np.float64),
        windows["start"].to_numpy(dtype=np.float64),
        overlap.threshold,
        overlap.target_duration,
    )
    kept = windows.iloc[result.filtered_windows].copy()
    kept["filtered"] = np.isin(result.filtered_windows, result.kept)
    return kept[[*key_names, *KEPT_COLUMNS]].reset_index(drop=True)


def rebuild_results(
    table: SegmentTable,
    builder: BuilderConfig,
    stats: dict[str, Any] | None,
    windows: Sequence[dict[str, Any]],
    kept: Sequence[dict[str, Any]],
) -> tuple[BuildResult, OverlapResult | None]:
    """The builder and overlap results of one entry, from its DataFrame rows.

    Truncated parts are cut again from the entry's own segments (the rows hold only
    where the cut falls), with the same :class:`~alm_spark.algorithm.builder.Truncator`.

    Args:
        table: The entry's segments, decoded from its line.
        builder: Builder settings (the cut position).
        stats: The entry's statistics row (:data:`STATS_COLUMNS`).
        windows: Its builder windows (:data:`WINDOW_COLUMNS`), any order.
        kept: Its kept windows (:data:`KEPT_COLUMNS`), any order.

    Raises:
        ValueError: When the entry has no statistics row (it was not built).
    """
    if stats is None:
        raise ValueError("the entry has no builder result")
    max_duration = builder.max_duration
    truncator = Truncator(table.segments)

    def cut(first: int, stop: int) -> dict[str, Any]:
        return truncator.part(stop, float(table.start[first] + max_duration))

    ordered = sorted(windows, key=lambda w: w["window"])
    first = [int(w["first_segment"]) for w in ordered]
    stop = [int(w["last_segment"]) + (0 if w["truncated"] else 1) for w in ordered]
    parts = [
        cut(f, s) if w["truncated"] else None for f, s, w in zip(first, stop, ordered, strict=True)
    ]
    losses = [
        LossRecord(
            index=int(loss["index"]),
            stop=int(loss["stop"]),
            part=cut(int(loss["index"]), int(loss["stop"])) if loss["truncated"] else None,
            next_index=int(loss["next_index"]),
        )
        for loss in stats["lost_windows"] or []
    ]
    durations = [list(w["speaker_durations"]) for w in ordered]
    build = BuildResult(
        first=np.asarray(first, dtype=np.int64),
        stop=np.asarray(stop, dtype=np.int64),
        parts=parts,
        speaker_durations=np.asarray(durations, dtype=np.float64).reshape(
            len(ordered), SPEAKER_DURATION_SLOTS
        ),
        speakers=np.asarray([len(w["speakers"]) for w in ordered], dtype=np.int64),
        speech=np.asarray([w["speech"] for w in ordered], dtype=np.float64),
        window_start=np.asarray([w["start"] for w in ordered], dtype=np.float64),
        window_end=np.asarray([w["end"] for w in ordered], dtype=np.float64),
        losses=losses,
        counters={name: int(stats[name]) for name in LOSS_COUNTERS},
        durations_lost={f"dur_{n}": float(stats[f"dur_{n}"]) for n in LOSS_COUNTERS},
        truncation_events=int(stats["truncation_events"]),
    )
    if not ordered:
        return build, None
    survivors = sorted(
        (w for w in kept if w["filtered"]), key=lambda w: (w["start"], w["end"], w["window"])
    )
    overlap = OverlapResult(
        kept=np.asarray([w["window"] for w in survivors], dtype=np.int64),
        filtered_windows=np.asarray(sorted(w["window"] for w in kept), dtype=np.int64),
    )
    return build, overlap
