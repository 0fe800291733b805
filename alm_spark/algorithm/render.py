"""One manifest line in, one output line (or a rejection) out.

Decode and validate the line (:mod:`alm_spark.algorithm.entry`), build windows and filter
overlaps (:mod:`alm_spark.algorithm.windows`), then render the output object as UTF-8 JSON.

Rendering writes JSON bytes directly: each stripped segment is serialized once and
its bytes reused in every window, filtered window and loss record that holds it,
which is most of an output line. Keys keep the reference's order (input keys, then
``windows``, ``stats``, ``truncation_events``, then the overlap keys); values the
job does not interpret are re-serialized from the decoded input, unchanged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from json import encoder as json_encoder
from typing import Any

import numpy as np

from alm_spark.algorithm.entry import RejectedLine, decode_line, nesting_room, parse_entry
from alm_spark.algorithm.windows import (
    BuildResult,
    OverlapResult,
    SegmentTable,
    WindowParams,
    compute_overlaps,
    compute_windows,
    sequential_sum,
    window_summary,
)
from alm_spark.config import BuilderConfig, OverlapConfig
from alm_spark.names import LOSS_COUNTERS, LOST_WINDOW_MODES, METRIC_COUNTS, METRIC_DURATIONS

#: Supplies an entry's builder and overlap results, given its segments; the DataFrame
#: engine rebuilds them from its rows instead of computing them again.
ResultsProvider = Callable[[SegmentTable], tuple[BuildResult, OverlapResult | None]]

# The reference writer's form (ensure_ascii=False), with compact separators.
# allow_nan=False: a number such as 1e999 decodes to infinity, which JSON cannot hold.
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, check_circular=False, separators=(",", ":")
)
# JSONEncoder.encode builds a C encoder on every call; one persistent encoder saves
# a fifth of the cost of the ~1,000 segment encodings per entry.
_C_MAKE_ENCODER = getattr(json_encoder, "c_make_encoder", None)
_C_ENCODE = (
    _C_MAKE_ENCODER(
        None, _ENCODER.default, json_encoder.encode_basestring, None, ":", ",", False, False, False
    )
    if _C_MAKE_ENCODER is not None
    else None
)
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

# Overlap keys in the order the reference adds them; defaults for entries without windows.
_OVERLAP_DEFAULTS = (
    ("filtered_windows", b"[]"),
    ("filtered_dur", b"0.0"),
    ("filtered_dur_list", b"[]"),
    ("total_dur_window", b"0.0"),
    ("total_dur_list_window", b"[]"),
    ("total_dur_list_window_timestamps", b"[]"),
    ("filtered", b"[]"),
    ("manifest_filepath", b"null"),
    ("swift_filepath", b"null"),
)


def escape_lone_surrogates(text: str) -> str:
    r"""Escape lone surrogates in JSON text so it encodes as UTF-8 with the same value.

    ``"\\ud800"`` in an input line decodes to a lone surrogate, which UTF-8 cannot hold.
    """
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def dumps(value: Any) -> bytes:
    """A JSON value as compact UTF-8 bytes.

    Raises:
        ValueError: When the value holds an infinite or NaN float.
    """
    text = "".join(_C_ENCODE(value, 0)) if _C_ENCODE is not None else _ENCODER.encode(value)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return escape_lone_surrogates(text).encode("utf-8")


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


@dataclass
class LineOutcome:
    """What became of one non-blank line.

    Attributes:
        output: The output line as UTF-8 JSON, or None when rejected.
        error: The rejection reason, or None when accepted.
        counts: Integer figures of the entry (see ``METRIC_COUNTS``).
        durations: Float figures of the entry (see ``METRIC_DURATIONS``).
        internal: The rejection comes from a bug in this package, not from the line.
        lost_windows: With ``lost_window_details="separate"``, the entry's
            ``_lost_windows/`` record.
        figures: Figures for the report.
        window_rows: With ``windows_table``, one ``_windows/`` record (JSON) per
            window of ``filtered_windows``.
    """

    output: bytes | None = None
    error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    internal: bool = False
    lost_windows: bytes | None = None
    figures: EntryFigures | None = None
    window_rows: list[bytes] = field(default_factory=list)


def _finite(value: Any) -> float | None:
    """A JSON number as a finite double, else None (text, booleans, 1e999)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if number - number == 0 else None


def _list(items: list[bytes]) -> bytes:
    return b"[" + b",".join(items) + b"]"


def _rows(matrix: list[list[float]]) -> list[bytes]:
    """Each row of a float matrix as JSON, with one encoder call for the whole matrix."""
    if not matrix:
        return []
    return [b"[" + row + b"]" for row in dumps(matrix)[2:-2].split(b"],[")]


_KEYS: dict[str, bytes] = {}


def _key(name: str) -> bytes:
    """An object key as JSON; keys repeat on every line, so they are encoded once."""
    encoded = _KEYS.get(name)
    if encoded is None:
        encoded = dumps(name)
        if len(_KEYS) < 4096:
            _KEYS[name] = encoded
    return encoded


def rejection_reason(err: Exception) -> tuple[str, bool]:
    """Why a line is rejected, and whether the cause is a bug here rather than the line.

    Args:
        err: What processing the line raised.
    """
    if isinstance(err, RejectedLine):
        return str(err), False
    if isinstance(err, OverflowError) or (
        isinstance(err, ValueError) and "JSON compliant" in str(err)
    ):
        return "a number is out of double range", False
    return f"internal error (please report): {type(err).__name__}: {err}", True


class EntryRenderer:
    """Processes manifest lines with one builder and overlap configuration.

    Cheap to build; build one per task and call :meth:`process` per line.
    """

    def __init__(
        self,
        builder: BuilderConfig,
        overlap: OverlapConfig,
        lost_windows: str = "inline",
        *,
        windows_table: bool = False,
        audio_path_field: str | None = None,
    ) -> None:
        """Capture the settings.

        Args:
            builder: Builder parameters (spec §1).
            overlap: Overlap-filter parameters (spec §2).
            lost_windows: ``inline`` keeps ``stats.lost_win_full_data`` (the reference's
                format); ``separate`` moves it to a record keyed by source and line;
                ``drop`` leaves it out.
            windows_table: Also render one ``_windows/`` row per filtered window
                (:attr:`LineOutcome.window_rows`); needs the line's key.
            audio_path_field: Also carry this manifest field in window rows, as
                ``audio_path`` (the audio step's input; ``audio.path_field``).
        """
        if lost_windows not in LOST_WINDOW_MODES:
            raise ValueError(f"lost_windows must be one of {LOST_WINDOW_MODES}")
        self.lost_windows = lost_windows
        self.windows_table = windows_table
        self.audio_path_field = audio_path_field
        self.params = WindowParams.from_builder(builder)
        self.min_sample_rate = builder.min_sample_rate
        self.drop_top_level = frozenset(builder.drop_fields_top_level)
        self.threshold = overlap.threshold
        self.target_duration = overlap.target_duration

    def render(
        self,
        text: str,
        key: tuple[str, int] | None = None,
        results: ResultsProvider | None = None,
    ) -> LineOutcome:
        """Render one non-blank line.

        Args:
            text: The line.
            key: The line's file and 1-based line number; required when lost windows
                go to a separate record, or windows to the windows table.
            results: The entry's builder and overlap results; computed here when None.

        Returns:
            The output line and the entry's figures, or the rejection reason.
        """
        try:
            # Absurd numbers end in a rejection, not a warning; values nested as deep as
            # decoding allows must encode again, however deep the caller's stack is.
            with np.errstate(all="ignore"), nesting_room():
                return self._render(text, key, results)
        except Exception as err:
            error, internal = rejection_reason(err)
            return LineOutcome(error=error, internal=internal)

    def _render(
        self, text: str, key: tuple[str, int] | None, results: ResultsProvider | None
    ) -> LineOutcome:
        data = decode_line(text)
        table = parse_entry(data).table
        total_dur = sequential_sum(table.end - table.start)
        counts = dict.fromkeys(METRIC_COUNTS, 0)
        durations = dict.fromkeys(METRIC_DURATIONS, 0.0)
        counts["total_segments"] = table.size
        durations["total_dur"] = total_dur

        fields: dict[str, bytes | None]
        rate = data.get("audio_sample_rate", 0)
        figures = EntryFigures(sample_rate=rate)
        if rate < self.min_sample_rate:
            counts["below_sample_rate"] = 1
            counts["lost_sr"] = table.size
            durations["dur_lost_sr"] = total_dur
            stats, lost = self._stats(data, table.size, total_dur, counts, durations, b"[]", key)
            fields = {
                "audio_filepath": dumps(data.get("audio_filepath")),
                "windows": b"[]",
                "stats": stats,
                "truncation_events": b"0",
            }
            self._add_overlap_defaults(fields)
            line = self._object(data, fields)
            return LineOutcome(line, None, counts, durations, False, lost, figures)

        if results is None:
            build = compute_windows(table, self.params)
            overlap = None
            if build.window_count:
                overlap = compute_overlaps(
                    build.window_end, build.window_start, self.threshold, self.target_duration
                )
        else:
            build, overlap = results(table)
        counts.update(build.counters)
        durations.update(build.durations_lost)
        counts["truncation_events"] = build.truncation_events
        counts["windows"] = build.window_count

        segments = [dumps(self._strip(seg)) for seg in table.segments]
        # Window starts that cut a segment at the same word share one part: encode it once.
        parts = {id(p): dumps(self._strip(p)) for p in build.parts if p is not None}
        parts.update({id(x.part): dumps(self._strip(x.part)) for x in build.losses if x.part})
        windows = self._windows(build, segments, parts)
        losses = self._losses(build, segments, parts)
        fields = dict.fromkeys((k for k in data if k not in self.drop_top_level), None)
        fields["windows"] = _list(windows)
        stats, lost = self._stats(data, table.size, total_dur, counts, durations, losses, key)
        fields["stats"] = stats
        fields["truncation_events"] = str(build.truncation_events).encode()
        window_rows: list[bytes] = []
        if build.window_count == 0 or overlap is None:
            self._add_overlap_defaults(fields)
        else:
            self._add_overlap(fields, data, build, overlap, windows, counts, durations)
            self._add_figures(figures, table, build, overlap)
            if self.windows_table:
                window_rows = self._window_rows(data, table, build, overlap, key)
        line = self._object(data, fields)
        return LineOutcome(line, None, counts, durations, False, lost, figures, window_rows)

    def _window_rows(
        self,
        data: dict[str, Any],
        table: SegmentTable,
        build: BuildResult,
        overlap: OverlapResult,
        key: tuple[str, int] | None,
    ) -> list[bytes]:
        """The ``_windows/`` rows: one per window of ``filtered_windows``.

        Segments are the window's output copies (stripped), so a dropped ``text`` or
        ``speaker`` is null here too.
        """
        if key is None:
            raise ValueError("the windows table needs the line's source and number")
        head: dict[str, Any] = {"source": key[0], "line": key[1]}
        path = data.get("audio_filepath")
        head["audio_filepath"] = path if isinstance(path, str) else None
        swift = data.get("swift_audio_filepath")
        head["swift_audio_filepath"] = swift if isinstance(swift, str) else None
        head["audio_sample_rate"] = _finite(data.get("audio_sample_rate"))
        if self.audio_path_field is not None:
            audio_path = data.get(self.audio_path_field)
            head["audio_path"] = audio_path if isinstance(audio_path, str) else None
        rows = []
        for position, w in enumerate(overlap.filtered_windows.tolist()):
            first, stop, part = int(build.first[w]), int(build.stop[w]), build.parts[w]
            members = [self._strip(s) for s in table.segments[first:stop]]
            if part is not None:
                members.append(self._strip(part))
            segments = [
                {
                    "start": seg["start"],
                    "end": seg["end"],
                    "speaker": seg.get("speaker") if isinstance(seg.get("speaker"), str) else None,
                    "text": seg.get("text") if isinstance(seg.get("text"), str) else None,
                }
                for seg in members
            ]
            row = {
                **head,
                "position": position,
                **window_summary(table, build, w),
                "segments": segments,
                "text": " ".join(s["text"] for s in segments if s["text"]),
            }
            rows.append(dumps(row))
        return rows

    @staticmethod
    def _add_figures(
        figures: EntryFigures, table: SegmentTable, build: BuildResult, overlap: OverlapResult
    ) -> None:
        chosen = overlap.filtered_windows
        ends, starts = build.window_end, build.window_start
        figures.window_durations = (ends[chosen] - starts[chosen]).tolist()
        figures.window_speakers = build.speakers[chosen].tolist()
        speech = build.speech[chosen]
        top = build.speaker_durations[chosen, 0]
        share = np.divide(top, speech, out=np.zeros_like(top), where=speech > 0)
        figures.dominant_share = share.tolist()
        figures.builder_coverage = covered_seconds(table.start, table.end, starts, ends)
        figures.filtered_coverage = covered_seconds(
            table.start, table.end, starts[chosen], ends[chosen]
        )

    def _strip(self, segment: dict[str, Any]) -> dict[str, Any]:
        drop = self.params.drop_fields
        if drop.isdisjoint(segment):
            return segment
        return {k: v for k, v in segment.items() if k not in drop}

    @staticmethod
    def _members(
        segments: list[bytes],
        parts: dict[int, bytes],
        first: int,
        stop: int,
        part: dict[str, Any] | None,
    ) -> bytes:
        items = segments[first:stop]
        if part is not None:
            items.append(parts[id(part)])
        return _list(items)

    def _windows(
        self, build: BuildResult, segments: list[bytes], parts: dict[int, bytes]
    ) -> list[bytes]:
        durations = _rows(build.speaker_durations.tolist())
        return [
            b'{"segments":'
            + self._members(segments, parts, first, stop, part)
            + b',"speaker_durations":'
            + spk
            + b"}"
            for first, stop, part, spk in zip(
                build.first.tolist(),
                build.stop.tolist(),
                build.parts,
                durations,
                strict=True,
            )
        ]

    def _losses(self, build: BuildResult, segments: list[bytes], parts: dict[int, bytes]) -> bytes:
        return _list(
            [
                b'{"index":'
                + str(loss.index).encode()
                + b',"window_segs":'
                + self._members(segments, parts, loss.index, loss.stop, loss.part)
                + b',"next_seg":'
                + segments[loss.next_index]
                + b',"prev_seg":'
                + segments[max(loss.index - 1, 0)]
                + b"}"
                for loss in build.losses
            ]
        )

    def _stats(
        self,
        data: dict[str, Any],
        total_segments: int,
        total_dur: float,
        counts: dict[str, int],
        durations: dict[str, float],
        losses: bytes,
        key: tuple[str, int] | None,
    ) -> tuple[bytes, bytes | None]:
        """The ``stats`` object, and the separate lost-windows record when there is one."""
        stats: dict[str, Any] = {
            "total_segments": total_segments,
            "total_dur": total_dur,
            "swift_path": data.get("swift_audio_filepath", ""),
            "audio_sample_rate": data.get("audio_sample_rate", 0),
        }
        for name in LOSS_COUNTERS:
            stats[name] = counts[name]
            stats[f"dur_{name}"] = durations[f"dur_{name}"]
        if self.lost_windows == "inline":
            # Spliced in as bytes: it is built from cached segment JSON.
            return dumps(stats)[:-1] + b',"lost_win_full_data":' + losses + b"}", None
        if self.lost_windows == "drop":
            return dumps(stats), None
        if key is None:
            raise ValueError("separate lost windows need the line's source and number")
        ref = {"source": key[0], "line": key[1]}
        stats["lost_win_full_data_ref"] = ref
        record = dumps({**ref, "audio_filepath": data.get("audio_filepath")})
        return dumps(stats), record[:-1] + b',"lost_win_full_data":' + losses + b"}"

    @staticmethod
    def _add_overlap_defaults(fields: dict[str, bytes | None]) -> None:
        for key, value in _OVERLAP_DEFAULTS:
            if key not in fields:
                fields[key] = value

    def _add_overlap(
        self,
        fields: dict[str, bytes | None],
        data: dict[str, Any],
        build: BuildResult,
        overlap: OverlapResult,
        windows: list[bytes],
        counts: dict[str, int],
        durations: dict[str, float],
    ) -> None:
        ends, starts = build.window_end, build.window_start
        window_durs = ends - starts
        kept_durs = window_durs[overlap.kept]
        total_dur_window = sequential_sum(window_durs)
        filtered_dur = sequential_sum(kept_durs)
        fields["total_dur_window"] = dumps(total_dur_window)
        fields["total_dur_list_window"] = dumps(window_durs.tolist())
        fields["total_dur_list_window_timestamps"] = dumps(np.column_stack((ends, starts)).tolist())
        fields["filtered"] = dumps(np.column_stack((ends, starts))[overlap.kept].tolist())
        fields["filtered_windows"] = _list([windows[k] for k in overlap.filtered_windows.tolist()])
        fields["filtered_dur"] = dumps(filtered_dur)
        fields["filtered_dur_list"] = dumps(kept_durs.tolist())
        fields["manifest_filepath"] = b"null"
        fields["swift_filepath"] = dumps(data.get("swift_audio_filepath", ""))
        counts["filtered_windows"] = len(overlap.filtered_windows)
        counts["filtered_pairs"] = len(overlap.kept)
        durations["total_dur_window"] = total_dur_window
        durations["filtered_dur"] = filtered_dur

    @staticmethod
    def _object(data: dict[str, Any], fields: dict[str, bytes | None]) -> bytes:
        return (
            b"{"
            + b",".join(
                dumps(key) + b":" + (value if value is not None else dumps(data[key]))
                for key, value in fields.items()
            )
            + b"}"
        )
