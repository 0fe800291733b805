"""Both engines give the same output, rejected lines, metrics and windows table."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from alm_spark.config import load_config
from alm_spark.names import ENGINES
from alm_spark.run.job import run_pipeline
from alm_spark.testing.compare import compare_paths, iter_jsonl
from alm_spark.testing.datagen import corner_entry
from tests.conftest import TWO_SPEAKER_ENTRY, write_jsonl

BAD_LINES = [
    "",
    "[1]",
    '{"x": NaN}',
    json.dumps({"audio_sample_rate": 16000, "segments": [{"start": 0}]}),
    json.dumps({**TWO_SPEAKER_ENTRY, "meta": 1}).replace('"meta": 1', '"meta": 1e999'),
    "   ",
    "{",
]


def _mixed_input(tmp_path: Path) -> Path:
    rng = random.Random("engines")
    lines: list[str] = [json.dumps(corner_entry(rng, k), ensure_ascii=False) for k in range(60)]
    for k, bad in enumerate(BAD_LINES):
        lines.insert(7 * k + 3, bad)
    return write_jsonl(tmp_path / "in" / "mixed.jsonl", lines)


def _run(spark, source: Path, out: Path, engine: str, *overrides: str):
    cfg = load_config(
        None,
        [f"input.manifest_path={source}", f"output.path={out}", f"spark.engine={engine}",
         *overrides],
    )  # fmt: skip
    return run_pipeline(spark, cfg)


def _comparable(metrics: dict[str, Any]) -> dict[str, Any]:
    """``_metrics.json`` without what differs between two runs by design."""
    out = {k: v for k, v in metrics.items() if k != "run"}
    out["config"] = json.loads(json.dumps(metrics["config"]))
    del out["config"]["spark"]["engine"], out["config"]["output"]["path"]
    return out


def _close(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-12 relative: run totals are summed in task order."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)
    return bool(a == b)


def test_engines_agree_on_everything_but_the_run(spark, tmp_path: Path) -> None:
    source = _mixed_input(tmp_path)
    options = ["output.lost_window_details=separate", "output.windows_table=true"]
    results = {e: _run(spark, source, tmp_path / e, e, *options) for e in ENGINES}
    fused, frames = (tmp_path / e for e in ENGINES)
    comparison = compare_paths(frames, fused)
    assert comparison.problems == []
    assert comparison.equal
    metrics = {e: r.metrics for e, r in results.items()}
    assert metrics["fused"]["lines_rejected"] == 5
    assert metrics["fused"]["blank_lines"] == 2
    assert _close(_comparable(metrics["fused"]), _comparable(metrics["dataframe"]))

    def rejected(path: Path) -> list[dict]:
        return sorted(iter_jsonl(path / "_rejected"), key=lambda r: r["line"])

    assert rejected(frames) == rejected(fused)
    assert [(r["line"], r["error"]) for r in rejected(fused)] == [
        (11, "not a JSON object (got array)"),
        (18, "invalid JSON: NaN is not valid JSON"),
        (25, "segments[0].end: missing"),
        (32, "a number is out of double range"),
        (46, "invalid JSON: Expecting property name enclosed in double quotes: "
             "line 1 column 2 (char 1)"),
    ]  # fmt: skip

    def lost(path: Path) -> list[dict]:
        return sorted(iter_jsonl(path / "_lost_windows"), key=lambda r: r["line"])

    assert lost(frames) == lost(fused)

    def table(path: Path) -> list[dict]:
        rows = pq.read_table(path / "_windows").to_pylist()
        return sorted(rows, key=lambda r: (r["line"], r["window"]))

    assert len(table(fused)) == metrics["fused"]["filtered_windows"] > 0
    assert table(frames) == table(fused)


@pytest.mark.parametrize("engine", ENGINES)
def test_windows_table_rows(spark, tmp_path: Path, engine: str) -> None:
    entry = {**TWO_SPEAKER_ENTRY, "swift_audio_filepath": "s3://b/a.wav"}
    entry["segments"] = [
        {**entry["segments"][0], "text": "hello there"},
        {**entry["segments"][1], "text": "", "words": [{"word": "x", "end": 70}]},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", [json.dumps({"x": 1}), json.dumps(entry)])
    result = _run(spark, source, tmp_path / "out", engine, "output.windows_table=true")
    (row,) = pq.read_table(tmp_path / "out" / "_windows").to_pylist()
    assert row == {
        "source": f"file:{source}",
        "line": 2,
        "audio_filepath": "/a.wav",
        "swift_audio_filepath": "s3://b/a.wav",
        "audio_sample_rate": 16000.0,
        "position": 0,
        "window": 0,
        "start": 0.0,
        "end": 119.0,
        "duration": 119.0,
        "speakers": [("x", 60.0), ("y", 59.0)],
        "speaker_durations": [60.0, 59.0, 0.0, 0.0, 0.0],
        "segments": [
            {"start": 0.0, "end": 60.0, "speaker": "x", "text": "hello there"},
            {"start": 60.0, "end": 119.0, "speaker": "y", "text": ""},
        ],
        "text": "hello there",
    }
    assert result.metrics["filtered_windows"] == 1
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "_windows" in names


def test_an_empty_windows_table_still_has_its_schema(spark, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [json.dumps({"audio_sample_rate": 8000})])
    _run(spark, source, tmp_path / "out", "fused", "output.windows_table=true")
    table = pq.read_table(tmp_path / "out" / "_windows")
    assert table.num_rows == 0
    assert table.schema.names[:7] == ["source", "line", "audio_filepath", "swift_audio_filepath",
                                      "audio_sample_rate", "position", "window"]  # fmt: skip


def test_each_named_engine_is_imported_only_when_a_run_names_it() -> None:
    """``spark.engine``'s names are the registry's; the job, the CLI and the fused engine
    import no pandas (the DataFrame engine's), which took ~0.9 s of every command's start."""
    import subprocess
    import sys

    from alm_spark.engines.registry import ENGINE_CLASSES, engine_named

    assert tuple(ENGINE_CLASSES) == ENGINES
    assert [engine_named(name).name for name in ENGINES] == list(ENGINES)
    probe = (
        "import sys, alm_spark.cli, alm_spark.run.job; from alm_spark.engines.registry "
        "import engine_named; engine_named('fused'); print('pandas' in sys.modules)"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    assert found.stdout.strip() == "False", found.stderr[-2000:]
