"""Deeply nested values: accepted up to MAX_NESTING levels wherever a line is decoded,
refused beyond with a reason (issue 9, class 7)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from alm_spark.algorithm.entry import MAX_NESTING, RejectedLine, decode_line, nesting_depth
from alm_spark.algorithm.render import EntryRenderer
from alm_spark.config import build_config, load_config
from alm_spark.names import ENGINES
from alm_spark.run.job import run_pipeline
from alm_spark.testing.compare import iter_jsonl

TOO_DEEP = f"invalid JSON: nested deeper than {MAX_NESTING} levels"


def deep_line(levels: int) -> str:
    """An accepted entry whose pass-through field makes the line ``levels`` deep."""
    arrays = levels - 1  # the line's object is level 1
    return (
        '{"audio_filepath": "/a.wav", "audio_sample_rate": 16000, "deep": '
        + "[" * arrays
        + "]" * arrays
        + ', "segments": []}'
    )


@contextmanager
def _recursion_limit(limit: int) -> Iterator[None]:
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


def _at_stack_depth(frames: int, call: Callable[[], Any]) -> Any:
    """Run ``call`` with ``frames`` more frames on the stack (a Spark worker has dozens)."""
    if frames == 0:
        return call()
    return _at_stack_depth(frames - 1, call)


def _verdict(levels: int) -> str:
    try:
        decode_line(deep_line(levels))
    except RejectedLine as err:
        return str(err)
    return "ok"


def test_the_documented_limit_is_at_least_the_references() -> None:
    assert MAX_NESTING >= 991  # the reference outputs 990-deep arrays in a field


@pytest.mark.parametrize("frames", [0, 300, 900])
def test_limit_is_exact_whatever_the_stack_depth(frames: int) -> None:
    # The default recursion limit (1000) is what a worker starts with; 900 frames
    # already on the stack left the old decoder room for fewer than 100 levels.
    with _recursion_limit(1000):
        verdicts = _at_stack_depth(
            frames, lambda: [_verdict(n) for n in (2, 991, MAX_NESTING, MAX_NESTING + 1, 50_000)]
        )
    assert verdicts == ["ok", "ok", "ok", TOO_DEEP, TOO_DEEP]
    assert sys.getrecursionlimit() == 1000  # restored


def test_nesting_depth_counts_levels() -> None:
    assert [nesting_depth(v) for v in (1, [], {"a": [1, {"b": []}]}, [[[]], []])] == [0, 1, 4, 3]
    with _recursion_limit(5000):
        assert nesting_depth(json.loads("[" * 3000 + "]" * 3000)) == 3000


@pytest.mark.parametrize("frames", [0, 900])
def test_deep_values_render_as_the_reference_writes_them(frames: int) -> None:
    cfg = build_config({})
    renderer = EntryRenderer(cfg.builder, cfg.overlap)
    for levels in (991, MAX_NESTING):
        outcome = _at_stack_depth(frames, lambda n=levels: renderer.render(deep_line(n)))
        assert outcome.error is None
        assert outcome.output is not None
        arrays = levels - 1
        assert b'"deep":' + b"[" * arrays + b"]" * arrays + b"," in outcome.output
    rejected = _at_stack_depth(frames, lambda: renderer.render(deep_line(MAX_NESTING + 1)))
    assert (rejected.output, rejected.error, rejected.internal) == (None, TOO_DEEP, False)


@pytest.mark.parametrize("engine", ENGINES)
def test_deep_lines_through_spark_workers(spark, tmp_path: Path, engine: str) -> None:
    source = tmp_path / "deep.jsonl"
    levels = [991, MAX_NESTING, MAX_NESTING + 1, 3000]
    source.write_text("".join(deep_line(n) + "\n" for n in levels))
    out = tmp_path / "out"
    settings = [f"input.manifest_path={source}", f"output.path={out}", f"spark.engine={engine}"]
    cfg = load_config(None, settings)
    metrics = run_pipeline(spark, cfg).metrics
    assert (metrics["input_lines"], metrics["entries_written"], metrics["lines_rejected"]) == (
        4,
        2,
        2,
    )
    assert metrics["internal_errors"] == 0
    rejected = sorted((r["line"], r["error"]) for r in iter_jsonl(out / "_rejected"))
    assert rejected == [(3, TOO_DEEP), (4, TOO_DEEP)]
    text = "".join(p.read_text() for p in sorted(out.glob("part-*.jsonl")))
    for n in (991, MAX_NESTING):
        assert '"deep":' + "[" * (n - 1) + "]" * (n - 1) + "," in text
    assert text.count("\n") == 2
