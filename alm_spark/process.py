"""One manifest line in, one output line (or a rejection) out.

Decode and validate the line (:mod:`alm_spark.entry`), build windows and filter
overlaps (:mod:`alm_spark.windows`), then render the output object as JSON text.

Rendering writes JSON text directly: each stripped segment is serialized once and
its text reused in every window, filtered window and loss record that holds it,
which is most of an output line. Keys keep the reference's order (input keys, then
``windows``, ``stats``, ``truncation_events``, then the overlap keys); values the
job does not interpret are re-serialized from the decoded input, unchanged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from alm_spark.config import BuilderConfig, OverlapConfig
from alm_spark.entry import RejectedLine, decode_line, parse_entry
from alm_spark.windows import (
    LOSS_COUNTERS,
    BuildResult,
    OverlapResult,
    build_windows,
    filter_overlaps,
    sequential_sum,
)

# Matches the reference writer (ensure_ascii=False); compact separators.
encode_json = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, check_circular=False, separators=(",", ":")
).encode
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

# Overlap keys in the order the reference adds them; defaults for entries without windows.
_OVERLAP_DEFAULTS = (
    ("filtered_windows", "[]"),
    ("filtered_dur", "0.0"),
    ("filtered_dur_list", "[]"),
    ("total_dur_window", "0.0"),
    ("total_dur_list_window", "[]"),
    ("total_dur_list_window_timestamps", "[]"),
    ("filtered", "[]"),
    ("manifest_filepath", "null"),
    ("swift_filepath", "null"),
)

METRIC_COUNTS = (
    "below_sample_rate",
    "total_segments",
    "windows",
    "filtered_windows",
    "filtered_pairs",
    "truncation_events",
    *LOSS_COUNTERS,
)
METRIC_DURATIONS = (
    "total_dur",
    "total_dur_window",
    "filtered_dur",
    *(f"dur_{name}" for name in LOSS_COUNTERS),
)


@dataclass
class LineOutcome:
    """What became of one non-blank line.

    Attributes:
        line: The output JSON text, or None when rejected.
        error: The rejection reason, or None when accepted.
        counts: Integer figures of the entry (see ``METRIC_COUNTS``).
        durations: Float figures of the entry (see ``METRIC_DURATIONS``).
        internal: The rejection comes from a bug in this package, not from the line.
    """

    line: str | None = None
    error: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)
    internal: bool = False


def escape_lone_surrogates(text: str) -> str:
    r"""Make JSON text UTF-8 encodable: ``\\ud800`` escapes decode to lone surrogates."""
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _pair_list(ends: list[float], starts: list[float]) -> str:
    return encode_json([[e, s] for e, s in zip(ends, starts, strict=False)])


class EntryProcessor:
    """Processes manifest lines with one builder and overlap configuration.

    Cheap to build; build one per task and call :meth:`process` per line.
    """

    def __init__(self, builder: BuilderConfig, overlap: OverlapConfig) -> None:
        """Capture the settings.

        Args:
            builder: Builder parameters (spec §1).
            overlap: Overlap-filter parameters (spec §2).
        """
        self.params = builder.window_params()
        self.min_sample_rate = builder.min_sample_rate
        self.drop_top_level = frozenset(builder.drop_fields_top_level)
        self.threshold = overlap.threshold
        self.target_duration = overlap.target_duration

    def process(self, text: str) -> LineOutcome:
        """Process one non-blank line.

        Returns:
            The output line and the entry's figures, or the rejection reason.
        """
        try:
            return self._process(text)
        except RejectedLine as err:
            return LineOutcome(error=str(err))
        except (ValueError, OverflowError) as err:
            if isinstance(err, OverflowError) or "JSON compliant" in str(err):
                # A number such as 1e999 decodes to infinity, which JSON cannot hold.
                return LineOutcome(error="a number is out of double range")
            return self._internal_error(err)
        except Exception as err:
            return self._internal_error(err)

    @staticmethod
    def _internal_error(err: Exception) -> LineOutcome:
        return LineOutcome(
            error=f"internal error (please report): {type(err).__name__}: {err}", internal=True
        )

    def _process(self, text: str) -> LineOutcome:
        data = decode_line(text)
        parsed = parse_entry(data)
        table = parsed.table
        total_dur = sequential_sum(table.end - table.start)
        rate = data.get("audio_sample_rate", 0)
        counts = dict.fromkeys(METRIC_COUNTS, 0)
        durations = dict.fromkeys(METRIC_DURATIONS, 0.0)
        counts["total_segments"] = table.size
        durations["total_dur"] = total_dur

        if rate < self.min_sample_rate:
            counts["below_sample_rate"] = 1
            counts["lost_sr"] = table.size
            durations["dur_lost_sr"] = total_dur
            stats = self._stats_json(data, table.size, total_dur, counts, durations, "[]")
            fields: dict[str, str | None] = {
                "audio_filepath": encode_json(data.get("audio_filepath")),
                "windows": "[]",
                "stats": stats,
                "truncation_events": "0",
            }
            self._add_overlap_defaults(fields)
            return LineOutcome(line=self._object(data, fields), counts=counts, durations=durations)

        build = build_windows(table, self.params)
        counts.update(build.counters)
        durations.update(build.durations_lost)
        counts["truncation_events"] = build.truncation_events
        counts["windows"] = build.window_count

        segment_json = [encode_json(self._strip(seg)) for seg in table.segments]
        windows_json = self._windows_json(build, segment_json)
        stats = self._stats_json(
            data, table.size, total_dur, counts, durations, self._losses_json(build, segment_json)
        )
        fields = {key: None for key in data if key not in self.drop_top_level}
        fields["windows"] = "[" + ",".join(windows_json) + "]"
        fields["stats"] = stats
        fields["truncation_events"] = str(build.truncation_events)
        if build.window_count == 0:
            self._add_overlap_defaults(fields)
        else:
            overlap = filter_overlaps(
                build.window_end, build.window_start, self.threshold, self.target_duration
            )
            self._add_overlap(fields, data, build, overlap, windows_json, counts, durations)
        return LineOutcome(line=self._object(data, fields), counts=counts, durations=durations)

    def _strip(self, segment: dict[str, Any]) -> dict[str, Any]:
        drop = self.params.drop_fields
        if drop.isdisjoint(segment):
            return segment
        return {k: v for k, v in segment.items() if k not in drop}

    def _members_json(
        self, segment_json: list[str], first: int, stop: int, part: dict[str, Any] | None
    ) -> str:
        items = segment_json[first:stop]
        if part is not None:
            items.append(encode_json(self._strip(part)))
        return "[" + ",".join(items) + "]"

    def _windows_json(self, build: BuildResult, segment_json: list[str]) -> list[str]:
        durations = build.speaker_durations.tolist()
        return [
            '{"segments":'
            + self._members_json(segment_json, first, stop, part)
            + ',"speaker_durations":'
            + encode_json(spk)
            + "}"
            for first, stop, part, spk in zip(
                build.first.tolist(), build.stop.tolist(), build.parts, durations, strict=False
            )
        ]

    def _losses_json(self, build: BuildResult, segment_json: list[str]) -> str:
        records = [
            '{"index":'
            + str(loss.index)
            + ',"window_segs":'
            + self._members_json(segment_json, loss.index, loss.stop, loss.part)
            + ',"next_seg":'
            + segment_json[loss.next_index]
            + ',"prev_seg":'
            + segment_json[max(loss.index - 1, 0)]
            + "}"
            for loss in build.losses
        ]
        return "[" + ",".join(records) + "]"

    @staticmethod
    def _stats_json(
        data: dict[str, Any],
        total_segments: int,
        total_dur: float,
        counts: dict[str, int],
        durations: dict[str, float],
        losses_json: str,
    ) -> str:
        stats: dict[str, Any] = {
            "total_segments": total_segments,
            "total_dur": total_dur,
            "swift_path": data.get("swift_audio_filepath", ""),
            "audio_sample_rate": data.get("audio_sample_rate", 0),
        }
        for name in LOSS_COUNTERS:
            stats[name] = counts[name]
            stats[f"dur_{name}"] = durations[f"dur_{name}"]
        # lost_win_full_data is spliced in as text: it is built from cached segment JSON.
        return encode_json(stats)[:-1] + ',"lost_win_full_data":' + losses_json + "}"

    @staticmethod
    def _add_overlap_defaults(fields: dict[str, str | None]) -> None:
        for key, value in _OVERLAP_DEFAULTS:
            if key not in fields:
                fields[key] = value

    def _add_overlap(
        self,
        fields: dict[str, str | None],
        data: dict[str, Any],
        build: BuildResult,
        overlap: OverlapResult,
        windows_json: list[str],
        counts: dict[str, int],
        durations: dict[str, float],
    ) -> None:
        ends, starts = build.window_end, build.window_start
        window_durs = ends - starts
        kept_durs = window_durs[overlap.kept]
        total_dur_window = sequential_sum(window_durs)
        filtered_dur = sequential_sum(kept_durs)
        fields["total_dur_window"] = encode_json(total_dur_window)
        fields["total_dur_list_window"] = encode_json(window_durs.tolist())
        fields["total_dur_list_window_timestamps"] = _pair_list(ends.tolist(), starts.tolist())
        fields["filtered"] = _pair_list(ends[overlap.kept].tolist(), starts[overlap.kept].tolist())
        fields["filtered_windows"] = (
            "[" + ",".join(windows_json[k] for k in overlap.filtered_windows.tolist()) + "]"
        )
        fields["filtered_dur"] = encode_json(filtered_dur)
        fields["filtered_dur_list"] = encode_json(kept_durs.tolist())
        fields["manifest_filepath"] = "null"
        fields["swift_filepath"] = encode_json(data.get("swift_audio_filepath", ""))
        counts["filtered_windows"] = len(overlap.filtered_windows)
        counts["filtered_pairs"] = len(overlap.kept)
        durations["total_dur_window"] = total_dur_window
        durations["filtered_dur"] = filtered_dur

    @staticmethod
    def _object(data: dict[str, Any], fields: dict[str, str | None]) -> str:
        parts = [
            encode_json(key) + ":" + (text if text is not None else encode_json(data[key]))
            for key, text in fields.items()
        ]
        return "{" + ",".join(parts) + "}"
