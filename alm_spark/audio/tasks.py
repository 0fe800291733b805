"""The audio step: every kept window cut out of its recording into tar shards, on executors.

Input: the staged window rows (one per item of an entry's ``filtered_windows``, with
``audio_path`` and ``position``). They are hash-partitioned by entry and sorted, so a
task sees each entry's windows together and decodes its recording once
(:func:`~alm_spark.audio.cut.cut_entry`). Each task attempt writes its shards under
names carrying its attempt id, then returns one ``shard`` row per file besides the
``rejected_audio`` rows and one ``audio_figures`` row. Those rows are written through
Spark's commit protocol, so the rows that reach the staging directory are exactly the
committed attempts'; :func:`publish_shards` keeps only their files.

With ``audio.format: nemo`` or ``audio.equal_shards`` the first pass writes only the
audio members and one ``clip`` row per clip (where its bytes sit, its JSON). A second
pass (:func:`repack_clips`) then lays the clips out into the published shards,
numbered from 0 (:class:`~alm_spark.audio.shards.ShardPlan`), with the same
attempt-named files and commit rows.
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

from alm_spark.audio.cut import AUDIO_COUNTS, AUDIO_SECONDS, WindowClip, cut_entry, fsspec_url
from alm_spark.audio.shards import (
    ShardFile,
    ShardPlan,
    ShardWriter,
    attempt_name,
    nemo_manifest_line,
    nemo_manifest_name,
    published_name,
    repacked_shard_name,
)
from alm_spark.config import AudioConfig
from alm_spark.engines.results import Counter
from alm_spark.names import KIND_AUDIO_REJECTED, KIND_CLIP, KIND_SHARD, NEMO_MANIFESTS_DIR
from alm_spark.storage.fs import FileSystem, join
from alm_spark.storage.io import escape_glob
from alm_spark.storage.schemas import WINDOWS_TABLE_SCHEMA

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

#: A shard row: the attempt's file name, what it holds, and its NeMo manifest's name.
SHARD_SCHEMA = StructType(
    [
        StructField("name", StringType(), False),
        StructField("clips", LongType(), False),
        StructField("bytes", LongType(), False),
        StructField("seconds", DoubleType(), False),
        StructField("manifest", StringType(), True),
    ]
)

#: A clip row of the first pass (repacked formats): where its audio member's bytes
#: are in a first-pass shard, its length in seconds and its JSON.
CLIP_SCHEMA = StructType(
    [
        StructField("shard", StringType(), False),
        StructField("index", LongType(), False),
        StructField("offset", LongType(), False),
        StructField("size", LongType(), False),
        StructField("seconds", DoubleType(), False),
        StructField("meta", StringType(), False),
    ]
)
#: A clip row with its place in the published layout (``target`` is the shard
#: number; the plan's shard count for a clip left out).
TARGETED_CLIP_SCHEMA = StructType(
    [
        *CLIP_SCHEMA.fields,
        StructField("rank", LongType(), False),
        StructField("target", LongType(), False),
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
    """A first-pass task attempt's ``index``-th shard (``shard-PPPPP-NNNN.attempt-A.tar``)."""
    return attempt_name(f"shard-{partition:05d}-{index:04d}.tar", attempt)


def _task_attempt() -> tuple[int, int]:
    """This task's partition and attempt id (0, 0 outside Spark, as in unit tests)."""
    from pyspark import TaskContext

    context = TaskContext.get()
    return (context.partitionId(), context.taskAttemptId()) if context else (0, 0)


def _shard_record(shard: ShardFile, manifest: str | None = None) -> str:
    return json.dumps(
        {
            "name": shard.name,
            "clips": shard.clips,
            "bytes": shard.bytes,
            "seconds": shard.seconds,
            "manifest": manifest,
        }
    )


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
        Batches of ``(kind, record)``: ``rejected_audio`` rows (and ``clip`` rows for
        a repacked format), then one ``shard`` row per file this attempt wrote and
        one ``audio_figures`` row.
    """
    import fsspec

    partition, attempt = _task_attempt()
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
            records.append(_shard_record(shard))
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
            if config.repacked:  # the JSON travels in the clip row to the repack pass
                placed = writer.add(clip.key, [(config.codec, clip.audio)], seconds)
                kinds.append(KIND_CLIP)
                records.append(
                    json.dumps(
                        {
                            "shard": placed.shard,
                            "index": placed.index,
                            "offset": placed.offset,
                            "size": placed.size,
                            "seconds": seconds,
                            "meta": clip.meta.decode("utf-8"),
                        }
                    )
                )
            else:
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
        facts = {
            "source": source,
            "line": line,
            "window": w.window,
            "position": w.position,
            "key": clip.key,
            "audio_filepath": head["audio_path"],
            "start": w.start,
            "end": w.end,
        }
        records.append(_rejected_record(facts, reason, clip.error))
    return written, total


def _rejected_record(facts: dict[str, Any], reason: str, error: str | None) -> str:
    """A ``_rejected_audio/`` line: the window's facts, the reason, the error."""
    fields = ("source", "line", "window", "position", "key", "audio_filepath", "start", "end")
    record = {name: facts[name] for name in fields}
    return json.dumps({**record, "reason": reason, "error": error}, ensure_ascii=False)


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


def first_pass_shards(
    spark: SparkSession, fs: FileSystem, staged_dir: str
) -> list[tuple[str, int, int]]:
    """The committed first-pass shards as ``(name, clips, bytes)`` (one row per shard)."""
    rows = _shard_rows(spark, fs, staged_dir)
    return [(row["name"], int(row["clips"]), int(row["bytes"])) for row in rows]


def _shard_rows(spark: SparkSession, fs: FileSystem, staged_dir: str) -> list[dict[str, Any]]:
    """The committed attempts' ``shard`` rows, by name (one small row per shard)."""
    if not fs.exists(f"{staged_dir}/kind={KIND_SHARD}"):
        return []
    where = escape_glob(f"{staged_dir}/kind={KIND_SHARD}")
    shards_df = spark.read.schema(SHARD_SCHEMA).json(where)
    return [row.asDict() for row in shards_df.orderBy("name").collect()]


def with_targets(batches: Iterator[pa.RecordBatch], plan: ShardPlan) -> Iterator[pa.RecordBatch]:
    """Add each clip row's ``rank`` and ``target`` shard (``mapInArrow``)."""
    for batch in batches:
        shards = batch.column("shard").to_pylist()
        indexes = batch.column("index").to_pylist()
        places = list(zip(shards, indexes, strict=True))
        ranks = [plan.rank(shard, index) for shard, index in places]
        targets = [plan.target(shard, index) for shard, index in places]
        columns = [
            *batch.columns,
            pa.array(ranks, pa.int64()),
            pa.array([plan.shards if t is None else t for t in targets], pa.int64()),
        ]
        yield pa.RecordBatch.from_arrays(columns, names=[*batch.schema.names, "rank", "target"])


class _Packer:
    """Writes one published shard after another from clip rows in rank order."""

    def __init__(self, config: AudioConfig, fs: Any, first_root: str, root: str, attempt: int):
        self._config, self._fs = config, fs
        self._first_root, self._root, self._attempt = first_root, root, attempt
        self._target: int | None = None
        self._writer: ShardWriter | None = None
        self._manifest: Any = None
        self._manifest_name: str | None = None
        self._source: tuple[str, Any] | None = None
        self.records: list[str] = []  # one shard row per shard written

    def add(self, row: dict[str, Any], meta: dict[str, Any]) -> int:
        """Copy one clip into shard ``row["target"]``; returns its audio bytes."""
        target = int(row["target"])
        if target != self._target:
            self._finish()
            self._start(target)
        assert self._writer is not None
        audio = self._read(row["shard"], int(row["offset"]), int(row["size"]))
        codec = self._config.codec
        members = [(codec, audio)]
        if self._config.format == "nemo":
            member = f"{meta['key']}.{codec}"
            self._manifest.write((nemo_manifest_line(meta, member, target) + "\n").encode())
        else:
            members.append(("json", row["meta"].encode("utf-8")))
        self._writer.add(meta["key"], members, float(row["seconds"]))
        return len(audio)

    def close(self) -> None:
        """Finish the open shard and close the first-pass file being read."""
        self._finish()
        if self._source is not None:
            self._source[1].close()
            self._source = None

    def abort(self) -> None:
        """Close open files without finishing them (a failed task)."""
        if self._writer is not None:
            self._writer.abort()
        if self._manifest is not None:
            self._manifest.close()
        if self._source is not None:
            self._source[1].close()

    def _start(self, target: int) -> None:
        name = attempt_name(repacked_shard_name(self._config.format, target), self._attempt)
        self._target = target
        self._writer = ShardWriter(
            open_shard=lambda n: self._fs.open(f"{self._root}/{n}", "wb"),
            name_for=lambda _: name,
            max_clips=1 << 62,  # the plan decided what goes in
            max_bytes=1 << 62,
        )
        if self._config.format == "nemo":
            self._manifest_name = attempt_name(nemo_manifest_name(target), self._attempt)
            self._manifest = self._fs.open(f"{self._root}/{self._manifest_name}", "wb")

    def _finish(self) -> None:
        if self._writer is None:
            return
        for shard in self._writer.close():
            self.records.append(_shard_record(shard, self._manifest_name))
        if self._manifest is not None:
            self._manifest.close()
        self._writer = self._manifest = self._manifest_name = None

    def _read(self, shard: str, offset: int, size: int) -> bytes:
        if self._source is None or self._source[0] != shard:
            if self._source is not None:
                self._source[1].close()
            self._source = (shard, self._fs.open(f"{self._first_root}/{shard}", "rb"))
        handle = self._source[1]
        handle.seek(offset)
        data: bytes = handle.read(size)
        if len(data) != size:  # a first-pass shard cut short: never publish a partial clip
            raise OSError(f"{shard}: {size} bytes expected at {offset}, {len(data)} read")
        return data


def repack_clip_batches(
    batches: Iterator[pa.RecordBatch],
    config: AudioConfig,
    plan: ShardPlan,
    first_url: str,
    attempts_url: str,
) -> Iterator[pa.RecordBatch]:
    """Copy clips from the first-pass shards into the published ones (``mapInArrow``).

    Args:
        batches: Rows of :data:`TARGETED_CLIP_SCHEMA`, each target's rows together
            and in rank order.
        config: The ``audio`` settings.
        plan: The layout (for the left-out clips' message).
        first_url: Where the first pass's attempts wrote their shards.
        attempts_url: Where this pass's attempts write theirs.

    Yields:
        Batches of ``(kind, record)``: ``rejected_audio`` rows for the clips left out,
        one ``shard`` row per shard written, one ``audio_figures`` row.
    """
    import fsspec

    _, attempt = _task_attempt()
    fs, first_root = fsspec.core.url_to_fs(first_url)
    root = fsspec.core.url_to_fs(attempts_url)[1]
    fs.makedirs(root, exist_ok=True)
    packer = _Packer(config, fs, first_root, root, attempt)
    figures = _Figures()
    kinds: list[str] = []
    records: list[str] = []
    left_out = f"left out so that each of the {plan.shards} shard(s) holds {plan.per_shard} clip(s)"
    try:
        for batch in batches:
            for row in batch.to_pylist():
                meta = json.loads(row["meta"])
                seconds = float(row["seconds"])
                if int(row["target"]) >= plan.shards:  # seconds of window, as other losses
                    figures.counts["clips_lost_equal_shards"] += 1
                    figures.seconds["seconds_lost_equal_shards"] += meta["end"] - meta["start"]
                    kinds.append(KIND_AUDIO_REJECTED)
                    records.append(_rejected_record(meta, "equal_shards", left_out))
                    continue
                figures.counts["bytes_written"] += packer.add(row, meta)
                figures.counts["clips_written"] += 1
                figures.seconds["seconds_written"] += seconds
            if len(kinds) >= _BATCH_ROWS:
                yield pa.record_batch([kinds, records], schema=_AUDIO_RESULT_ARROW)
                kinds, records = [], []
        packer.close()
    except BaseException:
        packer.abort()
        raise
    kinds += [KIND_SHARD] * len(packer.records) + [KIND_AUDIO_FIGURES]
    records += [*packer.records, figures.record()]
    yield pa.record_batch([kinds, records], schema=_AUDIO_RESULT_ARROW)


def repack_clips(
    spark: SparkSession,
    first_dir: str,
    config: AudioConfig,
    plan: ShardPlan,
    first_attempts_dir: str,
    attempts_dir: str,
    partitions: int,
) -> DataFrame:
    """The repack pass as a DataFrame of ``(kind, record)`` rows (nothing runs yet).

    Each published shard's clips go to one task (range-partitioned by target), in
    first-pass order, so the task reads each first-pass shard front to back.

    Args:
        spark: The session.
        first_dir: The first pass's staged rows (its ``kind=clip`` rows are read).
        config: The ``audio`` settings.
        plan: The published layout.
        first_attempts_dir: Where the first pass's attempts wrote their shards.
        attempts_dir: Where this pass's attempts write the published shards.
        partitions: Tasks at most.
    """
    clips_df = spark.read.schema(CLIP_SCHEMA).json(escape_glob(f"{first_dir}/kind={KIND_CLIP}"))
    targeted = clips_df.mapInArrow(partial(with_targets, plan=plan), TARGETED_CLIP_SCHEMA)
    ordered = targeted.repartitionByRange(partitions, "target").sortWithinPartitions(
        "target", "rank"
    )
    repack = partial(
        repack_clip_batches,
        config=config,
        plan=plan,
        first_url=fsspec_url(first_attempts_dir),
        attempts_url=fsspec_url(attempts_dir),
    )
    return ordered.mapInArrow(repack, AUDIO_RESULT_SCHEMA)


def publish_shards(
    spark: SparkSession, fs: FileSystem, staged_dir: str, attempts_dir: str, shards_dir: str
) -> list[dict[str, Any]]:
    """Move the committed attempts' shards (and manifests) into ``shards_dir``.

    Every other file of ``attempts_dir`` is dropped with it: those of failed, killed
    or speculative attempts.

    Returns:
        One ``{name, clips, bytes, seconds, manifest}`` per published shard, in
        number order.
    """
    fs.mkdirs(shards_dir)
    published: list[dict[str, Any]] = []
    for shard in _shard_rows(spark, fs, staged_dir):
        name = published_name(shard["name"])
        fs.rename(join(attempts_dir, shard["name"]), join(shards_dir, name))
        manifest = shard["manifest"]
        if manifest is not None:
            fs.mkdirs(join(shards_dir, NEMO_MANIFESTS_DIR))
            target = join(shards_dir, NEMO_MANIFESTS_DIR, published_name(manifest))
            fs.rename(join(attempts_dir, manifest), target)
            manifest = f"{NEMO_MANIFESTS_DIR}/{published_name(manifest)}"
        published.append({**shard, "name": name, "manifest": manifest})
    if fs.exists(attempts_dir):
        fs.delete(attempts_dir)
    return sorted(published, key=lambda s: (len(s["name"]), s["name"]))  # audio_2 < audio_10
