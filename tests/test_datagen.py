"""The generator is deterministic and produces the shapes it promises."""

from __future__ import annotations

import json
from pathlib import Path

from alm_spark.datagen import generate, main, write_jsonl


def test_same_seed_same_entries_and_prefix_stability() -> None:
    first = [json.dumps(e) for e in generate("corner", 30, seed=4)]
    assert first == [json.dumps(e) for e in generate("corner", 30, seed=4)]
    assert first[:10] == [json.dumps(e) for e in generate("corner", 10, seed=4)]
    assert first != [json.dumps(e) for e in generate("corner", 30, seed=5)]


def test_production_shape() -> None:
    (entry,) = generate("production", 1, seed=2)
    assert len(entry) >= 55
    line = json.dumps(entry)
    assert 300_000 < len(line) < 1_500_000
    assert all("words" in s and s["words"] for s in entry["segments"])
    assert any(s["end"] - s["start"] > 132 for s in entry["segments"])  # needs truncation
    assert any(s["metrics"]["bandwidth"] < 8000 for s in entry["segments"])


def test_write_and_cli(tmp_path: Path) -> None:
    size = write_jsonl(tmp_path / "a.jsonl.gz", generate("sample", 3))
    assert size > 3000
    assert main(["--profile", "sample", "--lines", "2", "--out", str(tmp_path / "b.jsonl")]) == 0
    assert len((tmp_path / "b.jsonl").read_text().splitlines()) == 2
