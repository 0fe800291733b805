"""``alm-spark verify``: check a finished output's shards before training on them.

The live shards come from the commit records (not a listing: files of a run in flight or
retired ones are not the output's). Each shard is checked by
:func:`~alm_spark.audio.verify.check_shard`: one Spark task per shard, or in this process
(``spark=None``, ``--local``). Only problem lines (at most ``max_problems``), repeated
keys and the sums reach the driver. The sums are then compared with ``_metrics.json``.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, BinaryIO

import pyarrow as pa

from alm_spark.audio.shards import index_rows, nemo_manifest_name, shar_cuts_name, shard_number
from alm_spark.audio.verify import ShardCheck, check_shard
from alm_spark.errors import InputError
from alm_spark.names import METRICS_FILE, NEMO_MANIFESTS_DIR, PRODUCER, SHARDS_DIR, SUCCESS_FILE
from alm_spark.rows import KIND_SHARD, KIND_SHARD_INDEX, VERIFIED
from alm_spark.storage.commits import CommitLog, CommitLogError
from alm_spark.storage.datafiles import fsspec_url
from alm_spark.storage.fs import FileSystem, FsspecFileSystem, join
from alm_spark.worker import worker_task


@dataclass(frozen=True)
class Verified:
    """What ``verify`` found.

    Attributes:
        output: The output checked.
        shards: The shards checked (all live ones, or the sample).
        live_shards: The output's live shards.
        clips: Clips with audio and facts in the shards checked.
        seconds: Their audio, by the headers.
        problems: The first problem lines, sorted.
        problem_count: How many problems in all.
    """

    output: str
    shards: int
    live_shards: int
    clips: int
    seconds: float
    problems: tuple[str, ...]
    problem_count: int

    @property
    def ok(self) -> bool:
        """Whether every check held."""
        return self.problem_count == 0


@dataclass(frozen=True)
class Checks:
    """How far ``verify`` goes.

    Attributes:
        decode: Decode every clip, not only its header.
        sample: Check a seeded sample of this many shards (the totals are then not
            compared with ``_metrics.json``); None: every shard.
        seed: The sample's seed.
        max_problems: Problem lines kept (all are counted).
    """

    decode: bool = False
    sample: int | None = None
    seed: int = 0
    max_problems: int = 20


@dataclass(frozen=True)
class _Shard:
    path: str
    manifest: str | None
    indexed: int | None = None  # its clips by the shard index


def _checked(
    open_file: Any, path: str, manifest: str | None, indexed: int | None, decode: bool
) -> ShardCheck:
    """One shard checked, and against its line in the shard index."""
    check = check_shard(open_file, path, manifest, decode)
    if indexed is not None and indexed != check.clips:
        check.problem("-", f"the shard index says {indexed} clip(s), the shard holds {check.clips}")
    return check


def verify_output(output: str, spark: Any = None, checks: Checks | None = None) -> Verified:
    """Check every live shard of ``output`` and compare the sums with ``_metrics.json``.

    Args:
        output: A finished output (local path or URI).
        spark: The session whose executors check the shards; None: this process.
        checks: How far to go (default: every shard, headers only).

    Raises:
        InputError: When ``output`` is not an output with shards.
    """
    fs: FileSystem = FsspecFileSystem()
    if spark is not None:
        from alm_spark.storage.fs import filesystem_for

        fs = filesystem_for(spark)
    audio, live, unindexed = _recorded(fs, output)
    shards, problems = _live_shards(audio, live, _indexed(fs, output, live), unindexed)
    checks = checks or Checks()
    chosen = shards
    if checks.sample is not None and checks.sample < len(shards):
        sampled = random.Random(checks.seed).sample(shards, checks.sample)
        chosen = sorted(sampled, key=lambda s: (len(s.path), s.path))
    checked = _checked_here if spark is None else _checked_on_spark
    clips, seconds, found, count = checked(spark, output, chosen, checks)
    if len(chosen) == len(shards):
        problems += _against_metrics(audio, clips, seconds)
    every = sorted(problems) + found
    return Verified(
        output, len(chosen), len(shards), clips, seconds,
        tuple(every[: checks.max_problems]), len(problems) + count,
    )  # fmt: skip


def _recorded(fs: FileSystem, output: str) -> tuple[dict[str, Any], dict[str, str], set[str]]:
    """The output's ``audio`` figures, live files (path → kind) and unindexed shards.

    Shards of steps that wrote no shard index (older versions') are not checked against it.
    """
    try:
        state = CommitLog(fs, output).read()
    except CommitLogError as err:
        raise InputError(f"{output}: its commit log cannot be read: {err}") from None
    if state.live is None:
        raise InputError(f"{output}: not a finished output (no live generation in _commits/)")
    if not fs.exists(join(output, SUCCESS_FILE)):
        raise InputError(
            f"{output}: no {SUCCESS_FILE}: a run is writing it, or an update was interrupted "
            "(finish it with output.mode=update)"
        )
    try:
        metrics = json.loads(fs.read_text(join(output, METRICS_FILE)))
    except (OSError, ValueError) as err:
        raise InputError(f"{output}: {METRICS_FILE} cannot be read: {err}") from None
    if not isinstance(metrics, dict) or metrics.get("producer") != PRODUCER:
        raise InputError(f"{output}/{METRICS_FILE}: not written by {PRODUCER}")
    if not isinstance(metrics.get("audio"), dict):
        raise InputError(f"{output}: has no audio shards (written without audio.enabled)")
    files = state.live.files
    indexed_steps = {f.step for f in files.values() if f.kind == KIND_SHARD_INDEX}
    live = {path: f.kind for path, f in files.items()}
    # Shards of steps written before the shard index existed have no line in it.
    unindexed = {
        p for p, f in files.items() if f.kind == KIND_SHARD and f.step not in indexed_steps
    }
    return metrics["audio"], live, unindexed


def _indexed(fs: FileSystem, output: str, live: dict[str, str]) -> dict[str, int]:
    """Clips per shard (path relative to the output) by the live shard-index fragments."""
    fragments = [p for p, kind in live.items() if kind == KIND_SHARD_INDEX]
    rows = index_rows(lambda path: fs.read_text(join(output, path)), fragments)
    return {f"{SHARDS_DIR}/{row['name']}": int(row["clips"]) for row in rows}


def _live_shards(
    audio: dict[str, Any], live: dict[str, str], indexed: dict[str, int], unindexed: set[str]
) -> tuple[list[_Shard], list[str]]:
    """The live shards with their manifests, and problems of the set itself."""
    problems = []
    names = sorted(
        (path for path, kind in live.items() if kind == KIND_SHARD),
        key=lambda path: (len(path), path),
    )
    recorded = [f"{SHARDS_DIR}/{name}" for name in audio.get("shard_files", [])]
    for path in sorted(set(names) - set(recorded)):
        problems.append(f"{path}: -: live, but not in {METRICS_FILE}'s audio.shard_files")
    for path in sorted(set(recorded) - set(names)):
        problems.append(f"{path}: -: in {METRICS_FILE}'s audio.shard_files, but not live")
    shards = []
    for path in names:
        manifest = None
        number = shard_number(path)
        if audio.get("format") == "nemo" and number is not None:
            manifest = f"{SHARDS_DIR}/{NEMO_MANIFESTS_DIR}/{nemo_manifest_name(number)}"
        elif audio.get("format") == "shar" and number is not None:
            manifest = f"{SHARDS_DIR}/{shar_cuts_name(number)}"
        if manifest is not None and manifest not in live:
            problems.append(f"{path}: -: its side file {manifest} is not live")
        if path not in indexed and path not in unindexed:
            problems.append(f"{path}: -: live, but not in the shard index")
        shards.append(_Shard(path, manifest, indexed.get(path)))
    return shards, problems


def _against_metrics(audio: dict[str, Any], clips: int, seconds: float) -> list[str]:
    """The sums against ``_metrics.json``'s ``audio`` block."""
    problems = []
    if clips != audio.get("clips_written"):
        problems.append(
            f"{METRICS_FILE}: audio.clips_written: says {audio.get('clips_written')}, "
            f"the shards hold {clips}"
        )
    written = float(audio.get("seconds_written", 0.0))
    if abs(written - seconds) > 1e-6 * max(1.0, written):
        problems.append(
            f"{METRICS_FILE}: audio.seconds_written: says {written:.6f}, "
            f"the shards hold {seconds:.6f}"
        )
    return problems


def _opener(output: str) -> Any:
    import fsspec

    fs, root = fsspec.core.url_to_fs(fsspec_url(output))

    def open_file(relative: str) -> BinaryIO:
        handle: BinaryIO = fs.open(f"{root.rstrip('/')}/{relative}", "rb")
        return handle

    return open_file


def _checked_here(
    _spark: Any, output: str, shards: list[_Shard], checks: Checks
) -> tuple[int, float, list[str], int]:
    """Check the shards in this process: clips, seconds, problem lines, problem count."""
    open_file = _opener(output)
    clips, seconds, problems = 0, 0.0, []
    keys: Counter[str] = Counter()
    for shard in shards:
        check = _checked(open_file, shard.path, shard.manifest, shard.indexed, checks.decode)
        clips, seconds = clips + check.clips, seconds + check.seconds
        problems += check.problems
        keys.update(check.keys)
    problems += [_repeated(key, n) for key, n in keys.items() if n > 1]
    problems.sort()
    return clips, seconds, problems[: checks.max_problems], len(problems)


def _repeated(key: str, times: int) -> str:
    return f"{SHARDS_DIR}: {key}: the key appears in {times} clips"


def check_shard_batches(
    batches: Iterator[pa.RecordBatch], output: str, decode: bool
) -> Iterator[pa.RecordBatch]:
    """Check the shards a task is given (``mapInArrow``).

    ``(path, manifest)`` rows in, :data:`~alm_spark.rows.VERIFIED` rows out.
    """
    open_file = _opener(output)
    for batch in batches:
        for row in batch.to_pylist():
            path, manifest, indexed = row["path"], row["manifest"], row["indexed"]
            check = _checked(open_file, path, manifest, indexed, decode)
            rows = [("figures", check.shard, check.clips, check.seconds)]
            rows += [("problem", text, 0, 0.0) for text in check.problems]
            rows += [("key", key, 0, 0.0) for key in check.keys]
            found, text, clips, seconds = (list(column) for column in zip(*rows, strict=True))
            yield pa.RecordBatch.from_pydict(
                {"found": found, "text": text, "clips": clips, "seconds": seconds},
                schema=VERIFIED.arrow_schema(),
            )


def _checked_on_spark(
    spark: Any, output: str, shards: list[_Shard], checks: Checks
) -> tuple[int, float, list[str], int]:
    """Check the shards on the executors, one task per shard."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if not shards:
        return 0, 0.0, [], 0
    schema = T.StructType(
        [
            T.StructField("path", T.StringType(), False),
            T.StructField("manifest", T.StringType()),
            T.StructField("indexed", T.LongType()),
        ]
    )
    rows = [(s.path, s.manifest, s.indexed) for s in shards]
    shards_df = spark.createDataFrame(rows, schema)
    check = worker_task(partial(check_shard_batches, output=output, decode=checks.decode))
    most = checks.max_problems
    found_df = shards_df.repartition(len(shards)).mapInArrow(check, VERIFIED.spark_schema())
    found_df = found_df.persist()
    try:
        (sums,) = (
            found_df.filter(F.col("found") == "figures")
            .agg(F.sum("clips").alias("clips"), F.sum("seconds").alias("seconds"))
            .collect()
        )
        problems_df = found_df.filter(F.col("found") == "problem").select("text")
        repeated_df = (found_df.filter(F.col("found") == "key").groupBy("text").count()).filter(
            F.col("count") > 1
        )
        count = problems_df.count() + repeated_df.count()
        first = [row["text"] for row in problems_df.orderBy("text").limit(most).collect()]
        repeated = repeated_df.orderBy("text").limit(most).collect()
        first += [_repeated(row["text"], int(row["count"])) for row in repeated]
    finally:
        found_df.unpersist()
    return (
        int(sums["clips"] or 0),
        float(sums["seconds"] or 0.0),
        sorted(first)[:most],
        count,
    )
