"""A processed line rendered: its output line as UTF-8 JSON, and its keyed records.

:class:`LineRenderer` turns a :class:`~alm_spark.algorithm.process.ProcessedLine` into
bytes; :class:`EntryRenderer` does a line's whole job (process, then render) and turns
any failure into a rejection reason.

Rendering writes JSON bytes directly: each stripped segment is serialized once and its
bytes reused in every window, filtered window and loss record that holds it, which is
most of an output line. Keys keep the reference's order (input keys, then ``windows``,
``stats``, ``truncation_events``, then the overlap keys); values the job does not
interpret are re-serialized from the decoded input, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alm_spark import rows
from alm_spark.algorithm.builder import BuildResult, window_summary
from alm_spark.algorithm.encode import dumps, finite_number, json_list, json_rows
from alm_spark.algorithm.entry import nesting_room
from alm_spark.algorithm.process import (
    EntryFigures,
    LineProcessor,
    ProcessedLine,
    ResultsProvider,
    rejection_reason,
)
from alm_spark.config import BuilderConfig, OverlapConfig, PipelineConfig
from alm_spark.names import LOSS_COUNTERS, LOST_WINDOW_MODES

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

#: The line's file and 1-based line number, for records keyed by line.
Key = tuple[str, int]


@dataclass(frozen=True)
class RowOptions:
    """Which records a line yields besides its output line.

    Attributes:
        lost_windows: ``inline`` keeps ``stats.lost_win_full_data`` (the reference's
            format); ``separate`` moves it to a record keyed by source and line; ``drop``
            leaves it out (``output.lost_window_details``).
        windows_table: Also render one ``_windows/`` row per filtered window.
        audio_path_field: Also carry this manifest field in window rows, as
            ``audio_path`` (the audio step's input; ``audio.path_field``).
    """

    lost_windows: str = "inline"
    windows_table: bool = False
    audio_path_field: str | None = None

    def __post_init__(self) -> None:
        if self.lost_windows not in LOST_WINDOW_MODES:
            raise ValueError(f"lost_windows must be one of {LOST_WINDOW_MODES}")

    @classmethod
    def for_run(cls, config: PipelineConfig) -> RowOptions:
        """What a run emits: audio runs need window rows (the audio step reads them)."""
        audio = config.audio.enabled
        return cls(
            lost_windows=config.output.lost_window_details,
            windows_table=config.output.windows_table or audio,
            audio_path_field=config.audio.path_field if audio else None,
        )

    @property
    def keyed(self) -> bool:
        """Whether records are keyed by line number (so lines must be numbered)."""
        return self.lost_windows == "separate" or self.windows_table


@dataclass(frozen=True)
class LineSettings:
    """Everything a task needs to turn lines into output.

    The algorithm's settings, and which records to emit besides output lines.
    """

    builder: BuilderConfig
    overlap: OverlapConfig
    options: RowOptions = field(default_factory=RowOptions)

    @classmethod
    def for_run(cls, config: PipelineConfig) -> LineSettings:
        """The settings of a run (:meth:`RowOptions.for_run`)."""
        return cls(config.builder, config.overlap, RowOptions.for_run(config))


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


class LineRenderer:
    """Renders processed lines with one set of output settings."""

    def __init__(self, builder: BuilderConfig, options: RowOptions) -> None:
        """Capture what rendering needs: the fields to drop and the records to emit."""
        self.options = options
        self.drop_fields = frozenset(builder.drop_fields)
        self.drop_top_level = frozenset(builder.drop_fields_top_level)

    def render(self, line: ProcessedLine, key: Key | None = None) -> LineOutcome:
        """The output line and the records of a processed line.

        Args:
            line: The processed line.
            key: The line's file and number; required for keyed records
                (:attr:`RowOptions.keyed`).

        Raises:
            ValueError: When a value cannot be written as JSON (an infinite number).
        """
        data, build = line.data, line.build
        fields: dict[str, bytes | None]
        if build is None:  # below the sample rate
            stats, lost = self._stats(line, b"[]", key)
            fields = {
                "audio_filepath": dumps(data.get("audio_filepath")),
                "windows": b"[]",
                "stats": stats,
                "truncation_events": b"0",
            }
        else:
            segments = [dumps(self._strip(seg)) for seg in line.table.segments]
            # Window starts that cut a segment at the same word share one part.
            parts = {id(p): dumps(self._strip(p)) for p in build.parts if p is not None}
            parts.update({id(x.part): dumps(self._strip(x.part)) for x in build.losses if x.part})
            windows = self._windows(build, segments, parts)
            fields = dict.fromkeys((k for k in data if k not in self.drop_top_level), None)
            fields["windows"] = json_list(windows)
            stats, lost = self._stats(line, self._losses(build, segments, parts), key)
            fields["stats"] = stats
            fields["truncation_events"] = str(build.truncation_events).encode()
            if line.has_windows:
                self._add_overlap(fields, line, windows)
        for name, value in _OVERLAP_DEFAULTS:
            fields.setdefault(name, value)
        window_rows = self.window_rows(line, key) if self.options.windows_table else []
        output = self._object(data, fields)
        return LineOutcome(
            output, None, line.counts, line.durations, False, lost, line.figures, window_rows
        )

    def window_rows(self, line: ProcessedLine, key: Key | None) -> list[bytes]:
        """The ``_windows/`` rows (:data:`alm_spark.rows.WINDOW`): one per filtered window.

        Segments are the window's output copies (stripped), so a dropped ``text`` or
        ``speaker`` is null here too.
        """
        if not line.has_windows:
            return []
        if key is None:
            raise ValueError("the windows table needs the line's source and number")
        data, table, (build, overlap) = line.data, line.table, line.filtered()
        head: dict[str, Any] = {
            "source": key[0],
            "line": key[1],
            "audio_filepath": _text_or_none(data.get("audio_filepath")),
            "swift_audio_filepath": _text_or_none(data.get("swift_audio_filepath")),
            "audio_sample_rate": finite_number(data.get("audio_sample_rate")),
        }
        kind = rows.WINDOW
        if self.options.audio_path_field is not None:
            kind = rows.AUDIO_WINDOW
            head["audio_path"] = _text_or_none(data.get(self.options.audio_path_field))
        out = []
        for position, w in enumerate(overlap.filtered_windows.tolist()):
            first, stop, part = int(build.first[w]), int(build.stop[w]), build.parts[w]
            members = [self._strip(s) for s in table.segments[first:stop]]
            if part is not None:
                members.append(self._strip(part))
            segments = [
                {
                    "start": seg["start"],
                    "end": seg["end"],
                    "speaker": _text_or_none(seg.get("speaker")),
                    "text": _text_or_none(seg.get("text")),
                }
                for seg in members
            ]
            summary = window_summary(table, build, w)
            text = " ".join(s["text"] for s in segments if s["text"])
            values = {**head, "position": position, **summary, "segments": segments, "text": text}
            out.append(dumps(kind.record(values)))
        return out

    def _strip(self, segment: dict[str, Any]) -> dict[str, Any]:
        if self.drop_fields.isdisjoint(segment):
            return segment
        return {k: v for k, v in segment.items() if k not in self.drop_fields}

    @staticmethod
    def _members(
        segments: list[bytes], parts: dict[int, bytes], span: tuple[int, int, Any]
    ) -> bytes:
        first, stop, part = span
        items = segments[first:stop]
        if part is not None:
            items.append(parts[id(part)])
        return json_list(items)

    def _windows(
        self, build: BuildResult, segments: list[bytes], parts: dict[int, bytes]
    ) -> list[bytes]:
        durations = json_rows(build.speaker_durations.tolist())
        spans = zip(build.first.tolist(), build.stop.tolist(), build.parts, strict=True)
        return [
            b'{"segments":'
            + self._members(segments, parts, span)
            + b',"speaker_durations":'
            + spk
            + b"}"
            for span, spk in zip(spans, durations, strict=True)
        ]

    def _losses(self, build: BuildResult, segments: list[bytes], parts: dict[int, bytes]) -> bytes:
        return json_list(
            [
                b'{"index":'
                + str(loss.index).encode()
                + b',"window_segs":'
                + self._members(segments, parts, (loss.index, loss.stop, loss.part))
                + b',"next_seg":'
                + segments[loss.next_index]
                + b',"prev_seg":'
                + segments[max(loss.index - 1, 0)]
                + b"}"
                for loss in build.losses
            ]
        )

    def _stats(
        self, line: ProcessedLine, losses: bytes, key: Key | None
    ) -> tuple[bytes, bytes | None]:
        """The ``stats`` object, and the separate lost-windows record when there is one."""
        data, counts, durations = line.data, line.counts, line.durations
        stats: dict[str, Any] = {
            "total_segments": line.table.size,
            "total_dur": durations["total_dur"],
            "swift_path": data.get("swift_audio_filepath", ""),
            "audio_sample_rate": data.get("audio_sample_rate", 0),
        }
        for name in LOSS_COUNTERS:
            stats[name] = counts[name]
            stats[f"dur_{name}"] = durations[f"dur_{name}"]
        mode = self.options.lost_windows
        if mode == "inline":
            # Spliced in as bytes: it is built from cached segment JSON.
            return dumps(stats)[:-1] + b',"lost_win_full_data":' + losses + b"}", None
        if mode == "drop":
            return dumps(stats), None
        if key is None:
            raise ValueError("separate lost windows need the line's source and number")
        ref = {"source": key[0], "line": key[1]}
        stats["lost_win_full_data_ref"] = ref
        record = dumps({**ref, "audio_filepath": data.get("audio_filepath")})
        return dumps(stats), record[:-1] + b',"lost_win_full_data":' + losses + b"}"

    @staticmethod
    def _add_overlap(
        fields: dict[str, bytes | None], line: ProcessedLine, windows: list[bytes]
    ) -> None:
        build, overlap = line.filtered()
        ends, starts = build.window_end, build.window_start
        window_durs = ends - starts
        pairs = np.column_stack((ends, starts))
        fields["total_dur_window"] = dumps(line.durations["total_dur_window"])
        fields["total_dur_list_window"] = dumps(window_durs.tolist())
        fields["total_dur_list_window_timestamps"] = dumps(pairs.tolist())
        fields["filtered"] = dumps(pairs[overlap.kept].tolist())
        chosen = overlap.filtered_windows.tolist()
        fields["filtered_windows"] = json_list([windows[k] for k in chosen])
        fields["filtered_dur"] = dumps(line.durations["filtered_dur"])
        fields["filtered_dur_list"] = dumps(window_durs[overlap.kept].tolist())
        fields["manifest_filepath"] = b"null"
        fields["swift_filepath"] = dumps(line.data.get("swift_audio_filepath", ""))

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


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class EntryRenderer:
    """A line's whole job: process it, render it, or say why it is rejected.

    Cheap to build; build one per task and call :meth:`render` per line.
    """

    def __init__(
        self, builder: BuilderConfig, overlap: OverlapConfig, options: RowOptions | None = None
    ) -> None:
        """Capture the settings.

        Args:
            builder: Builder parameters (spec §1).
            overlap: Overlap-filter parameters (spec §2).
            options: Which records to emit besides the output line (default: none).
        """
        self.processor = LineProcessor(builder, overlap)
        self.renderer = LineRenderer(builder, options or RowOptions())

    def render(
        self, text: str, key: Key | None = None, results: ResultsProvider | None = None
    ) -> LineOutcome:
        """Process and render one non-blank line.

        Args:
            text: The line.
            key: The line's file and 1-based line number; required for keyed records.
            results: Supplies the entry's builder and overlap results; computed when None.

        Returns:
            The output line and the entry's figures, or the rejection reason.
        """
        try:
            # Absurd numbers end in a rejection, not a warning; values nested as deep as
            # decoding allows must encode again, however deep the caller's stack is.
            with np.errstate(all="ignore"), nesting_room():
                return self.renderer.render(self.processor.process(text, results), key)
        except Exception as err:
            error, internal = rejection_reason(err)
            return LineOutcome(error=error, internal=internal)
