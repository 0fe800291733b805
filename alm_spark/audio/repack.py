"""The repack pass on the executors: clips copied into their published shards.

With ``audio.format: nemo`` or ``audio.equal_shards`` the first pass writes only the
audio members and one ``clip`` row per clip (where its bytes sit, its JSON). This pass
lays the clips out into the published shards, numbered from 0
(:class:`~alm_spark.audio.shards.ShardPlan`), with ranged byte copies (no decoding),
the same attempt-named files and commit rows as the first pass.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame

from alm_spark.audio.shards import (
    ShardPlan,
    ShardWriter,
    attempt_name,
    nemo_manifest_line,
    nemo_manifest_name,
    repacked_shard_name,
)
from alm_spark.audio.tasks import (
    AudioFigures,
    TaskRows,
    rejected_record,
    shard_record,
)
from alm_spark.config import AudioConfig
from alm_spark.rows import KIND_AUDIO_FIGURES, KIND_AUDIO_REJECTED, KIND_SHARD
from alm_spark.storage.datafiles import fsspec_url, task_attempt
from alm_spark.storage.schemas import (
    AUDIO_RESULT_SCHEMA,
    TARGETED_CLIP_SCHEMA,
)


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
            self.records.append(shard_record(shard, self._manifest_name))
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

    _, attempt = task_attempt()
    fs, first_root = fsspec.core.url_to_fs(first_url)
    root = fsspec.core.url_to_fs(attempts_url)[1]
    fs.makedirs(root, exist_ok=True)
    packer = _Packer(config, fs, first_root, root, attempt)
    figures = AudioFigures()
    out = TaskRows()
    left_out = f"left out so that each of the {plan.shards} shard(s) holds {plan.per_shard} clip(s)"
    try:
        for batch in batches:
            for row in batch.to_pylist():
                meta = json.loads(row["meta"])
                seconds = float(row["seconds"])
                if int(row["target"]) >= plan.shards:  # seconds of window, as other losses
                    figures.counts["clips_lost_equal_shards"] += 1
                    figures.seconds["seconds_lost_equal_shards"] += meta["end"] - meta["start"]
                    out.add(KIND_AUDIO_REJECTED, rejected_record(meta, "equal_shards", left_out))
                    continue
                figures.counts["bytes_written"] += packer.add(row, meta)
                figures.counts["clips_written"] += 1
                figures.seconds["seconds_written"] += seconds
            if out.full():
                yield out.batch()
        packer.close()
    except BaseException:
        packer.abort()
        raise
    for record in packer.records:
        out.add(KIND_SHARD, record)
    out.add(KIND_AUDIO_FIGURES, figures.record())
    yield out.batch()


def repack_clips(
    clips_df: DataFrame,
    config: AudioConfig,
    plan: ShardPlan,
    attempts: tuple[str, str],
    partitions: int,
) -> DataFrame:
    """The repack pass as a DataFrame of ``(kind, record)`` rows (nothing runs yet).

    Each published shard's clips go to one task (range-partitioned by target), in
    first-pass order, so the task reads each first-pass shard front to back.

    Args:
        clips_df: The first pass's committed clip rows
            (:func:`~alm_spark.audio.publish.read_clip_rows`).
        config: The ``audio`` settings.
        plan: The published layout.
        attempts: Where the first pass's attempts wrote their shards, and where this
            pass's attempts write the published shards.
        partitions: Tasks at most.
    """
    first_attempts_dir, attempts_dir = attempts
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
