"""Output equals the reference's golden files (spec §3), without Spark.

The same cases run through Spark in ``test_pipeline_golden.py``.
"""

from __future__ import annotations

import json

import pytest

from alm_spark.algorithm.render import EntryRenderer
from alm_spark.config import load_config
from alm_spark.testing.compare import compare_entries, iter_jsonl
from tests import oracle
from tests.conftest import GOLDEN_CASES, GOLDEN_IDS, fixtures_dir, read_lines


@pytest.mark.parametrize(("source", "overrides", "expected"), GOLDEN_CASES, ids=GOLDEN_IDS)
def test_processor_matches_golden(source: str, overrides: list[str], expected: str) -> None:
    root = fixtures_dir()
    cfg = load_config(None, overrides)
    renderer = EntryRenderer(cfg.builder, cfg.overlap)
    outcomes = [renderer.render(line) for line in read_lines(root / source)]
    assert [o.error for o in outcomes if o.error] == []
    result = compare_entries(
        (json.loads(o.output) for o in outcomes), iter_jsonl(root / "expected" / expected)
    )
    assert result.problems == []
    assert result.equal


@pytest.mark.slow
@pytest.mark.parametrize(("source", "overrides", "expected"), GOLDEN_CASES, ids=GOLDEN_IDS)
def test_oracle_matches_golden(source: str, overrides: list[str], expected: str) -> None:
    root = fixtures_dir()
    cfg = load_config(None, overrides).to_dict()
    outputs = (
        oracle.process_entry(json.loads(line), cfg["builder"], cfg["overlap"])
        for line in read_lines(root / source)
    )
    assert compare_entries(outputs, iter_jsonl(root / "expected" / expected)).equal


def test_reference_figures() -> None:
    root = fixtures_dir()
    for name, windows, filtered, duration in [
        ("sample_input.default.jsonl", 181, 25, 3035.5),
        ("nested.default.jsonl", 724, 100, 12142.0),
    ]:
        entries = list(iter_jsonl(root / "expected" / name))
        assert sum(len(e["windows"]) for e in entries) == windows
        assert sum(len(e["filtered_windows"]) for e in entries) == filtered
        assert sum(e["filtered_dur"] for e in entries) == pytest.approx(duration)
