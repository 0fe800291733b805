"""The Arrow batch function mapInArrow runs, tested without Spark."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from alm_spark.algorithm.render import EntryRenderer, LineSettings, RowOptions
from alm_spark.config import build_config
from alm_spark.engines.fused import map_line_batches
from alm_spark.storage.schemas import RESULT_ARROW_SCHEMA

GOOD = json.dumps(
    {
        "audio_sample_rate": 16000,
        "segments": [
            {"start": 0, "end": 60, "speaker": "a", "metrics": {"bandwidth": 9000}},
            {"start": 60, "end": 120, "speaker": "b", "metrics": {"bandwidth": 9000}},
        ],
    }
)


def _batch(rows: list[tuple[str, int, str | None]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "source": [r[0] for r in rows],
            "block_start": [r[1] for r in rows],
            "value": [r[2] for r in rows],
        }
    )


def _run(
    *batches: pa.RecordBatch, options: RowOptions | None = None, **keywords: Any
) -> list[dict[str, object]]:
    """Result rows, without the task's report rows (see test_report_rows)."""
    return [r for r in _all_rows(*batches, options=options, **keywords) if r["kind"] != "report"]


def _all_rows(
    *batches: pa.RecordBatch, options: RowOptions | None = None, **keywords: Any
) -> list[dict[str, object]]:
    cfg = build_config({})
    settings = LineSettings(cfg.builder, cfg.overlap, options or RowOptions())
    out = list(map_line_batches(iter(batches), settings, **keywords))
    assert all(b.schema.equals(RESULT_ARROW_SCHEMA) for b in out)
    return [row for b in out for row in b.to_pylist()]


def test_rows_kinds_and_block_counts() -> None:
    rows = _run(
        _batch([("f", 0, GOOD), ("f", 0, "  "), ("f", 0, "[1]")]),
        _batch([("f", 0, ""), ("f", 0, GOOD), ("g", 0, "{bad"), ("f", 100, GOOD)]),
    )
    assert [r["kind"] for r in rows] == [
        "entry",
        "rejected",
        "entry",
        "rejected",
        "entry",
        "block",
        "block",
        "block",
    ]
    rejected = [json.loads(r["record"]) for r in rows if r["kind"] == "rejected"]
    assert [(r["source"], r["block_start"], r["row"], r["raw"]) for r in rejected] == [
        ("f", 0, 2, "[1]"),
        ("g", 0, 0, "{bad"),
    ]
    assert rejected[0]["error"] == "not a JSON object (got array)"
    blocks = [
        (json.loads(r["record"]), r["lines"], r["blank_lines"])
        for r in rows
        if r["kind"] == "block"
    ]
    assert blocks == [
        ({"source": "f", "block_start": 0, "lines": 5}, 5, 2),
        ({"source": "g", "block_start": 0, "lines": 1}, 1, 0),
        ({"source": "f", "block_start": 100, "lines": 1}, 1, 0),
    ]


def test_entry_rows_carry_the_line_and_figures() -> None:
    (row, _block) = _run(_batch([("f", 0, GOOD)]))
    cfg = build_config({})
    expected = EntryRenderer(cfg.builder, cfg.overlap).render(GOOD)
    assert row["record"] == expected.output.decode()
    assert (row["windows"], row["filtered_windows"], row["total_segments"]) == (1, 1, 2)
    assert row["filtered_dur"] == 120.0
    assert row["lines"] is None
    assert row["internal_errors"] is None


def test_lone_surrogates_do_not_break_the_batch() -> None:
    line = '{"audio_sample_rate": 16000, "s": "\\udc80"}'
    (row, _block) = _run(_batch([("f", 0, line)]))
    assert json.loads(row["record"])["s"] == "\udc80"


def test_output_batches_are_bounded(monkeypatch) -> None:
    cfg = build_config({})
    line_size = len(EntryRenderer(cfg.builder, cfg.overlap).render(GOOD).output)
    monkeypatch.setattr("alm_spark.engines.results.OUTPUT_BATCH_BYTES", 2 * line_size + 1)
    batches = list(
        map_line_batches(
            iter([_batch([("f", 0, GOOD)] * 10)]), LineSettings(cfg.builder, cfg.overlap)
        )
    )
    # The last batch also carries the block row and the task's report rows.
    assert [b.num_rows for b in batches][:4] == [2, 2, 2, 2]
    assert [r["kind"] for r in batches[4].to_pylist()][:3] == ["entry", "entry", "block"]
    entry_bytes = [
        sum(len(r["record"].encode()) for r in b.to_pylist() if r["kind"] == "entry")
        for b in batches
    ]
    assert entry_bytes == [2 * line_size] * 5


def test_invalid_utf8_line_is_rejected_alone() -> None:
    values = pa.array([GOOD.encode(), b'{"a": "\xff"}'], type=pa.binary()).view(pa.string())
    batch = pa.RecordBatch.from_arrays(
        [pa.array(["f%20g", "f%20g"]), pa.array([0, 0], type=pa.int64()), values],
        names=["source", "block_start", "value"],
    )
    rows = _run(batch)
    assert [r["kind"] for r in rows] == ["entry", "rejected", "block"]
    rejected = json.loads(rows[1]["record"])
    assert rejected["error"] == "not valid UTF-8: byte 0xff at offset 7"
    assert rejected["source"] == "f g"  # percent-decoded
    assert rejected["row"] == 1


def test_no_input_no_output() -> None:
    assert _all_rows() == []


def test_report_rows() -> None:
    rows = _all_rows(_batch([("f", 0, GOOD), ("f", 0, GOOD), ("f", 0, "[1]"), ("f", 0, "{")]))
    figures = {
        (r["metric"], r["key"]): json.loads(r["record"])
        for r in rows
        if r["kind"] == "report"
        for r in [{**r, **json.loads(r["record"])}]
    }
    assert figures[("sample_rate", "16000")]["v0"] == 2  # entries
    assert figures[("sample_rate", "16000")]["v1"] == 240.0  # speech seconds
    assert figures[("sample_rate", "16000")]["v2"] == 240.0  # of it inside filtered windows
    assert figures[("sample_rate", "16000")]["v4"] == 2  # filtered windows
    assert figures[("window_speakers", "2")]["v0"] == 2
    assert figures[("rejected", "not a JSON object (got array)")]["v0"] == 1
    assert (
        figures[("rejected", "invalid JSON: Expecting property name enclosed in double quotes")][
            "v0"
        ]
        == 1
    )
    assert figures[("coverage", "filtered")]["v0"] == 240.0


def test_separate_lost_windows_are_keyed_by_line() -> None:
    lossy = json.dumps(
        {
            "audio_sample_rate": 16000,
            "segments": [
                {"start": 0, "end": 1, "speaker": "a", "metrics": {"bandwidth": 9000}},
            ],
        }
    )
    rows = _run(
        _batch([("f%20x", 100, ""), ("f%20x", 100, lossy)]),
        options=RowOptions(lost_windows="separate"),
        line_offsets={("f%20x", 100): 41},
    )
    assert [r["kind"] for r in rows] == ["entry", "lost", "block"]
    entry, lost = json.loads(rows[0]["record"]), json.loads(rows[1]["record"])
    assert "lost_win_full_data" not in entry["stats"]
    assert entry["stats"]["lost_win_full_data_ref"] == {"source": "f x", "line": 43}
    assert (lost["source"], lost["line"]) == ("f x", 43)
    assert lost["lost_win_full_data"][0]["index"] == 0
