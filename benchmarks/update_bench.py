"""Update benchmark: what an update costs against a full run, and what publishing copies.

One Spark session (local[2]), one process, so the figures are the job's, not a JVM's
start. Per repetition, over the same generated input folder of ``--files`` manifest
files:

1. a full ``overwrite`` run;
2. an ``update`` with nothing to do;
3. one new file added, then an ``update`` (it processes that file alone).

Every call the driver makes to rename or copy a file is counted (the job's file system is
wrapped); the tasks write data files under their final names (on a local disk through a
hidden name renamed within its folder, which the design allows and object stores never
see). The medians of ``--repeat`` repetitions are printed, with the ratio the issue asks
for: an update where 1 of 100 files is new should cost at most about 10% of a full run
plus an update with nothing to do.

Usage: python benchmarks/update_bench.py [--files 100] [--entries 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from alm_spark.config import load_config  # noqa: E402
from alm_spark.run.job import run_pipeline  # noqa: E402
from alm_spark.run.session import configure_builder  # noqa: E402
from alm_spark.storage.fs import filesystem_for  # noqa: E402
from alm_spark.testing.datagen import generate, write_jsonl  # noqa: E402


class CountingFileSystem:
    """The job's file system, counting renames (a copy on object stores) and their bytes."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.renames = 0
        self.renamed_bytes = 0

    def rename(self, src: str, dst: str) -> None:
        """Count, then rename."""
        self.renames += 1
        if not self.inner.is_dir(src):
            self.renamed_bytes += self.inner.stat(src).size
        self.inner.rename(src, dst)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@contextmanager
def bench_session(master: str, prefix: str) -> Iterator[tuple[Any, CountingFileSystem, Path]]:
    """One Spark session, its file system counting renames, a temporary folder; all ended."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers' Python: this one
    settings = load_config(None, [f"spark.master={master}"]).spark
    spark = configure_builder(SparkSession.builder, settings).getOrCreate()
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield spark, CountingFileSystem(filesystem_for(spark)), root
    finally:
        spark.stop()
        shutil.rmtree(root, ignore_errors=True)


def _timed(spark: Any, fs: CountingFileSystem, source: Path, out: Path, mode: str) -> float:
    config = load_config(
        None, [f"input.manifest_path={source}", f"output.path={out}", f"output.mode={mode}"]
    )
    started = time.perf_counter()
    run_pipeline(spark, config, fs=fs)  # type: ignore[arg-type]
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the figures as JSON and a short table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--entries", type=int, default=5, help="entries per manifest file")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with bench_session("local[2]", "alm-update-bench-") as (spark, fs, root):
        source = root / "in"
        for n in range(args.files):
            write_jsonl(source / f"m{n:04d}.jsonl", generate("production", args.entries, seed=n))
        figures: dict[str, list[float]] = {"full": [], "nothing_to_do": [], "one_new": []}
        for rep in range(args.repeat):
            out = root / f"out{rep}"
            figures["full"].append(_timed(spark, fs, source, out, "overwrite"))
            figures["nothing_to_do"].append(_timed(spark, fs, source, out, "update"))
            new = source / f"new{rep}.jsonl"
            write_jsonl(new, generate("production", args.entries, seed=10_000 + rep))
            figures["one_new"].append(_timed(spark, fs, source, out, "update"))
            new.unlink()
        medians = {name: round(statistics.median(values), 3) for name, values in figures.items()}
        budget = 0.1 * medians["full"] + medians["nothing_to_do"]
        result = {
            "files": args.files,
            "entries_per_file": args.entries,
            "repeat": args.repeat,
            "seconds": figures,
            "median_seconds": medians,
            "one_new_over_full": round(medians["one_new"] / medians["full"], 3),
            "one_new_within_budget": medians["one_new"] <= budget,
            "driver_renames": fs.renames,
            "driver_renamed_bytes": fs.renamed_bytes,
        }
        print(json.dumps(result, indent=2))
        print(
            f"full {medians['full']:.1f} s · nothing to do {medians['nothing_to_do']:.1f} s · "
            f"1 new of {args.files} {medians['one_new']:.1f} s "
            f"(budget 10% of full + nothing to do = {budget:.1f} s) · "
            f"renames by the driver: {fs.renames} ({fs.renamed_bytes} bytes)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
