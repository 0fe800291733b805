"""One manifest line processed: decoded, validated, windows built and filtered, figures.

:meth:`LineProcessor.process` returns a :class:`ProcessedLine`, a value; turning it
into output bytes is :mod:`alm_spark.algorithm.render`'s job. The DataFrame engine
computes the builder's and the filter's results with Spark and hands them in, so the
same value comes out of both engines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alm_spark.algorithm.builder import BuildResult, compute_windows
from alm_spark.algorithm.coverage import covered_seconds
from alm_spark.algorithm.entry import RejectedLine, decode_line, parse_entry
from alm_spark.algorithm.overlap import OverlapResult, compute_overlaps
from alm_spark.algorithm.segments import SegmentTable, WindowParams, sequential_sum
from alm_spark.config import BuilderConfig, OverlapConfig
from alm_spark.names import METRIC_COUNTS, METRIC_DURATIONS

#: An entry's builder and overlap results.
Results = tuple[BuildResult, OverlapResult | None]
#: Supplies an entry's results given its segments; the DataFrame engine rebuilds them
#: from its rows instead of computing them again.
ResultsProvider = Callable[[SegmentTable], Results]


@dataclass
class EntryFigures:
    """What the report needs from one entry, beyond the counters.

    Attributes:
        sample_rate: ``audio_sample_rate`` as given (0 when missing).
        window_durations: Duration of each window in ``filtered_windows``.
        window_speakers: Distinct speakers in each of those windows.
        dominant_share: The main speaker's share of each window's speech.
        builder_coverage: Seconds of speech (segments) inside at least one builder window.
        filtered_coverage: Seconds of speech inside at least one filtered window.
    """

    sample_rate: float = 0.0
    window_durations: list[float] = field(default_factory=list)
    window_speakers: list[int] = field(default_factory=list)
    dominant_share: list[float] = field(default_factory=list)
    builder_coverage: float = 0.0
    filtered_coverage: float = 0.0


@dataclass
class ProcessedLine:
    """A valid line's entry, its windows and its figures.

    Attributes:
        data: The decoded entry.
        table: Its segments, validated.
        counts: Integer figures (see ``METRIC_COUNTS``).
        durations: Float figures in seconds (see ``METRIC_DURATIONS``).
        figures: What the report needs.
        build: The builder's windows; None when the entry is below the sample rate.
        overlap: The overlap filter's result; None when there is no window (or no build).
    """

    data: dict[str, Any]
    table: SegmentTable
    counts: dict[str, int]
    durations: dict[str, float]
    figures: EntryFigures
    build: BuildResult | None = None
    overlap: OverlapResult | None = None

    @property
    def has_windows(self) -> bool:
        """Whether the overlap filter ran (the entry has builder windows)."""
        return self.build is not None and self.build.window_count > 0 and self.overlap is not None

    def filtered(self) -> tuple[BuildResult, OverlapResult]:
        """The builder's and the filter's results of an entry that has windows."""
        if self.build is None or self.overlap is None:
            raise ValueError("the entry has no windows")
        return self.build, self.overlap


def rejection_reason(err: Exception) -> tuple[str, bool]:
    """Why a line is rejected, and whether the cause is a bug here rather than the line.

    Args:
        err: What processing or rendering the line raised.
    """
    if isinstance(err, RejectedLine):
        return str(err), False
    if isinstance(err, OverflowError) or (
        isinstance(err, ValueError) and "JSON compliant" in str(err)
    ):
        return "a number is out of double range", False
    return f"internal error (please report): {type(err).__name__}: {err}", True


class LineProcessor:
    """Processes lines with one builder and overlap configuration (spec §1, §2)."""

    def __init__(self, builder: BuilderConfig, overlap: OverlapConfig) -> None:
        """Capture the settings in the form the window logic uses."""
        self.params = WindowParams.from_builder(builder)
        self.min_sample_rate = builder.min_sample_rate
        self.threshold = overlap.threshold
        self.target_duration = overlap.target_duration

    def process(self, text: str, results: ResultsProvider | None = None) -> ProcessedLine:
        """Decode, validate, build windows and filter overlaps for one non-blank line.

        Args:
            text: The line.
            results: Supplies the entry's builder and overlap results when they were
                computed elsewhere; computed here when None.

        Raises:
            RejectedLine: When the line is not a valid entry.
        """
        data = decode_line(text)
        table = parse_entry(data).table
        total_dur = sequential_sum(table.end - table.start)
        counts = dict.fromkeys(METRIC_COUNTS, 0)
        durations = dict.fromkeys(METRIC_DURATIONS, 0.0)
        counts["total_segments"] = table.size
        durations["total_dur"] = total_dur
        rate = data.get("audio_sample_rate", 0)
        line = ProcessedLine(data, table, counts, durations, EntryFigures(sample_rate=rate))
        if rate < self.min_sample_rate:
            counts["below_sample_rate"] = 1
            counts["lost_sr"] = table.size
            durations["dur_lost_sr"] = total_dur
            return line
        line.build, line.overlap = (results or self._windows)(table)
        build = line.build
        counts.update(build.counters)
        durations.update(build.durations_lost)
        counts["truncation_events"] = build.truncation_events
        counts["windows"] = build.window_count
        if line.has_windows:
            self._add_filtered(line)
        return line

    def _windows(self, table: SegmentTable) -> Results:
        build = compute_windows(table, self.params)
        if not build.window_count:
            return build, None
        ends, starts = build.window_end, build.window_start
        return build, compute_overlaps(ends, starts, self.threshold, self.target_duration)

    @staticmethod
    def _add_filtered(line: ProcessedLine) -> None:
        """The overlap filter's figures and the report's, for an entry with windows."""
        (build, overlap), figures = line.filtered(), line.figures
        ends, starts = build.window_end, build.window_start
        window_durs = ends - starts
        line.counts["filtered_windows"] = len(overlap.filtered_windows)
        line.counts["filtered_pairs"] = len(overlap.kept)
        line.durations["total_dur_window"] = sequential_sum(window_durs)
        line.durations["filtered_dur"] = sequential_sum(window_durs[overlap.kept])
        chosen = overlap.filtered_windows
        figures.window_durations = window_durs[chosen].tolist()
        figures.window_speakers = build.speakers[chosen].tolist()
        speech = build.speech[chosen]
        top = build.speaker_durations[chosen, 0]
        share = np.divide(top, speech, out=np.zeros_like(top), where=speech > 0)
        figures.dominant_share = share.tolist()
        table = line.table
        figures.builder_coverage = covered_seconds(table.start, table.end, starts, ends)
        figures.filtered_coverage = covered_seconds(
            table.start, table.end, starts[chosen], ends[chosen]
        )
