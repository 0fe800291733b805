"""The generator is deterministic and produces the shapes it promises."""

from __future__ import annotations

import json
from pathlib import Path

from alm_spark.testing.datagen import generate, main, write_jsonl


def test_same_seed_same_entries_and_prefix_stability() -> None:
    first = [json.dumps(e) for e in generate("corner", 30, seed=4)]
    assert first == [json.dumps(e) for e in generate("corner", 30, seed=4)]
    assert first[:10] == [json.dumps(e) for e in generate("corner", 10, seed=4)]
    assert first != [json.dumps(e) for e in generate("corner", 30, seed=5)]


def test_production_shape() -> None:
    entries = list(generate("production", 4, seed=2))
    assert all(len(entry) >= 55 for entry in entries)
    sizes = [len(json.dumps(entry).encode()) for entry in entries]
    assert all(300_000 < size < 1_500_000 for size in sizes), sizes
    segments = [s for entry in entries for s in entry["segments"]]
    assert all(s["words"] for s in segments)
    words_per_segment = sum(len(s["words"]) for s in segments) / len(segments)
    assert 7 < words_per_segment < 10  # short production turns
    assert any(s["end"] - s["start"] > 132 for s in segments)  # monologues need truncation
    assert any(s["metrics"]["bandwidth"] < 8000 for s in segments)


def test_podcast_shape() -> None:
    (entry,) = generate("podcast", 1)
    size = len(json.dumps(entry, ensure_ascii=False).encode())
    words = sum(len(s["words"]) for s in entry["segments"])
    assert 8e6 < size < 12e6
    assert 6000 < len(entry["segments"]) < 7000
    assert 50_000 < words < 65_000


def test_write_and_cli(tmp_path: Path) -> None:
    size = write_jsonl(tmp_path / "a.jsonl.gz", generate("sample", 3))
    assert size > 3000
    assert main(["--profile", "sample", "--lines", "2", "--out", str(tmp_path / "b.jsonl")]) == 0
    assert len((tmp_path / "b.jsonl").read_text().splitlines()) == 2
