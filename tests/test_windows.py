"""Spec corners of the builder (§1) and overlap filter (§2), one test each.

Every test runs twice: through the fast implementation and through the literal
oracle, so the expected values below also pin the oracle to the spec.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from alm_spark.algorithm.builder import (
    _first_duration_overflow,
    _first_label_overflow,
    _scan_label_overflow,
)
from alm_spark.algorithm.overlap import compute_overlaps
from alm_spark.algorithm.render import EntryRenderer
from alm_spark.algorithm.segments import sequential_sum
from alm_spark.config import build_config
from tests import oracle

Runner = Callable[..., dict[str, Any]]

# Small windows keep hand-made entries short: T=10 s, tolerance 0.1 -> 9..11 s.
SMALL = {"target_window_duration": 10, "tolerance": 0.1}


@pytest.fixture(params=["fast", "oracle"])
def run(request: pytest.FixtureRequest) -> Runner:
    def runner(entry: dict[str, Any], overlap: dict[str, Any] | None = None, **builder: Any):
        builder = {**SMALL, **builder}
        overlap = {"overlap_percentage": 50, "target_duration": 10, **(overlap or {})}
        line = json.dumps(entry)
        if request.param == "oracle":
            return oracle.process_entry(json.loads(line), builder, overlap)
        cfg = build_config({"builder": builder, "overlap": overlap})
        outcome = EntryRenderer(cfg.builder, cfg.overlap).render(line)
        assert outcome.error is None, outcome.error
        return json.loads(outcome.output)

    return runner


def seg(
    start: float, end: float, speaker: Any = "a", bw: Any = 8000, **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {"start": start, "end": end}
    if speaker is not ...:
        out["speaker"] = speaker
    if bw is not ...:
        out["metrics"] = {"bandwidth": bw}
    out.update(extra)
    return out


def entry(*segments: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {
        "audio_filepath": "/a.wav",
        "audio_sample_rate": 16000,
        **top,
        "segments": list(segments),
    }


def test_basic_window_and_speaker_durations(run: Runner) -> None:
    out = run(entry(seg(0, 4, "a"), seg(4, 7, "b"), seg(7, 10, "a"), seg(30, 31, "b")))
    assert len(out["windows"]) == 1
    window = out["windows"][0]
    assert [s["start"] for s in window["segments"]] == [0, 4, 7]
    assert window["speaker_durations"] == [7, 3, 0.0, 0.0, 0.0]
    assert out["stats"]["lost_win"] == 3  # starts 1, 2, 3 give windows too short
    assert out["total_dur_list_window_timestamps"] == [[10, 0]]


def test_sums_are_plain_left_to_right(run: Runner) -> None:
    # 0.1 + 0.2 + 0.3 is 0.6000000000000001 in order; compensated summation gives 0.6.
    out = run(entry(seg(0, 0.1), seg(0, 0.2), seg(0, 0.3)))
    assert out["stats"]["total_dur"] == 0.6000000000000001
    assert out["stats"]["total_dur"] != math.fsum([0.1, 0.2, 0.3])


def test_low_bandwidth_start_is_lost_bw(run: Runner) -> None:
    out = run(entry(seg(0, 2, bw=7999), seg(2, 5, bw=...), seg(5, 6)))
    stats = out["stats"]
    assert (stats["lost_bw"], stats["dur_lost_bw"]) == (2, 5)  # missing metrics reads as 0
    assert stats["lost_win"] == 1


def test_low_bandwidth_candidate_stops_window(run: Runner) -> None:
    out = run(entry(seg(0, 5, "a"), seg(5, 9.5, "b"), seg(9.5, 10, "a", bw=100)))
    assert [[s["start"] for s in w["segments"]] for w in out["windows"]] == [[0, 5]]
    # The start at 5 stops at the low-bandwidth segment: 4.5 s, too short; its next_seg
    # (index 2) is low bandwidth.
    assert out["stats"]["lost_next_seg_bm"] == 1


def test_truncation_cuts_at_word_boundary(run: Runner) -> None:
    words = [
        {"word": "one", "start": 8, "end": 9},
        {"word": "", "start": 9, "end": 9.5},
        {"word": "three", "start": 10, "end": 10.5},
        {"word": "late", "start": 12, "end": 13},
        {"word": "two", "start": 10.6, "end": 10.9},  # out of order: kept, and last kept
    ]
    long_seg = seg(8, 14, "b", words=words, text="full text", text_ITN="Full Text.")
    out = run(entry(seg(0, 8, "a"), long_seg))
    assert out["truncation_events"] == 1
    part = out["windows"][0]["segments"][-1]
    assert part["end"] == 10.9  # last kept in list order
    assert part["text"] == "one three two"
    assert part["text_ITN"] == "Full Text."
    assert "words" not in part  # dropped by drop_fields
    assert out["windows"][0]["speaker_durations"] == [8, 2.9000000000000004, 0.0, 0.0, 0.0]


def test_truncation_without_words_gives_zero_length_part(run: Runner) -> None:
    out = run(entry(seg(0, 9.5, "a"), seg(9.5, 20, "b")), drop_fields="")
    part = out["windows"][0]["segments"][-1]
    assert (part["start"], part["end"], part["text"], part["words"]) == (9.5, 9.5, "", [])


def test_truncation_disabled_stops_window(run: Runner) -> None:
    out = run(entry(seg(0, 9.5, "a"), seg(9.5, 20, "b")), truncation=False)
    assert out["windows"] == []
    assert out["truncation_events"] == 0


def test_no_truncation_when_candidate_starts_after_cut(run: Runner) -> None:
    # Start 0: segment 2 ends past 11 s but starts at the cut (11): stop, no event.
    # Start 1: 5..15 lasts 10 s and is kept whole.
    out = run(entry(seg(0, 5, "a"), seg(5, 9, "b"), seg(11, 15, "a")))
    assert out["truncation_events"] == 0
    assert [[s["start"] for s in w["segments"]] for w in out["windows"]] == [[0, 5], [5, 11]]


def test_truncation_counted_for_rejected_windows(run: Runner) -> None:
    # Start 0: window [a, part of b] is 5 s long -> window loss, but the attempt counts.
    out = run(entry(seg(0, 1, "a"), seg(5, 30, "b")))
    assert out["truncation_events"] == 2
    assert out["windows"] == []


def test_speaker_limit_and_no_speaker_stop_windows(run: Runner) -> None:
    out = run(
        entry(seg(0, 3, "a"), seg(3, 6, "b"), seg(6, 10, "c"), seg(10, 11, "no-speaker")),
        max_speakers=2,
    )
    # Start 0 stops at the third speaker (6 s); starts 1 and 2 stop at "no-speaker";
    # start 3 is "no-speaker" itself, so its window is empty (1 s).
    assert out["windows"] == []
    assert out["stats"]["lost_win"] == 4
    assert out["stats"]["lost_no_spkr"] == 3  # next_seg of starts 1, 2 and 3
    assert [r["window_segs"] for r in out["stats"]["lost_win_full_data"]][3] == []


def test_missing_null_and_empty_speakers_are_not_counted(run: Runner) -> None:
    out = run(entry(seg(0, 3, "a"), seg(3, 6, None), seg(6, 10, "")))
    assert out["windows"] == []
    assert out["stats"]["lost_spk"] == 1  # one counted speaker < min_speakers


def test_loss_classification_of_next_segment(run: Runner) -> None:
    segments = [seg(0, 1, "a"), seg(1, 2, ...), seg(50, 51, None, bw=1), seg(60, 61, "b")]
    out = run(entry(*segments), min_bandwidth=1)
    stats = out["stats"]
    # Starts 0 and 1 stop at segment 2 (starts past the cut); start 2 keeps 50..61 with
    # one counted speaker (lost_spk); start 3 runs out of segments.
    assert (stats["lost_win"], stats["lost_spk"], stats["lost_no_spkr"]) == (3, 1, 0)
    records = stats["lost_win_full_data"]
    assert [r["index"] for r in records] == [0, 1, 3]
    assert [r["next_seg"]["start"] for r in records] == [50, 50, 60]
    assert [r["prev_seg"]["start"] for r in records] == [0, 0, 50]  # index 0: segs[0]
    assert [len(r["window_segs"]) for r in records] == [2, 1, 1]
    # A null speaker is not "no-speaker": it goes on to the bandwidth test.
    out = run(entry(*segments), min_bandwidth=2)
    stats = out["stats"]
    assert (stats["lost_bw"], stats["lost_next_seg_bm"], stats["lost_no_spkr"]) == (1, 2, 0)
    assert stats["dur_lost_next_seg_bm"] == 2


def test_next_seg_without_speaker_key_counts_as_no_speaker(run: Runner) -> None:
    out = run(entry(seg(0, 1, "a"), seg(20, 21, ...)))
    assert out["stats"]["lost_no_spkr"] == 2


def test_sample_rate_gate(run: Runner) -> None:
    source = entry(seg(0, 5), seg(5, 10, "b"), audio_sample_rate=8000, extra="gone")
    out = run(source, drop_fields_top_level="audio_filepath,segments")
    assert set(out) == {"audio_filepath", "windows", "stats", "truncation_events"} | set(
        oracle.OVERLAP_DEFAULTS
    )
    assert out["audio_filepath"] == "/a.wav"
    assert (out["stats"]["lost_sr"], out["stats"]["dur_lost_sr"]) == (2, 10)
    assert out["swift_filepath"] is None
    missing = run({"segments": []})
    assert missing["audio_filepath"] is None
    assert missing["stats"]["audio_sample_rate"] == 0


def test_dropping_speaker_fails_every_window(run: Runner) -> None:
    out = run(entry(seg(0, 4, "a"), seg(4, 10, "b")), drop_fields="words,speaker")
    assert out["windows"] == []
    assert out["stats"]["lost_spk"] == 1


def test_dropping_metrics_fails_every_window(run: Runner) -> None:
    out = run(entry(seg(0, 4, "a"), seg(4, 10, "b")), drop_fields="metrics")
    assert out["windows"] == []
    assert out["stats"]["lost_win"] == 2


def test_more_than_five_speakers_keeps_top_five(run: Runner) -> None:
    segments = [
        seg(0, 1.5, "s0"),
        *[seg(1.5 + k, 2.5 + k, f"s{k}") for k in range(1, 7)],
        seg(8, 10, "s1"),
    ]
    out = run(entry(*segments), max_speakers=7)
    assert out["windows"][0]["speaker_durations"] == [3.0, 1.5, 1.0, 1.0, 1.0]


def test_segments_are_never_sorted(run: Runner) -> None:
    out = run(entry(seg(5, 10, "b"), seg(0, 5, "a")))
    # Start 0 (5..10) then 0..5: end - start = 0 - 5, window lasts 5 s -> loss.
    assert out["windows"] == []
    assert out["stats"]["lost_win_full_data"][0]["window_segs"][1]["start"] == 0


def test_overlap_pairs_are_end_first_and_closest_to_target_wins(run: Runner) -> None:
    segments = [
        seg(0, 3, "a"),
        seg(3, 6, "b"),
        seg(6, 10, "a"),
        seg(10, 10.5, "b"),
        seg(10.5, 13, "a"),
    ]
    out = run(entry(*segments))
    # Start 0 ends with a zero-length truncated part (no words) at 10.5; start 1 ends at 13.
    assert out["truncation_events"] == 1
    assert out["total_dur_list_window_timestamps"] == [[10.5, 0], [13, 3]]
    assert out["total_dur_list_window"] == [10.5, 10]
    assert out["total_dur_window"] == 20.5
    # 7.5 s overlap / 10 s >= 50%; 10 s is closer to the 10 s target than 10.5 s.
    assert out["filtered"] == [[13, 3]]
    assert [w["segments"][0]["start"] for w in out["filtered_windows"]] == [3]
    assert out["filtered_dur"] == 10
    assert out["filtered_dur_list"] == [10]


@pytest.mark.parametrize(
    ("pairs", "threshold", "target", "kept"),
    [
        # Equal distance to target, equal durations: dur_i >= dur_j keeps the earlier one.
        ([(10, 0), (12, 2)], 0.5, 10, [(10, 0)]),
        # Equal distance, the earlier one shorter: it is removed.
        ([(9.5, 0), (11.5, 1)], 0.5, 10, [(11.5, 1)]),
        # The earlier one closer to target removes the later.
        ([(10, 0), (13, 2)], 0.5, 10, [(10, 0)]),
        # 100%: only full containment competes; 2..12 is not inside 0..10.
        ([(10, 0), (12, 2)], 1.0, 10, [(10, 0), (12, 2)]),
        ([(10, 0), (9, 1)], 1.0, 10, [(10, 0)]),
        # Touching windows (start_j >= end_i) never compete; 0% then keeps both.
        ([(10, 0), (20, 10)], 0.0, 10, [(10, 0), (20, 10)]),
        # Sorted by start: the later window in input order is processed first.
        ([(12, 2), (10, 0), (13, 2.5)], 0.5, 10, [(10, 0)]),
        # 0 removes 1; 2 overlaps 0 by 40% only and survives.
        ([(10, 0), (11, 1), (16, 6)], 0.6, 10, [(10, 0), (16, 6)]),
        # Equal starts sort by end; a zero-length window never competes (ratio 0).
        ([(5, 0), (0, 0)], 0.5, 10, [(0, 0), (5, 0)]),
    ],
)
def test_filter_overlaps_rules(pairs, threshold, target, kept) -> None:
    ends = np.array([e for e, _ in pairs], dtype=np.float64)
    starts = np.array([s for _, s in pairs], dtype=np.float64)
    result = compute_overlaps(ends, starts, threshold, target)
    assert [(ends[k], starts[k]) for k in result.kept.tolist()] == kept
    oracle_kept = oracle._filter_pairs([list(p) for p in pairs], threshold, target)
    assert [tuple(p) for p in oracle_kept] == kept


def test_rounded_pair_brings_back_removed_window(run: Runner) -> None:
    # Two windows whose pairs differ below 1e-6: one is removed, both are "filtered".
    segments = [seg(0, 5, "a"), seg(5, 10, "b"), seg(0.0000001, 5, "a"), seg(5, 10, "b")]
    out = run(entry(*segments))
    assert len(out["filtered"]) == 1
    assert len(out["filtered_windows"]) == 2


def test_zero_window_entries_keep_existing_keys(run: Runner) -> None:
    source = entry(seg(0, 1), filtered=None, filtered_dur=7, swift_audio_filepath="s://x")
    out = run(source)
    assert out["filtered"] is None
    assert out["filtered_dur"] == 7
    assert out["filtered_windows"] == []
    assert out["swift_filepath"] is None
    assert out["stats"]["swift_path"] == "s://x"


def test_swift_filepath_with_windows(run: Runner) -> None:
    segments = [seg(0, 4, "a"), seg(4, 10, "b")]
    assert run(entry(*segments))["swift_filepath"] == ""
    assert run(entry(*segments, swift_audio_filepath=None))["swift_filepath"] is None
    assert run(entry(*segments, swift_audio_filepath=5))["swift_filepath"] == 5


def test_unknown_fields_pass_through_unchanged(run: Runner) -> None:
    odd = {"n": 2**70, "f": -0.0, "s": "1", "b": True, "z": None, "l": [{"x": []}], "u": "é\u2028"}
    source = entry(seg(0, 4, "a", emotion=odd), seg(4, 10, "b"), meta=odd, duration="12")
    out = run(source)
    assert out["meta"] == odd
    assert out["duration"] == "12"
    assert out["windows"][0]["segments"][0]["emotion"] == odd
    assert isinstance(out["meta"]["b"], bool)


def test_output_keys_overwrite_input_keys(run: Runner) -> None:
    out = run(entry(seg(0, 4, "a"), seg(4, 10, "b"), windows="old", stats=1, truncation_events="x"))
    assert isinstance(out["windows"], list)
    assert out["stats"]["total_segments"] == 2
    assert out["truncation_events"] == 0


def test_drop_fields_top_level_keeps_segments_with_words(run: Runner) -> None:
    words = [{"word": "w", "start": 0, "end": 1}]
    out = run(entry(seg(0, 4, "a", words=words), seg(4, 10, "b")), drop_fields_top_level="words")
    assert out["segments"][0]["words"] == words
    assert "words" not in out["windows"][0]["segments"][0]


# --- internals against brute force --------------------------------------------------


def test_duration_overflow_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        start = np.round(rng.uniform(0, 50, n), 1)
        end = np.round(start + rng.uniform(-2, 20, n), 1)
        limit = float(rng.choice([5.0, 11.0, 13.2]))
        origins = np.arange(n, dtype=np.int64)
        expected = [
            next((c for c in range(i, n) if end[c] - start[i] > limit), n) for i in range(n)
        ]
        assert _first_duration_overflow(start, end, origins, limit).tolist() == expected


def _label_overflow_brute_force(label: np.ndarray, k: int) -> list[int]:
    n = len(label)
    out = []
    for i in range(n):
        seen: set[int] = set()
        stop = n
        for c in range(i, n):
            if label[c] >= 0:
                seen.add(int(label[c]))
            if len(seen) > k:
                stop = c
                break
        out.append(stop)
    return out


@pytest.mark.parametrize(
    "overflow",
    [_first_label_overflow, lambda label, _n_labels, k: _scan_label_overflow(label, k)],
    ids=["next-occurrence", "two-pointer"],
)
def test_label_overflow_matches_brute_force(overflow: Callable[..., np.ndarray]) -> None:
    rng = random.Random(5)
    for _ in range(300):
        n = rng.randint(1, 50)
        n_labels = rng.randint(1, 30)
        label = np.array([rng.randrange(-1, n_labels) for _ in range(n)], dtype=np.int64)
        k = rng.randint(0, 6)
        assert overflow(label, n_labels, k).tolist() == _label_overflow_brute_force(label, k)


def test_many_speaker_labels_stay_linear() -> None:
    n = 30_000
    label = np.arange(n, dtype=np.int64)  # every segment its own speaker
    started = time.perf_counter()
    result = _first_label_overflow(label, n, 5)
    assert result[:3].tolist() == [5, 6, 7]
    assert time.perf_counter() - started < 5  # quadratic took ~60 s here


def test_sequential_sum_is_not_compensated() -> None:
    values = np.array([1e16, 1.0, -1e16, 1.0])
    assert sequential_sum(values) == ((1e16 + 1.0) - 1e16) + 1.0
    assert sequential_sum(np.array([])) == 0.0
