"""Window logic alone: alm_spark's NumPy builder against the spec's nested loop.

Times, on one entry, the builder (spec §1 step 3) and the overlap filter (§2), with
no JSON decoding or encoding: the literal transcription in tests/oracle.py against
alm_spark.algorithm.builder. Entries: a 1,000-segment production-shaped conversation and the
6-hour podcast line (~6.6k segments). Prints a table and writes JSON if asked.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from alm_spark.algorithm.builder import compute_windows  # noqa: E402
from alm_spark.algorithm.entry import parse_entry  # noqa: E402
from alm_spark.algorithm.overlap import compute_overlaps  # noqa: E402
from alm_spark.algorithm.segments import WindowParams  # noqa: E402
from alm_spark.config import build_config  # noqa: E402
from alm_spark.testing.datagen import conversation_entry, generate  # noqa: E402
from tests import oracle  # noqa: E402


def thousand_segments() -> dict[str, Any]:
    """A production-shaped conversation cut to exactly 1,000 segments."""
    entry = conversation_entry(random.Random("window-logic"), 0, 70)
    entry["audio_sample_rate"] = 16000
    entry["segments"] = entry["segments"][:1000]
    return entry


def podcast() -> dict[str, Any]:
    (entry,) = generate("podcast", 1, seed=0)
    entry["audio_sample_rate"] = 16000
    return entry


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times) if repeat < 3 else statistics.median(times)


def measure(name: str, entry: dict[str, Any], repeat: int) -> dict[str, Any]:
    cfg = build_config({})
    params = WindowParams.from_builder(cfg.builder)
    builder = cfg.to_dict()["builder"]
    overlap = cfg.to_dict()["overlap"]

    def fast() -> None:
        table = parse_entry(entry).table
        build = compute_windows(table, params)
        compute_overlaps(build.window_end, build.window_start, cfg.overlap.threshold, 120.0)

    def literal() -> None:
        oracle.overlap_entry(oracle.build_entry(entry, builder), overlap)

    fast_s = best_of(fast, repeat)
    literal_s = best_of(literal, max(1, repeat // 2))
    table = parse_entry(entry).table
    return {
        "entry": name,
        "segments": table.size,
        "windows": compute_windows(table, params).window_count,
        "fast_seconds": round(fast_s, 4),
        "literal_seconds": round(literal_s, 4),
        "speedup": round(literal_s / fast_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    rows = [
        measure("1000 segments", thousand_segments(), args.repeat),
        measure("podcast (6 h)", podcast(), max(1, args.repeat // 2)),
    ]
    print("| entry | segments | windows | alm_spark s | spec nested loop s | speedup |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['entry']} | {r['segments']} | {r['windows']} | {r['fast_seconds']:.4f} | "
            f"{r['literal_seconds']:.4f} | {r['speedup']}x |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
