"""Report figures: accumulated per task on the executors, summed by Spark, read back.

Each task folds the entries it processed into a few histograms and per-key sums
(:class:`FigureAccumulator`) and emits them as small rows ``(metric, key, v0..v4)``.
Spark sums those rows by ``(metric, key)``; the driver only ever sees the sums
(one row per histogram bin or sample rate or rejection reason), which
:func:`assemble_report` turns into the ``report`` section of ``_metrics.json``.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from alm_spark.algorithm.encode import escape_lone_surrogates
from alm_spark.algorithm.render import LineOutcome
from alm_spark.config import BuilderConfig

VALUES = 5
DURATION_BINS = 40
SHARE_BINS = 20
MAX_SPEAKERS_SHOWN = 10
MAX_KEYS = 256  # distinct sample rates or rejection reasons kept per task; then "other"

_POSITIONS = re.compile(r"\[\d+\]")
_JSON_LOCATION = re.compile(r": line \d+ column \d+ \(char \d+\)")
_BYTE_DETAIL = re.compile(r"(not valid UTF-8): .*")


def reason_kind(error: str) -> str:
    """A rejection reason without positions, so that like reasons group together."""
    return _BYTE_DETAIL.sub(r"\1", _JSON_LOCATION.sub("", _POSITIONS.sub("[]", error)))


def duration_edges(builder: BuilderConfig) -> list[float]:
    """Histogram edges for window durations: the builder's allowed range."""
    edges: list[float] = np.linspace(
        builder.min_duration, builder.max_duration, DURATION_BINS + 1
    ).tolist()
    return edges


def _rate_key(rate: float) -> str:
    if isinstance(rate, int) or (math.isfinite(rate) and rate.is_integer()):
        return str(int(rate))
    return repr(rate)


@dataclass
class FigureRow:
    """One summed figure: a histogram bin, a sample rate's sums, a rejection reason."""

    metric: str
    key: str
    values: tuple[float, ...]


class FigureAccumulator:
    """Folds processed lines into report figures, for one task."""

    def __init__(self, builder: BuilderConfig) -> None:
        """Bins follow the builder's window-duration range."""
        self.edges = np.asarray(duration_edges(builder))
        self.durations = np.zeros(DURATION_BINS, dtype=np.int64)
        self.speakers = np.zeros(MAX_SPEAKERS_SHOWN + 1, dtype=np.int64)
        self.shares = np.zeros(SHARE_BINS, dtype=np.int64)
        self.rates: dict[str, list[float]] = defaultdict(lambda: [0.0] * VALUES)
        self.reasons: dict[str, int] = defaultdict(int)
        self.coverage = [0.0, 0.0]

    def add(self, outcome: LineOutcome) -> None:
        """Fold in one accepted line."""
        figures = outcome.figures
        if figures is None:
            return
        if figures.window_durations:
            bins = np.searchsorted(self.edges, figures.window_durations, side="right") - 1
            np.add.at(self.durations, np.clip(bins, 0, DURATION_BINS - 1), 1)
            speakers = np.minimum(figures.window_speakers, MAX_SPEAKERS_SHOWN)
            np.add.at(self.speakers, speakers, 1)
            share = np.nan_to_num(np.asarray(figures.dominant_share, dtype=float) * SHARE_BINS)
            shares = np.clip(share, 0, SHARE_BINS - 1).astype(int)
            np.add.at(self.shares, shares, 1)
        key = _rate_key(figures.sample_rate)
        if key not in self.rates and len(self.rates) >= MAX_KEYS:
            key = "other"
        sums = self.rates[key]
        sums[0] += 1
        sums[1] += outcome.durations.get("total_dur", 0.0)
        sums[2] += figures.filtered_coverage
        sums[3] += outcome.durations.get("filtered_dur", 0.0)
        sums[4] += outcome.counts.get("filtered_windows", 0)
        self.coverage[0] += figures.builder_coverage
        self.coverage[1] += figures.filtered_coverage

    def reject(self, error: str) -> None:
        """Count one rejected line by the kind of its reason."""
        kind = reason_kind(error)
        if kind not in self.reasons and len(self.reasons) >= MAX_KEYS:
            kind = "other"
        self.reasons[kind] += 1

    def rows(self) -> list[FigureRow]:
        """The task's figures as rows to be summed across tasks."""
        out = [
            FigureRow("window_duration", str(i), (float(c),))
            for i, c in enumerate(self.durations.tolist())
            if c
        ]
        out += [
            FigureRow("window_speakers", str(i), (float(c),))
            for i, c in enumerate(self.speakers.tolist())
            if c
        ]
        out += [
            FigureRow("dominant_share", str(i), (float(c),))
            for i, c in enumerate(self.shares.tolist())
            if c
        ]
        out += [FigureRow("sample_rate", k, tuple(v)) for k, v in self.rates.items()]
        out += [FigureRow("rejected", k, (float(c),)) for k, c in self.reasons.items()]
        out.append(FigureRow("coverage", "builder", (self.coverage[0],)))
        out.append(FigureRow("coverage", "filtered", (self.coverage[1],)))
        return out


# A task's sums may overflow a double (durations each finite, their sum not), so the
# staged figure records allow Infinity and NaN, which Spark's JSON reader reads back.
_FIGURE_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=True, separators=(",", ":"))


def figure_record(row: FigureRow) -> bytes:
    """A task's figure as the JSON record Spark sums (``metric, key, v0..``), as UTF-8."""
    values = {f"v{i}": v for i, v in enumerate(row.values)}
    text = _FIGURE_ENCODER.encode({"metric": row.metric, "key": row.key, **values})
    return escape_lone_surrogates(text).encode("utf-8")


def _count(value: float) -> int:
    """A summed count (a double in Spark); never infinite in practice, but never fatal."""
    return int(value) if math.isfinite(value) else 0


def mark_overflows(metrics: dict[str, Any]) -> dict[str, Any]:
    """Replace totals that overflowed a double with None, and name them.

    Every input line is finite, but a sum of finite durations can exceed the largest
    double: Spark and NumPy then give infinity (or NaN, when infinities of both signs
    meet), which JSON cannot hold.

    Args:
        metrics: The content of ``_metrics.json``.

    Returns:
        A copy where each non-finite float is None, with a top-level ``overflowed`` list
        of their dotted names (``audio_duration``, ``losses.dur_lost_win``, ...).
    """
    overflowed: list[str] = []

    def clean(value: Any, path: tuple[str, ...]) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            overflowed.append(".".join(path))
            return None
        if isinstance(value, dict):
            return {key: clean(item, (*path, str(key))) for key, item in value.items()}
        if isinstance(value, list):
            return [clean(item, (*path, str(i))) for i, item in enumerate(value)]
        return value

    cleaned: dict[str, Any] = clean(metrics, ())
    cleaned["overflowed"] = overflowed
    return cleaned


def sum_report_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of several commit steps summed by metric and key, as Spark sums one step's."""
    summed: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["metric"], row["key"])
        into = summed.setdefault(key, {"metric": row["metric"], "key": row["key"]})
        for i in range(VALUES):
            value = row.get(f"v{i}")
            if value is not None:
                into[f"v{i}"] = (into.get(f"v{i}") or 0) + value
    return list(summed.values())


def assemble_report(rows: Iterable[dict[str, Any]], builder: BuilderConfig) -> dict[str, Any]:
    """The report section of ``_metrics.json`` from summed rows.

    Args:
        rows: ``{"metric", "key", "v0".."v4"}`` sums, one per metric and key.
        builder: The run's builder settings (histogram edges).
    """
    durations = [0] * DURATION_BINS
    speakers = [0] * (MAX_SPEAKERS_SHOWN + 1)
    shares = [0] * SHARE_BINS
    rates: dict[str, dict[str, float]] = {}
    reasons: dict[str, int] = {}
    coverage = {"builder": 0.0, "filtered": 0.0}
    for row in rows:
        metric, key = row["metric"], row["key"]
        values = [float(row.get(f"v{i}") or 0.0) for i in range(VALUES)]
        if metric == "window_duration":
            durations[int(key)] = _count(values[0])
        elif metric == "window_speakers":
            speakers[int(key)] = _count(values[0])
        elif metric == "dominant_share":
            shares[int(key)] = _count(values[0])
        elif metric == "sample_rate":
            rates[key] = {
                "entries": _count(values[0]),
                "speech_seconds": values[1],
                "speech_in_filtered_seconds": values[2],
                "filtered_dur": values[3],
                "filtered_windows": _count(values[4]),
            }
        elif metric == "rejected":
            reasons[key] = _count(values[0])
        elif metric == "coverage":
            coverage[key] = values[0]

    def rate_order(item: tuple[str, Any]) -> tuple[int, float]:
        try:
            return (0, float(item[0]))
        except ValueError:
            return (1, 0.0)

    return {
        "window_duration": {"edges": duration_edges(builder), "counts": durations},
        "window_speakers": {
            "labels": [str(i) for i in range(MAX_SPEAKERS_SHOWN)] + [f"{MAX_SPEAKERS_SHOWN}+"],
            "counts": speakers,
        },
        "dominant_share": {
            "edges": [i / SHARE_BINS for i in range(SHARE_BINS + 1)],
            "counts": shares,
        },
        "sample_rates": dict(sorted(rates.items(), key=rate_order)),
        "rejected_reasons": dict(sorted(reasons.items(), key=lambda kv: -kv[1])),
        "coverage_seconds": coverage,
    }
