"""The spec §3 comparator."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from alm_spark.testing.compare import compare_entries, compare_paths, first_difference


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ({"x": 1, "y": 2}, {"y": 2, "x": 1}),
        ({"x": 1}, {"x": 1.0}),
        ({"x": 0.1 + 0.2}, {"x": 0.3}),
        ({"x": 1000.0000001}, {"x": 1000.0}),
        ({"x": None, "y": 1}, {"y": 1}),
        ({"x": [{"a": None}]}, {"x": [{}]}),
    ],
)
def test_equal_values(a: object, b: object) -> None:
    assert first_difference(a, b) is None


@pytest.mark.parametrize(
    ("a", "b", "diff"),
    [
        ({"x": True}, {"x": 1}, "$.x: true != 1"),
        ({"x": 1.00001}, {"x": 1.0}, "$.x: 1.00001 != 1.0"),
        ({"x": "1"}, {"x": 1}, '$.x: "1" != 1'),
        ({"x": [1, 2]}, {"x": [2, 1]}, "$.x[0]: 1 != 2"),
        ({"x": [1]}, {"x": [1, 2]}, "$.x: 1 items != 2 items"),
        ({}, {"x": 0}, "$.x: missing (expected 0)"),
        ({"x": 0}, {}, "$.x: unexpected key (value 0)"),
    ],
)
def test_different_values(a: object, b: object, diff: str) -> None:
    assert first_difference(a, b) == diff


def test_lines_match_in_any_order_as_a_multiset() -> None:
    a = [{"audio_filepath": "p", "v": 1}, {"audio_filepath": "p", "v": 2}]
    assert compare_entries(a, list(reversed(a))).equal
    result = compare_entries(a + a[:1], a + a[1:])
    assert not result.equal
    assert result.problems[0].startswith("expected entry p: closest output differs at $.v")


def test_compare_paths_reads_dirs_and_gzip(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "part-0.jsonl").write_text('{"a": 1}\n{"a": 2}\n')
    (out / "_metrics.json").write_text('{"not": "data"}')
    (out / "_rejected").mkdir()
    (out / "_rejected" / "part-0.jsonl").write_text('{"rejected": 1}\n')
    with gzip.open(tmp_path / "exp.jsonl.gz", "wt") as handle:
        handle.write('{"a": 2}\n{"a": 1.0}\n')
    assert compare_paths(out, tmp_path / "exp.jsonl.gz").equal


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (123456789, 123456700, False),  # integers compare exactly
        (3600000.0, 3600003.5, False),  # floats to 1e-6, not relative
        (3600000.0, 3600000.0000004, True),
        (1e20, 1e20 + 65536.0, True),  # beyond 1e9, to rounding
        (2**70, 2**70 + 1, False),
    ],
)
def test_number_tolerance(a: float, b: float, equal: bool) -> None:
    assert (first_difference({"x": a}, {"x": b}) is None) is equal


def test_compare_paths_counts_same_text_lines_and_decodes_the_rest(tmp_path: Path) -> None:
    """Lines of the same text match undecoded, as a multiset; the others by value, where
    ``true`` is still not ``1``."""
    (tmp_path / "a.jsonl").write_text('{"a": 1}\n{"a": 1}\n{"b": 1.0}\n{"c": true}\n')
    (tmp_path / "b.jsonl").write_text('{"b": 1}\n{"a": 1}\n{"c": 1}\n{"a": 1}\n')
    result = compare_paths(tmp_path / "a.jsonl", tmp_path / "b.jsonl")
    assert (result.actual_lines, result.expected_lines, result.matched) == (4, 4, 3)
    assert result.problems == [
        "expected entry None: closest output differs at $.c: true != 1",
        "unexpected output entry None",
    ]
    (tmp_path / "c.jsonl").write_text('{"a": 1}\n{"b": 1}\n')
    short = compare_paths(tmp_path / "c.jsonl", tmp_path / "b.jsonl")
    assert (short.actual_lines, short.expected_lines, short.matched, short.equal) == (
        2, 4, 2, False,
    )  # fmt: skip
