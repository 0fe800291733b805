"""The fast implementation equals the literal spec transcription on generated entries."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from alm_spark.config import build_config
from alm_spark.names import ENGINES
from alm_spark.testing.compare import first_difference
from alm_spark.testing.datagen import corner_entry, corner_params, generate
from tests import oracle
from tests.engines import engine_outcome

CORNER_ENTRIES = 5000


def _fast(
    line: str, builder: dict[str, Any], overlap: dict[str, Any], engine: str = "fused"
) -> dict[str, Any]:
    cfg = build_config({"builder": builder, "overlap": overlap})
    outcome = engine_outcome(engine, line, cfg.builder, cfg.overlap)
    assert outcome.error is None, outcome.error
    return json.loads(outcome.output)


#: Stats the oracle counts, summed over the sweep to show it reaches every corner.
LOSS_KEYS = ("lost_bw", "lost_sr", "lost_spk", "lost_win", "lost_no_spkr", "lost_next_seg_bm")


def _sweep(engine: str, indices: range) -> tuple[list[str], Counter[str]]:
    """Mismatches and corner counts of some of the generated entries."""
    seen: Counter[str] = Counter()
    mismatches = []
    for index in indices:
        rng = random.Random(f"equivalence:{index}")
        builder, overlap = corner_params(rng)
        line = json.dumps(corner_entry(rng, index), ensure_ascii=False)
        expected = oracle.process_entry(json.loads(line), builder, overlap)
        diff = first_difference(_fast(line, builder, overlap, engine), expected)
        if diff:
            mismatches.append(f"entry {index} {builder} {overlap}: {diff}")
        stats = expected["stats"]
        for key in LOSS_KEYS:
            seen[key] += stats[key]
        seen["windows"] += len(expected["windows"])
        seen["truncations"] += expected["truncation_events"]
        if expected["windows"]:
            seen["removed_by_overlap"] += len(expected["windows"]) - len(expected["filtered"])
            seen["rounding_rematch"] += len(expected["filtered_windows"]) > len(
                expected["filtered"]
            )
    return mismatches, seen


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_corner_entries_with_random_settings(engine: str) -> None:
    # The entries are independent: the sweep is cut into slices, one process per core
    # (spawned, not forked from a process that holds a JVM gateway).
    workers = min(os.cpu_count() or 1, 4)
    step = -(-CORNER_ENTRIES // (4 * workers))
    slices = [range(k, min(k + step, CORNER_ENTRIES)) for k in range(0, CORNER_ENTRIES, step)]
    mismatches: list[str] = []
    seen: Counter[str] = Counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        for found, counted in pool.map(_sweep, [engine] * len(slices), slices):
            mismatches += found
            seen += counted
    assert sum(len(part) for part in slices) == CORNER_ENTRIES
    assert mismatches == []
    # The generator must keep reaching the corners, or this test proves little.
    for key, floor in [
        ("windows", 2000),
        ("truncations", 3000),
        ("lost_bw", 1000),
        ("lost_sr", 1000),
        ("lost_spk", 500),
        ("lost_win", 5000),
        ("lost_no_spkr", 500),
        ("lost_next_seg_bm", 500),
        ("removed_by_overlap", 500),
        ("rounding_rematch", 10),
    ]:
        assert seen[key] >= floor, (key, seen[key])


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_production_shaped_entries_with_default_settings(engine: str) -> None:
    builder = {"drop_fields": "words"}
    overlap = {"overlap_percentage": 50}
    windows = 0
    for entry in generate("production", 3, seed=11):
        line = json.dumps(entry, ensure_ascii=False)
        expected = oracle.process_entry(json.loads(line), builder, overlap)
        windows += len(expected["windows"])
        assert first_difference(_fast(line, builder, overlap, engine), expected) is None
    assert windows == 1925  # the first entry is below the sample rate, the others are not
