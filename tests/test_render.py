"""Rendering of output lines: key order, JSON text, odd strings, internal errors."""

from __future__ import annotations

import json

import pytest

from alm_spark.algorithm import process as process_module
from alm_spark.algorithm.encode import escape_lone_surrogates
from alm_spark.algorithm.render import EntryRenderer
from alm_spark.config import build_config
from tests import oracle

OVERLAP_KEYS = [
    "total_dur_window",
    "total_dur_list_window",
    "total_dur_list_window_timestamps",
    "filtered",
    "filtered_windows",
    "filtered_dur",
    "filtered_dur_list",
    "manifest_filepath",
    "swift_filepath",
]


def _renderer(**builder: object) -> EntryRenderer:
    cfg = build_config({"builder": {"target_window_duration": 10, **builder}})
    return EntryRenderer(cfg.builder, cfg.overlap)


def _segments() -> list[dict[str, object]]:
    return [
        {"start": 0, "end": 4, "speaker": "a", "metrics": {"bandwidth": 9000}, "words": []},
        {"start": 4, "end": 10, "speaker": "b", "metrics": {"bandwidth": 9000}},
    ]


def test_key_order_follows_the_reference() -> None:
    entry = {
        "z": 1,
        "audio_filepath": "p",
        "stats": "old",
        "audio_sample_rate": 16000,
        "segments": _segments(),
        "a": 2,
    }
    out = json.loads(_renderer().render(json.dumps(entry)).output)
    # Input keys keep their place (a replaced "stats" too); new keys follow in order.
    assert list(out) == [
        "z",
        "audio_filepath",
        "stats",
        "audio_sample_rate",
        "a",
        "windows",
        "truncation_events",
        *OVERLAP_KEYS,
    ]
    assert list(out["stats"]) == list(oracle.STAT_KEYS)


def test_key_order_without_windows() -> None:
    out = json.loads(_renderer().render('{"audio_sample_rate": 16000, "k": 1}').output)
    assert list(out) == [
        "audio_sample_rate",
        "k",
        "windows",
        "stats",
        "truncation_events",
        *oracle.OVERLAP_DEFAULTS,
    ]


def test_output_is_one_compact_line() -> None:
    entry = {"audio_sample_rate": 16000, "t": "a\nb\u2028c", "segments": _segments()}
    line = _renderer().render(json.dumps(entry)).output
    assert b"\n" not in line
    assert b", " not in line
    assert "\u2028".encode() in line  # written raw, like the reference (ensure_ascii=False)
    assert json.loads(line)["t"] == "a\nb\u2028c"


def test_lone_surrogates_are_escaped_for_utf8() -> None:
    line = _renderer().render('{"audio_sample_rate": 16000, "s": "x\\ud800y", "t": "é"}').output
    assert b'"x\\ud800y"' in line
    assert "é".encode() in line
    assert json.loads(line)["s"] == "x\ud800y"
    assert escape_lone_surrogates('"\udc80"') == '"\\udc80"'


def test_entry_figures() -> None:
    entry = {"audio_sample_rate": 16000, "segments": _segments()}
    outcome = _renderer().render(json.dumps(entry))
    assert outcome.counts["windows"] == 1
    assert outcome.counts["filtered_windows"] == 1
    assert outcome.counts["total_segments"] == 2
    assert outcome.counts["lost_win"] == 1
    assert outcome.durations["filtered_dur"] == 10.0
    assert outcome.durations["total_dur"] == 10.0
    gated = _renderer().render('{"audio_sample_rate": 8000, "segments": []}')
    assert gated.counts["below_sample_rate"] == 1


def test_internal_errors_become_rejections(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(process_module, "compute_windows", broken)
    outcome = _renderer().render(json.dumps({"audio_sample_rate": 16000, "segments": []}))
    assert outcome.internal
    assert outcome.error == "internal error (please report): KeyError: 'boom'"
