"""The DataFrame engine's grouped functions, in pandas, without Spark."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from alm_spark.algorithm.builder import compute_windows
from alm_spark.algorithm.entry import decode_line, parse_entry
from alm_spark.algorithm.overlap import compute_overlaps
from alm_spark.algorithm.segments import WindowParams
from alm_spark.config import BuilderConfig, OverlapConfig
from alm_spark.engines.grouped import (
    KEPT_COLUMNS,
    WINDOW_COLUMNS,
    build_entry,
    filter_entry,
    rebuild_results,
)
from alm_spark.testing.datagen import generate
from tests.conftest import TWO_SPEAKER_ENTRY
from tests.engines import KEY, KEY_NAMES, segment_rows

ZEROS = {
    "lost_bw": 0,
    "lost_sr": 0,
    "lost_spk": 0,
    "lost_win": 0,
    "lost_no_spkr": 0,
    "lost_next_seg_bm": 0,
    "dur_lost_bw": 0.0,
    "dur_lost_sr": 0.0,
    "dur_lost_spk": 0.0,
    "dur_lost_win": 0.0,
    "dur_lost_no_spkr": 0.0,
    "dur_lost_next_seg_bm": 0.0,
}
NO_WINDOW = dict.fromkeys(WINDOW_COLUMNS)
NO_STATS = {
    "total_segments": None,
    "total_dur": None,
    "below_sample_rate": None,
    "truncation_events": None,
    **dict.fromkeys(ZEROS),
    "lost_windows": None,
}
HEAD = {"source": KEY[0], "line": KEY[1]}


def _built(entry: dict, builder: BuilderConfig | None = None) -> list[dict]:
    frame = build_entry(KEY, segment_rows(json.dumps(entry)), KEY_NAMES, builder or BuilderConfig())
    return frame.to_dict("records")


def test_build_entry_gives_window_rows_then_a_stats_row() -> None:
    assert _built(TWO_SPEAKER_ENTRY) == [
        {
            **HEAD,
            "kind": "window",
            "window": 0,
            "start": 0.0,
            "end": 119.0,
            "duration": 119.0,
            "speakers": {"x": 60.0, "y": 59.0},
            "speaker_durations": [60.0, 59.0, 0.0, 0.0, 0.0],
            "first_segment": 0,
            "last_segment": 1,
            "truncated": False,
            "speech": 119.0,
            **NO_STATS,
        },
        {
            **HEAD,
            "kind": "stats",
            **NO_WINDOW,
            "total_segments": 2,
            "total_dur": 119.0,
            "below_sample_rate": False,
            "truncation_events": 0,
            **ZEROS,
            "lost_win": 1,
            "dur_lost_win": 59.0,
            "lost_windows": [{"index": 1, "stop": 2, "truncated": False, "next_index": 1}],
        },
    ]


def test_build_entry_truncates_at_a_word_boundary() -> None:
    words = [{"word": w, "end": e} for w, e in zip("abcd", (70, 100, 130, 139), strict=True)]
    entry = {
        "audio_sample_rate": 16000,
        "segments": [
            {"start": 0, "end": 60, "speaker": "x", "metrics": {"bandwidth": 9000}},
            {
                "start": 60,
                "end": 140,
                "speaker": "y",
                "metrics": {"bandwidth": 9000},
                "words": words,
            },
        ],
    }
    window, stats = _built(entry)
    assert {k: window[k] for k in ("start", "end", "duration", "speakers", "truncated")} == {
        "start": 0.0,
        "end": 130.0,
        "duration": 130.0,
        "speakers": {"x": 60.0, "y": 70.0},
        "truncated": True,
    }
    assert (window["first_segment"], window["last_segment"]) == (0, 1)
    assert (stats["truncation_events"], stats["lost_win"], stats["dur_lost_win"]) == (1, 1, 80.0)


def test_build_entry_keeps_gated_and_empty_entries_as_stats_rows() -> None:
    (gated,) = _built({**TWO_SPEAKER_ENTRY, "audio_sample_rate": 8000})
    assert gated == {
        **HEAD,
        "kind": "stats",
        **NO_WINDOW,
        "total_segments": 2,
        "total_dur": 119.0,
        "below_sample_rate": True,
        "truncation_events": 0,
        **ZEROS,
        "lost_sr": 2,
        "dur_lost_sr": 119.0,
        "lost_windows": [],
    }
    (empty,) = _built({"audio_sample_rate": 16000, "segments": []})
    assert (empty["total_segments"], empty["total_dur"], empty["lost_windows"]) == (0, 0.0, [])
    (no_rate,) = _built({"segments": []})  # a missing rate reads as 0: below the gate
    assert no_rate["below_sample_rate"] is True


def _windows(pairs: list[tuple[float, float]]) -> pd.DataFrame:
    rows = [
        {**HEAD, **dict.fromkeys(WINDOW_COLUMNS), "window": k, "start": s, "end": e}
        for k, (s, e) in enumerate(pairs)
    ]
    return pd.DataFrame(rows)[[*KEY_NAMES, *WINDOW_COLUMNS]]


def test_filter_entry_marks_survivors_and_rematched_windows() -> None:
    # A overlaps B and is farther from 120 s; D repeats B's pair, loses the tie to B,
    # and comes back through rounded-pair matching (spec §2).
    windows = _windows([(0.0, 100.0), (10.0, 130.0), (200.0, 320.0), (10.0, 130.0)])
    kept = filter_entry(KEY, windows.iloc[::-1], KEY_NAMES, OverlapConfig(overlap_percentage=50))
    assert list(kept.columns) == [*KEY_NAMES, *KEPT_COLUMNS]
    assert kept[["window", "start", "end", "filtered"]].to_dict("records") == [
        {"window": 1, "start": 10.0, "end": 130.0, "filtered": True},
        {"window": 2, "start": 200.0, "end": 320.0, "filtered": True},
        {"window": 3, "start": 10.0, "end": 130.0, "filtered": False},
    ]


@pytest.mark.parametrize("percentage", [0, 50, 100])
def test_rebuilt_results_equal_the_computed_ones(percentage: int) -> None:
    builder, overlap = BuilderConfig(), OverlapConfig(overlap_percentage=percentage)
    params = WindowParams.from_builder(builder)
    checked = 0
    for entry in generate("production", 2, seed=3):
        line = json.dumps(entry)
        table = parse_entry(decode_line(line)).table
        built = build_entry(KEY, segment_rows(line), KEY_NAMES, builder)
        windows = built[built["kind"] == "window"]
        stats = built[built["kind"] == "stats"].iloc[0].to_dict()
        if stats["below_sample_rate"]:
            continue
        checked += 1
        kept = filter_entry(KEY, windows, KEY_NAMES, overlap) if len(windows) else windows
        build, result = rebuild_results(
            table, builder, stats, windows.to_dict("records"), kept.to_dict("records")
        )
        expected = compute_windows(table, params)
        for name in ("first", "stop", "speaker_durations", "speakers", "window_start"):
            np.testing.assert_array_equal(getattr(build, name), getattr(expected, name))
        assert [p is None for p in build.parts] == [p is None for p in expected.parts]
        assert [(x.index, x.stop, x.next_index) for x in build.losses] == [
            (x.index, x.stop, x.next_index) for x in expected.losses
        ]
        assert (build.counters, build.truncation_events) == (
            expected.counters,
            expected.truncation_events,
        )
        if expected.window_count:
            want = compute_overlaps(
                expected.window_end, expected.window_start, overlap.threshold, 120.0
            )
            assert result is not None
            assert result.kept.tolist() == want.kept.tolist()
            assert result.filtered_windows.tolist() == want.filtered_windows.tolist()
    assert checked == 2


def test_rebuild_results_needs_a_stats_row() -> None:
    table = parse_entry(decode_line(json.dumps(TWO_SPEAKER_ENTRY))).table
    with pytest.raises(ValueError, match="no builder result"):
        rebuild_results(table, BuilderConfig(), None, [], [])
