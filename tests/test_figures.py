"""Report figures: per-task accumulation and the driver-side assembly (no Spark)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alm_spark.algorithm.coverage import covered_seconds
from alm_spark.algorithm.render import EntryRenderer
from alm_spark.config import build_config
from alm_spark.report.figures import (
    DURATION_BINS,
    FigureAccumulator,
    assemble_report,
    duration_edges,
    reason_kind,
)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ("segments[12].words[3].end: missing", "segments[].words[].end: missing"),
        (
            "invalid JSON: Expecting ',' delimiter: line 1 column 57 (char 56)",
            "invalid JSON: Expecting ',' delimiter",
        ),
        ("not valid UTF-8: byte 0xe9 at offset 23", "not valid UTF-8"),
        ("not a JSON object (got array)", "not a JSON object (got array)"),
    ],
)
def test_reason_kind(error: str, kind: str) -> None:
    assert reason_kind(error) == kind


def test_covered_seconds() -> None:
    windows = (np.array([10.0, 0.0, 30.0]), np.array([20.0, 6.0, 35.0]))
    segments = (
        np.array([2.0, 5.0, 19.0, 22.0, 34.0, 9.0]),
        np.array([4.0, 12.0, 21.0, 25.0, 40.0, 9.5]),
    )
    # 2..4 inside (2), 5..12: 5..6 and 10..12 (3), 19..21: 19..20 (1), 22..25 none,
    # 34..40: 34..35 (1), 9..9.5 none
    assert covered_seconds(*segments, *windows) == 7.0
    assert covered_seconds(*segments, np.array([]), np.array([])) == 0.0


def _entry(rate: int, *, speakers: tuple[str, str] = ("a", "b")) -> str:
    return json.dumps(
        {
            "audio_sample_rate": rate,
            "segments": [
                {"start": 0, "end": 90, "speaker": speakers[0], "metrics": {"bandwidth": 9000}},
                {"start": 90, "end": 120, "speaker": speakers[1], "metrics": {"bandwidth": 9000}},
            ],
        }
    )


def test_accumulate_and_assemble() -> None:
    cfg = build_config({})
    renderer = EntryRenderer(cfg.builder, cfg.overlap)
    accumulator = FigureAccumulator(cfg.builder)
    for line in [_entry(16000), _entry(16000), _entry(8000), _entry(44100, speakers=("a", "a"))]:
        accumulator.add(renderer.render(line))
    accumulator.reject("segments[3].start: missing")
    accumulator.reject("segments[9].start: missing")
    rows = [
        {"metric": r.metric, "key": r.key, **{f"v{i}": v for i, v in enumerate(r.values)}}
        for r in accumulator.rows()
    ]
    report = assemble_report(rows, cfg.builder)

    # Two 120 s windows with a 90/30 speaker split; the 44100 one has a single speaker.
    assert report["window_duration"]["edges"] == duration_edges(cfg.builder)
    assert sum(report["window_duration"]["counts"]) == 2
    assert report["window_duration"]["counts"][DURATION_BINS // 2] == 2  # 120 s, mid-range
    assert report["window_speakers"]["counts"][2] == 2
    assert report["dominant_share"]["counts"][15] == 2  # 90 / 120 = 75%
    assert list(report["sample_rates"]) == ["8000", "16000", "44100"]
    assert report["sample_rates"]["16000"] == {
        "entries": 2,
        "speech_seconds": 240.0,
        "speech_in_filtered_seconds": 240.0,
        "filtered_dur": 240.0,
        "filtered_windows": 2,
    }
    assert report["sample_rates"]["8000"]["filtered_windows"] == 0
    assert report["sample_rates"]["44100"]["filtered_windows"] == 0  # one speaker: lost_spk
    assert report["rejected_reasons"] == {"segments[].start: missing": 2}
    assert report["coverage_seconds"] == {"builder": 240.0, "filtered": 240.0}


def test_keys_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("alm_spark.report.figures.MAX_KEYS", 2)
    accumulator = FigureAccumulator(build_config({}).builder)
    for reason in ["a", "b", "c", "d"]:
        accumulator.reject(reason)
    reasons = {r.key: r.values[0] for r in accumulator.rows() if r.metric == "rejected"}
    assert reasons == {"a": 1.0, "b": 1.0, "other": 2.0}
