"""Bad input (spec §4): every kind is rejected with a reason naming where."""

from __future__ import annotations

import json
from typing import Any

import pytest

from alm_spark.algorithm.entry import RejectedLine, decode_line, parse_entry
from alm_spark.algorithm.render import EntryRenderer
from alm_spark.config import build_config

GOOD_SEGMENT = {"start": 0, "end": 1, "speaker": "a", "metrics": {"bandwidth": 8000}}


def _line(segment_patch: dict[str, Any] | None = None, **top: Any) -> str:
    seg = {**GOOD_SEGMENT, **(segment_patch or {})}
    entry = {"audio_filepath": "x", "audio_sample_rate": 16000, "segments": [GOOD_SEGMENT, seg]}
    entry.update(top)
    return json.dumps(entry)


def _without(key: str) -> str:
    seg = {k: v for k, v in GOOD_SEGMENT.items() if k != key}
    return json.dumps({"segments": [seg]})


def _reason(line: str) -> str:
    with pytest.raises(RejectedLine) as err:
        parse_entry(decode_line(line))
    return str(err.value)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ('{"a": 1', "invalid JSON: Expecting ',' delimiter: line 1 column 8 (char 7)"),
        ('{"a": NaN}', "invalid JSON: NaN is not valid JSON"),
        ('{"a": Infinity}', "invalid JSON: Infinity is not valid JSON"),
        ('{"a": -Infinity}', "invalid JSON: -Infinity is not valid JSON"),
        ("[1, 2]", "not a JSON object (got array)"),
        ('"text"', "not a JSON object (got string)"),
        ("null", "not a JSON object (got null)"),
        ('{"segments": {"start": 0}}', "segments: not an array (got object)"),
        ('{"segments": null}', "segments: not an array (got null)"),
        ('{"segments": [1]}', "segments[0]: not an object (got number)"),
        (_without("start"), "segments[0].start: missing"),
        (_line({"start": None}), "segments[1].start: not a number (got null)"),
        (_line({"end": "2"}), "segments[1].end: not a number (got string)"),
        (_line({"end": True}), "segments[1].end: not a number (got boolean)"),
        (
            _line({"end": 2}).replace('"end": 2', '"end": 1e400'),
            "segments[1].end: number out of double range",
        ),
        (_line({"metrics": None}), "segments[1].metrics: not an object (got null)"),
        (_line({"metrics": [8000]}), "segments[1].metrics: not an object (got array)"),
        (
            _line({"metrics": {"bandwidth": "8000"}}),
            "segments[1].metrics.bandwidth: not a number (got string)",
        ),
        (
            _line({"metrics": {"bandwidth": None}}),
            "segments[1].metrics.bandwidth: not a number (got null)",
        ),
        (
            _line({"metrics": {"bandwidth": False}}),
            "segments[1].metrics.bandwidth: not a number (got boolean)",
        ),
        (_line(audio_sample_rate="16000"), "audio_sample_rate: not a number (got string)"),
        (_line(audio_sample_rate=None), "audio_sample_rate: not a number (got null)"),
        (_line(audio_sample_rate=True), "audio_sample_rate: not a number (got boolean)"),
        (_line({"speaker": 3}), "segments[1].speaker: not a string (got number)"),
        (_line({"speaker": ["a"]}), "segments[1].speaker: not a string (got array)"),
        (_line({"words": None}), "segments[1].words: not an array (got null)"),
        (_line({"words": "a b"}), "segments[1].words: not an array (got string)"),
        (_line({"words": ["a"]}), "segments[1].words[0]: not an object (got string)"),
        (_line({"words": [{"word": "a"}]}), "segments[1].words[0].end: missing"),
        (
            _line({"words": [{"word": "a", "end": None}]}),
            "segments[1].words[0].end: not a number (got null)",
        ),
        (
            _line({"words": [{"word": 5, "end": 1}]}),
            "segments[1].words[0].word: not a string (got number)",
        ),
        (
            _line({"words": [{"word": ["x"], "end": 1}]}),
            "segments[1].words[0].word: not a string (got array)",
        ),
    ],
)
def test_bad_lines_are_rejected_with_reason(line: str, reason: str) -> None:
    assert _reason(line) == reason


@pytest.mark.parametrize(
    "line",
    [
        _line({"speaker": None}),
        _line({"speaker": ""}),
        _line({"metrics": {}}),
        _line({"metrics": {"bandwidth": 8000.5, "other": "x"}}),
        _line({"words": []}),
        # Empty (falsy) word values are skipped when text is rebuilt, so they are fine.
        _line(
            {
                "words": [
                    {"end": 1},
                    {"word": None, "end": 1},
                    {"word": "", "end": 1},
                    {"word": 0, "end": 1},
                    {"word": False, "end": 2.5},
                ]
            }
        ),
        json.dumps({"audio_filepath": None}),
        json.dumps({"segments": []}),
        '{"segments": [], "segments": [{"start": 0, "end": 1}]}',  # duplicate key: last wins
        '  {"a": 1}  \t',
    ],
)
def test_valid_lines_are_accepted(line: str) -> None:
    parse_entry(decode_line(line))


def test_checks_cover_segments_the_loop_never_reaches() -> None:
    # Segment 0 fails the sample-rate gate's way out, segment 1 would never be read.
    line = _line({"words": [{"word": "a", "end": "late"}]}, audio_sample_rate=8000)
    assert _reason(line) == "segments[1].words[0].end: not a number (got string)"


def test_duplicate_key_keeps_last_value() -> None:
    data = decode_line('{"segments": [], "segments": [{"start": 0, "end": 1}]}')
    assert data["segments"] == [{"start": 0, "end": 1}]


def test_processor_turns_rejections_into_outcomes() -> None:
    cfg = build_config({})
    renderer = EntryRenderer(cfg.builder, cfg.overlap)
    outcome = renderer.render('{"segments": 3}')
    assert (outcome.output, outcome.error, outcome.internal) == (
        None,
        "segments: not an array (got number)",
        False,
    )


def test_overflowing_durations_are_rejected_quietly(recwarn) -> None:
    cfg = build_config({})
    renderer = EntryRenderer(cfg.builder, cfg.overlap)
    line = '{"audio_sample_rate": 16000, "segments": [{"start": -1e308, "end": 1e308}]}'
    assert renderer.render(line).error == "a number is out of double range"
    assert not recwarn.list


def test_passthrough_number_out_of_range_is_rejected() -> None:
    cfg = build_config({})
    renderer = EntryRenderer(cfg.builder, cfg.overlap)
    outcome = renderer.render('{"audio_sample_rate": 16000, "meta": 1e999}')
    assert outcome.error == "a number is out of double range"
