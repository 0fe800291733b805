"""The audio step: every kept window cut out of its recording into tar shards, on executors.

Input: the staged window rows (:data:`~alm_spark.rows.AUDIO_WINDOW`, one per item of an
entry's ``filtered_windows``). They are hash-partitioned by entry and sorted, so a
task sees each entry's windows together and decodes its recording once
(:func:`~alm_spark.audio.cut.cut_entry`). Each task attempt writes its shards into
``_shards/`` under final names carrying the step, the task and the attempt
(:class:`~alm_spark.storage.datafiles.DataFile`: whole or absent), then returns one
``shard`` row per file besides the ``rejected_audio`` rows and one ``audio_figures``
row. Those rows are written through Spark's commit protocol, so the rows that reach the
scratch folder are exactly the committed attempts'; the step records only their files.

With ``audio.format: nemo`` or ``audio.equal_shards`` this first pass writes only the
audio members, into the run's scratch folder, and one ``clip`` row per clip;
:mod:`alm_spark.audio.repack` lays the clips out into the numbered shards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame

from alm_spark.audio.cut import EntryRecording, WindowClip, cut_entry
from alm_spark.audio.shards import ShardFile, ShardWriter, attempt_name
from alm_spark.config import AudioConfig
from alm_spark.engines.results import Counter
from alm_spark.names import AUDIO_COUNTS, AUDIO_SECONDS
from alm_spark.rows import CLIP, KIND_AUDIO_FIGURES, KIND_AUDIO_REJECTED, KIND_CLIP, KIND_SHARD
from alm_spark.storage.datafiles import DataFile, fsspec_url, task_attempt
from alm_spark.storage.outputs import FileNames
from alm_spark.storage.schemas import (
    AUDIO_RESULT_ARROW_SCHEMA,
    AUDIO_RESULT_SCHEMA,
)
from alm_spark.worker import worker_task

#: Rows gathered before a batch is handed back to Spark.
BATCH_ROWS = 256


@dataclass
class AudioFigures:
    """A task's audio figures, summed as it goes."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(AUDIO_COUNTS, 0))
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(AUDIO_SECONDS, 0.0))

    def record(self) -> str:
        """The figures as one JSON record."""
        return json.dumps({**self.counts, **self.seconds})


class TaskRows:
    """The ``(kind, record)`` rows a task returns, handed to Spark in batches."""

    def __init__(self) -> None:
        self.kinds: list[str] = []
        self.records: list[str] = []

    def add(self, kind: str, record: str) -> None:
        """One more row."""
        self.kinds.append(kind)
        self.records.append(record)

    def full(self) -> bool:
        """Whether the pending rows make a batch."""
        return len(self.kinds) >= BATCH_ROWS

    def batch(self) -> pa.RecordBatch:
        """The pending rows as a batch; none are pending afterwards."""
        out = pa.record_batch([self.kinds, self.records], schema=AUDIO_RESULT_ARROW_SCHEMA)
        self.kinds, self.records = [], []
        return out


def shard_name(partition: int, index: int, attempt: int) -> str:
    """A first-pass task attempt's ``index``-th shard (``shard-PPPPP-NNNN.attempt-A.tar``)."""
    return attempt_name(f"shard-{partition:05d}-{index:04d}.tar", attempt)


def recording_of(source: str, line: int) -> str:
    """What a shard counts as one recording: the manifest entry its clips were cut from."""
    return f"{source}\n{line}"


def shard_record(shard: ShardFile, manifest: str | None = None) -> str:
    """The ``shard`` row of a file an attempt wrote (and its NeMo manifest's name)."""
    return json.dumps(
        {
            "name": shard.name,
            "clips": shard.clips,
            "bytes": shard.bytes,
            "seconds": shard.seconds,
            "recordings": shard.recordings,
            "manifest": manifest,
        }
    )


def rejected_record(facts: dict[str, Any], reason: str, error: str | None) -> str:
    """A ``_rejected_audio/`` line: the window's facts, the reason, the error."""
    fields = ("source", "line", "window", "position", "key", "audio_filepath", "start", "end")
    record = {name: facts[name] for name in fields}
    return json.dumps({**record, "reason": reason, "error": error}, ensure_ascii=False)


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


def _first_pass_writer(config: AudioConfig, where: FileNames | str) -> ShardWriter:
    """A task attempt's shard writer: into the output (``where``'s names), or scratch."""
    partition, attempt = task_attempt()
    limits = {"max_clips": config.shard_max_clips, "max_bytes": int(config.shard_max_mb * 1e6)}
    if isinstance(where, FileNames):
        return ShardWriter(
            open_shard=lambda name: DataFile(f"{where.root}/{name}", fence=where.fence),
            name_for=lambda index: where.relative(partition, attempt, f"-{index:04d}.tar"),
            **limits,
        )
    import fsspec

    fs, root = fsspec.core.url_to_fs(where)
    fs.makedirs(root, exist_ok=True)
    return ShardWriter(
        open_shard=lambda name: fs.open(f"{root}/{name}", "wb"),
        name_for=lambda index: shard_name(partition, index, attempt),
        **limits,
    )


def cut_window_batches(
    batches: Iterator[pa.RecordBatch],
    config: AudioConfig,
    where: FileNames | str,
    progress: tuple[Counter, Counter] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Cut, encode and pack the clips of a task's entries (``mapInArrow``).

    Args:
        batches: Rows of :data:`~alm_spark.rows.AUDIO_WINDOW`, each entry's rows together and
            in ``position`` order.
        config: The ``audio`` settings.
        where: Where the shards go: into ``_shards/`` of the output, under final names;
            or (a repacked format) an fsspec URL in the run's scratch folder.
        progress: Counters of clips cut and of their milliseconds, added per entry.

    Yields:
        Batches of ``(kind, record)``: ``rejected_audio`` rows (and ``clip`` rows for
        a repacked format), then one ``shard`` row per file this attempt wrote (its
        path in the output, or its name in scratch) and one ``audio_figures`` row.
    """
    writer = _first_pass_writer(config, where)
    figures, out = AudioFigures(), TaskRows()
    try:
        for rows in _entries(batches):
            clips, seconds = _cut_rows(rows, config, writer, figures, out)
            if progress is not None:
                progress[0].add(clips)
                progress[1].add(round(seconds * 1000))
            if out.full():
                yield out.batch()
        for shard in writer.close():
            out.add(KIND_SHARD, shard_record(shard))
    except BaseException:
        writer.abort()
        raise
    out.add(KIND_AUDIO_FIGURES, figures.record())
    yield out.batch()


def _cut_rows(
    rows: list[dict[str, Any]],
    config: AudioConfig,
    writer: ShardWriter,
    figures: AudioFigures,
    out: TaskRows,
) -> tuple[int, float]:
    """Cut one entry's clips into the shard writer; returns clips and seconds written."""
    head = rows[0]
    entry = EntryRecording(
        head["source"], int(head["line"]), head["audio_path"], head["audio_sample_rate"]
    )
    result = cut_entry([_window(row) for row in rows], entry, config)
    figures.counts["entries"] += 1
    if result.source_rate is not None:
        figures.counts["files_read"] += 1
        figures.counts["files_rate_mismatch"] += int(result.rate_mismatch)
    written, total = 0, 0.0
    recording = recording_of(entry.source, entry.line)
    for clip in result.clips:
        seconds = clip.frames / config.sample_rate
        if clip.audio is not None and clip.meta is not None:
            if config.repacked:  # the JSON travels in the clip row to the repack pass
                placed = writer.add(clip.key, [(config.codec, clip.audio)], seconds, recording)
                where = {"shard": placed.shard, "index": placed.index, "offset": placed.offset}
                meta = clip.meta.decode("utf-8")
                row = {**where, "size": placed.size, "seconds": seconds, "meta": meta}
                out.add(KIND_CLIP, json.dumps(CLIP.record(row)))
            else:
                members = [(config.codec, clip.audio), ("json", clip.meta)]
                writer.add(clip.key, members, seconds, recording)
            figures.counts["clips_written"] += 1
            figures.counts["bytes_written"] += len(clip.audio)
            figures.seconds["seconds_written"] += seconds
            written, total = written + 1, total + seconds
            continue
        w = clip.window
        reason = clip.reason or "unreadable"
        figures.counts[f"clips_lost_{reason}"] += 1
        figures.seconds[f"seconds_lost_{reason}"] += max(0.0, w.end - w.start)
        facts = {
            "source": entry.source,
            "line": entry.line,
            "window": w.window,
            "position": w.position,
            "key": clip.key,
            "audio_filepath": entry.audio_path,
            "start": w.start,
            "end": w.end,
        }
        out.add(KIND_AUDIO_REJECTED, rejected_record(facts, reason, clip.error))
    return written, total


def cut_audio(
    windows_df: DataFrame,
    config: AudioConfig,
    where: FileNames | str,
    partitions: int,
    progress: tuple[Counter, Counter] | None = None,
) -> DataFrame:
    """The audio step as a DataFrame of ``(kind, record)`` rows (nothing runs yet).

    Args:
        windows_df: Staged window rows (:data:`~alm_spark.rows.AUDIO_WINDOW`).
        config: The ``audio`` settings.
        where: Where task attempts write shards: ``_shards/`` of the output, or (a
            repacked format) a folder in the run's scratch folder.
        partitions: Tasks; each entry's windows go to one of them.
        progress: Counters of clips and of their milliseconds (for the status line).
    """
    ordered = windows_df.repartition(partitions, "source", "line").sortWithinPartitions(
        "source", "line", "position"
    )
    cut = partial(
        cut_window_batches,
        config=config,
        where=where if isinstance(where, FileNames) else fsspec_url(where),
        progress=progress,
    )
    return ordered.mapInArrow(worker_task(cut), AUDIO_RESULT_SCHEMA)
