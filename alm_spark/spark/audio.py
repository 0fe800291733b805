"""The audio step: every kept window cut out of its recording into tar shards, on executors.

Input: the staged window rows (one per item of an entry's ``filtered_windows``, with
``audio_path`` and ``position``). They are hash-partitioned by entry and sorted, so a
task sees each entry's windows together and decodes its recording once
(:func:`~alm_spark.core.audio.cut_entry`). Each task attempt writes its shards under
names carrying its attempt id, then returns one ``shard`` row per file besides the
``rejected_audio`` rows and one ``audio_figures`` row. Those rows are written through
Spark's commit protocol, so the rows that reach the staging directory are exactly the
committed attempts'; :func:`publish_shards` keeps only their files.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

from alm_spark.core.audio import AUDIO_COUNTS, AUDIO_SECONDS, WindowClip, cut_entry, fsspec_url
from alm_spark.core.config import AudioConfig
from alm_spark.core.names import KIND_AUDIO_REJECTED, KIND_SHARD
from alm_spark.core.shards import ShardWriter
from alm_spark.spark.fs import FileSystem, join
from alm_spark.spark.io import escape_glob
from alm_spark.spark.results import Counter
from alm_spark.spark.schemas import WINDOWS_TABLE_SCHEMA

#: Row kind of a task's summed audio figures.
KIND_AUDIO_FIGURES = "audio_figures"

#: A staged window row as the audio step reads it: the windows table's columns and
#: the value of ``audio.path_field``.
AUDIO_WINDOWS_SCHEMA = StructType(
    [*WINDOWS_TABLE_SCHEMA.fields, StructField("audio_path", StringType(), True)]
)

#: What a task of the audio step returns: a kind and a JSON record.
AUDIO_RESULT_SCHEMA = StructType(
    [StructField("kind", StringType(), False), StructField("record", StringType(), False)]
)
_AUDIO_RESULT_ARROW = pa.schema([("kind", pa.string()), ("record", pa.string())])

AUDIO_FIGURES_SCHEMA = StructType(
    [
        *(StructField(name, LongType(), True) for name in AUDIO_COUNTS),
        *(StructField(name, DoubleType(), True) for name in AUDIO_SECONDS),
    ]
)

#: A shard row: the attempt's file name and what it holds.
SHARD_SCHEMA = StructType(
    [
        StructField("name", StringType(), False),
        StructField("clips", LongType(), False),
        StructField("bytes", LongType(), False),
        StructField("seconds", DoubleType(), False),
    ]
)

#: Rows gathered before a batch is handed back to Spark.
_BATCH_ROWS = 256


@dataclass
class _Figures:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(AUDIO_COUNTS, 0))
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(AUDIO_SECONDS, 0.0))

    def record(self) -> str:
        return json.dumps({**self.counts, **self.seconds})


def shard_name(partition: int, index: int, attempt: int) -> str:
    """A task attempt's ``index``-th shard; the attempt part goes when it is published."""
    return f"shard-{partition:05d}-{index:04d}.attempt-{attempt}.tar"


def published_name(name: str) -> str:
    """``shard-00003-0000.attempt-17.tar`` -> ``shard-00003-0000.tar``."""
    stem, _, _ = name.partition(".attempt-")
    return f"{stem}.tar"


def _entries(batches: Iterator[pa.RecordBatch]) -> Iterator[list[dict[str, Any]]]:
    """Consecutive rows of one entry (``source``, ``line``), across batches."""
    current: list[dict[str, Any]] = []
    for batch in batches:
        for row in batch.to_pylist():
            if current and (row["source"], row["line"]) != (
                current[0]["source"],
                current[0]["line"],
            ):
                yield current
                current = []
            current.append(row)
    if current:
        yield current


def _window(row: dict[str, Any]) -> WindowClip:
    speakers = row["speakers"]  # pyarrow gives a map as (key, value) pairs
    meta = {
        "text": row["text"],
        "speakers": dict(speakers) if speakers is not None else {},
        "speaker_durations": row["speaker_durations"],
        "segments": row["segments"],
    }
    return WindowClip(int(row["position"]), int(row["window"]), row["start"], row["end"], meta)


def cut_window_batches(
    batches: Iterator[pa.RecordBatch],
    config: AudioConfig,
    attempts_url: str,
    progress: tuple[Counter, Counter] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Cut, encode and pack the clips of a task's entries (``mapInArrow``).

    Args:
        batches: Rows of :data:`AUDIO_WINDOWS_SCHEMA`, each entry's rows together and
            in ``position`` order.
        config: The ``audio`` settings.
        attempts_url: Where this step's task attempts write their shards (fsspec URL).
        progress: Counters of clips cut and of their milliseconds, added per entry.

    Yields:
        Batches of ``(kind, record)``: ``rejected_audio`` rows, then one ``shard`` row
        per file this attempt wrote and one ``audio_figures`` row.
    """
    import fsspec
    from pyspark import TaskContext

    context = TaskContext.get()
    partition = context.partitionId() if context else 0
    attempt = context.taskAttemptId() if context else 0
    fs, root = fsspec.core.url_to_fs(attempts_url)
    fs.makedirs(root, exist_ok=True)
    writer = ShardWriter(
        open_shard=lambda name: fs.open(f"{root}/{name}", "wb"),
        name_for=lambda index: shard_name(partition, index, attempt),
        max_clips=config.shard_max_clips,
        max_bytes=int(config.shard_max_mb * 1e6),
    )
    figures = _Figures()
    kinds: list[str] = []
    records: list[str] = []
    try:
        for rows in _entries(batches):
            clips, seconds = _cut_rows(rows, config, writer, figures, kinds, records)
            if progress is not None:
                progress[0].add(clips)
                progress[1].add(round(seconds * 1000))
            if len(kinds) >= _BATCH_ROWS:
                yield pa.record_batch([kinds, records], schema=_AUDIO_RESULT_ARROW)
                kinds, records = [], []
        for shard in writer.close():
            kinds.append(KIND_SHARD)
            records.append(
                json.dumps(
                    {
                        "name": shard.name,
                        "clips": shard.clips,
                        "bytes": shard.bytes,
                        "seconds": shard.seconds,
                    }
                )
            )
    except BaseException:
        writer.abort()
        raise
    kinds.append(KIND_AUDIO_FIGURES)
    records.append(figures.record())
    yield pa.record_batch([kinds, records], schema=_AUDIO_RESULT_ARROW)


def _cut_rows(
    rows: list[dict[str, Any]],
    config: AudioConfig,
    writer: ShardWriter,
    figures: _Figures,
    kinds: list[str],
    records: list[str],
) -> tuple[int, float]:
    """Cut one entry's clips into the shard writer; returns clips and seconds written."""
    head = rows[0]
    source, line = head["source"], int(head["line"])
    result = cut_entry(
        [_window(row) for row in rows],
        head["audio_path"],
        source,
        line,
        config,
        manifest_rate=head["audio_sample_rate"],
    )
    figures.counts["entries"] += 1
    if result.source_rate is not None:
        figures.counts["files_read"] += 1
        figures.counts["files_rate_mismatch"] += int(result.rate_mismatch)
    written, total = 0, 0.0
    for clip in result.clips:
        seconds = clip.frames / config.sample_rate
        if clip.audio is not None and clip.meta is not None:
            writer.add(clip.key, [(config.codec, clip.audio), ("json", clip.meta)], seconds)
            figures.counts["clips_written"] += 1
            figures.counts["bytes_written"] += len(clip.audio)
            figures.seconds["seconds_written"] += seconds
            written, total = written + 1, total + seconds
            continue
        w = clip.window
        reason = clip.reason or "unreadable"
        figures.counts[f"clips_lost_{reason}"] += 1
        figures.seconds[f"seconds_lost_{reason}"] += max(0.0, w.end - w.start)
        kinds.append(KIND_AUDIO_REJECTED)
        records.append(
            json.dumps(
                {
                    "source": source,
                    "line": line,
                    "window": w.window,
                    "position": w.position,
                    "key": clip.key,
                    "audio_filepath": head["audio_path"],
                    "start": w.start,
                    "end": w.end,
                    "reason": reason,
                    "error": clip.error,
                },
                ensure_ascii=False,
            )
        )
    return written, total


def cut_audio(
    windows_df: DataFrame,
    config: AudioConfig,
    attempts_dir: str,
    partitions: int,
    progress: tuple[Counter, Counter] | None = None,
) -> DataFrame:
    """The audio step as a DataFrame of ``(kind, record)`` rows (nothing runs yet).

    Args:
        windows_df: Staged window rows (:data:`AUDIO_WINDOWS_SCHEMA`).
        config: The ``audio`` settings.
        attempts_dir: Where task attempts write shards (inside the run's staging).
        partitions: Tasks; each entry's windows go to one of them.
        progress: Counters of clips and of their milliseconds (for the status line).
    """
    ordered = windows_df.repartition(partitions, "source", "line").sortWithinPartitions(
        "source", "line", "position"
    )
    cut = partial(
        cut_window_batches,
        config=config,
        attempts_url=fsspec_url(attempts_dir),
        progress=progress,
    )
    return ordered.mapInArrow(cut, AUDIO_RESULT_SCHEMA)


def sum_audio_figures(spark: SparkSession, staged_dir: str) -> dict[str, Any]:
    """The step's figures summed over the committed tasks (one row reaches the driver)."""
    where = escape_glob(f"{staged_dir}/kind={KIND_AUDIO_FIGURES}")
    figures_df = spark.read.schema(AUDIO_FIGURES_SCHEMA).json(where)
    names = [*AUDIO_COUNTS, *AUDIO_SECONDS]
    (row,) = figures_df.agg(*(F.coalesce(F.sum(n), F.lit(0)).alias(n) for n in names)).collect()
    return row.asDict()


def publish_shards(
    spark: SparkSession, fs: FileSystem, staged_dir: str, attempts_dir: str, shards_dir: str
) -> list[dict[str, Any]]:
    """Move the committed attempts' shards into ``shards_dir``; drop every other file.

    Returns:
        One ``{name, clips, bytes, seconds}`` per published shard, by name.
    """
    where = escape_glob(f"{staged_dir}/kind={KIND_SHARD}")
    fs.mkdirs(shards_dir)
    published: list[dict[str, Any]] = []
    if fs.exists(f"{staged_dir}/kind={KIND_SHARD}"):
        shards_df = spark.read.schema(SHARD_SCHEMA).json(where)
        for row in shards_df.orderBy("name").collect():  # one small row per shard
            shard = row.asDict()
            name = published_name(shard["name"])
            fs.rename(join(attempts_dir, shard["name"]), join(shards_dir, name))
            published.append({**shard, "name": name})
    if fs.exists(attempts_dir):
        fs.delete(attempts_dir)  # files of failed, killed or speculative attempts
    return published
