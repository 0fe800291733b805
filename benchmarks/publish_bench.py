"""Publishing benchmark: committing a step of 10,000 small files against 10,000 large ones.

Publishing is everything after the tasks wrote their data files: the driver finds the
step's files by its name prefix (deleting those of attempts it did not keep), writes the
commit record naming them, then closes the output (``_SUCCESS`` last). It reads no data
file and moves none, so its time should not depend on the files' sizes. This measures
it through the real commit path (:func:`alm_spark.run.output.committed_output`, on the
session's Hadoop file system) for ``--files`` files of 1 KB and of 1 MB, alternating,
medians of ``--repeat``. The files are sparse (``truncate``): publishing never reads
their bytes, and 10 GB of real writes would only measure the disk. Every rename and copy
the driver asks for is counted.

Usage: python benchmarks/publish_bench.py [--files 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from update_bench import CountingFileSystem, bench_session  # noqa: E402

from alm_spark.config import load_config  # noqa: E402
from alm_spark.rows import KIND_ENTRY  # noqa: E402
from alm_spark.run.context import RunContext  # noqa: E402
from alm_spark.run.output import DATA_FOLDERS, committed_output  # noqa: E402
from alm_spark.storage.io import ManifestSources  # noqa: E402
from alm_spark.storage.publish import drop_unrecorded  # noqa: E402

SIZES = {"1 KB": 1_000, "1 MB": 1_000_000}


def _publish(spark: Any, fs: CountingFileSystem, out: Path, files: int, size: int) -> float:
    """One run's step of ``files`` data files of ``size`` bytes; the seconds publishing took."""
    config = load_config(None, [f"input.manifest_path={out}.none", f"output.path={out}"])
    ctx = RunContext.open(spark, config, fs)  # type: ignore[arg-type]
    with committed_output(ctx, ManifestSources((), ())) as commits:
        commits.begin()
        with commits.step((), last=True) as step:
            assert ctx.names is not None
            names = [ctx.names.name(n % 200, n, ".jsonl") for n in range(files)]
            for name in names:  # what the tasks did: files under their final names
                with open(out / name, "wb") as handle:
                    handle.truncate(size)
            started = time.perf_counter()
            drop_unrecorded(fs, ctx.output, DATA_FOLDERS, ctx.names.prefix, set(names))
            for name in names:
                step.add(name, KIND_ENTRY)
    return time.perf_counter() - started  # the record and the close included


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the figures as JSON and one line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with bench_session("local[1]", "alm-publish-bench-") as (spark, fs, root):
        seconds: dict[str, list[float]] = {label: [] for label in SIZES}
        for rep in range(args.repeat):
            for label, size in SIZES.items():
                out = root / f"out-{rep}-{size}"
                seconds[label].append(_publish(spark, fs, out, args.files, size))
                shutil.rmtree(out)
        medians = {label: round(statistics.median(v), 3) for label, v in seconds.items()}
        result = {
            "files": args.files,
            "repeat": args.repeat,
            "seconds": seconds,
            "median_seconds": medians,
            "large_over_small": round(medians["1 MB"] / medians["1 KB"], 3),
            "driver_renames": fs.renames,
            "driver_renamed_bytes": fs.renamed_bytes,
        }
        print(json.dumps(result, indent=2))
        print(
            f"publishing {args.files:,} files: 1 KB each {medians['1 KB']:.2f} s, "
            f"1 MB each {medians['1 MB']:.2f} s (ratio {result['large_over_small']}) · "
            f"renames by the driver: {fs.renames} ({fs.renamed_bytes} bytes)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
