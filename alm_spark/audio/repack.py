"""The repack pass on the executors: clips copied into their published shards.

With ``audio.format: nemo`` or ``audio.equal_shards`` the first pass writes only the
audio members, into the run's scratch folder, and one ``clip`` row per clip (where its
bytes sit, its JSON). This pass lays the clips out into numbered shards
(:class:`~alm_spark.audio.plan.ShardPlan`), with ranged byte copies (no decoding),
written into ``_shards/`` under their final names (``audio_N.tar`` and
``sharded_manifests/manifest_N.json``, ``shard-NNNNNN.tar``), numbered on from the
output's last number. Every attempt of a task writes the same bytes under the same
names, so a file appears whole (:class:`~alm_spark.storage.datafiles.DataFile`) and a
second attempt's replaces the first's with equal bytes; the step records the committed
attempts' rows.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame

from alm_spark.audio.plan import ShardPlan
from alm_spark.audio.ranking import placed_rows, with_targets, with_tasks
from alm_spark.audio.shards import (
    ShardWriter,
    nemo_manifest_line,
    nemo_manifest_name,
    repacked_shard_name,
    shar_cut,
    shar_cuts_name,
)
from alm_spark.audio.tasks import (
    AudioFigures,
    TaskRows,
    recording_of,
    rejected_record,
    shard_record,
)
from alm_spark.config import AudioConfig
from alm_spark.engines.transforms import in_tasks
from alm_spark.names import NEMO_MANIFESTS_DIR, SHARDS_DIR, WAITING_DIR
from alm_spark.rows import (
    CLIP,
    KIND_AUDIO_FIGURES,
    KIND_AUDIO_REJECTED,
    KIND_SHARD,
    KIND_WAITING,
    WAITING,
)
from alm_spark.storage.datafiles import DataFile, StepNames
from alm_spark.storage.schemas import (
    AUDIO_RESULT_SCHEMA,
    ROUTED_CLIP_SCHEMA,
    TARGETED_CLIP_SCHEMA,
)
from alm_spark.worker import worker_task


def numbered_paths(config: AudioConfig, numbers: range) -> list[str]:
    """The files the repack pass writes for shards ``numbers``, relative to the output."""
    paths = []
    for number in numbers:
        paths.append(f"{SHARDS_DIR}/{repacked_shard_name(config.format, number)}")
        if config.format == "nemo":
            paths.append(f"{SHARDS_DIR}/{NEMO_MANIFESTS_DIR}/{nemo_manifest_name(number)}")
        elif config.format == "shar":
            paths.append(f"{SHARDS_DIR}/{shar_cuts_name(number)}")
    return paths


@dataclass(frozen=True)
class RepackTarget:
    """Where the repack pass reads and writes (picklable: it travels to the executors).

    Attributes:
        first_pass: Where the first pass's attempts wrote their shards (fsspec URL).
        output: The output, as fsspec opens it.
        names: The commit step's naming (its prefix starts temporary names).
        first_number: The number of the plan's shard 0.
    """

    first_pass: str
    output: str
    names: StepNames
    first_number: int

    def open(self, relative: str) -> DataFile:
        """A numbered file, written whole under its final name."""
        temporary = f"{self.names.prefix}{self.names.run_id}-"
        fence = self.names.fence(self.output)
        return DataFile(f"{self.output}/{relative}", same_bytes_as=temporary, fence=fence)


class _SideFile:
    """A shard's side file: NeMo's manifest, or Shar's cuts.

    Gzipped when its name ends in ``.gz``, with a fixed time and no name in the header, so
    that reruns give the same bytes.
    """

    def __init__(self, file: DataFile, gzipped: bool) -> None:
        self._file = file
        sink: Any = file  # written to only, as gzip's file object
        self._gzip = (
            gzip.GzipFile(filename="", fileobj=sink, mode="wb", mtime=0) if gzipped else None
        )

    def write(self, data: bytes) -> None:
        """Append bytes (compressed when gzipped)."""
        (self._gzip or self._file).write(data)

    def close(self) -> None:
        """Finish the file: it appears whole."""
        if self._gzip is not None:
            self._gzip.close()  # writes the trailer; leaves the file open
        self._file.close()

    def abort(self) -> None:
        """Drop the file (a failed task)."""
        self._file.abort()


class _Packer:
    """Writes one published shard after another from clip rows in rank order."""

    def __init__(
        self,
        config: AudioConfig,
        fs: Any,
        roots: tuple[str, str],
        target: RepackTarget,
        ranged: bool = False,
    ):
        self._config, self._fs, self._ranged = config, fs, ranged
        self._first_root, self._output_root = roots
        self._out = target
        self._target: int | None = None
        self._writer: ShardWriter | None = None
        self._side: _SideFile | None = None  # the shard's manifest or cuts
        self._side_name: str | None = None
        self._source: tuple[str, Any] | None = None
        self._fetched: dict[tuple[str, int], bytes] = {}
        self.records: list[str] = []  # one shard row per shard written

    def add(self, row: dict[str, Any], meta: dict[str, Any]) -> int:
        """Copy one clip into shard ``row["target"]``; returns its audio bytes."""
        target = int(row["target"])
        if target != self._target:
            self._finish()
            self._start(target)
        assert self._writer is not None
        audio = self.read(row)
        codec = self._config.codec
        members = [(codec, audio)]
        if self._config.format == "shar":  # the cut beside, the recording's JSON inside
            line, facts = shar_cut(meta)
            members.append(("json", facts))
            self._write_side(line)
        elif self._config.format == "nemo":
            member = f"{meta['key']}.{codec}"
            self._write_side(nemo_manifest_line(meta, member, self._out.first_number + target))
        else:
            members.append(("json", row["meta"].encode("utf-8")))
        entry = recording_of(meta["source"], int(meta["line"]))
        self._writer.add(meta["key"], members, float(row["seconds"]), entry)
        return len(audio)

    def _write_side(self, line: str) -> None:
        """One line of the open shard's side file (NeMo manifest, Shar cuts)."""
        assert self._side is not None
        self._side.write((line + "\n").encode("utf-8"))

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
        if self._side is not None:
            self._side.abort()
        if self._source is not None:
            self._source[1].close()

    def _start(self, target: int) -> None:
        number = self._out.first_number + target
        shard, *manifest = numbered_paths(self._config, range(number, number + 1))
        self._target = target
        self._writer = ShardWriter(
            open_shard=self._out.open,
            name_for=lambda _: shard,
            max_clips=1 << 62,  # the plan decided what goes in
            max_bytes=1 << 62,
        )
        if manifest:
            self._side_name = manifest[0]
            self._side = _SideFile(self._out.open(manifest[0]), manifest[0].endswith(".gz"))

    def _finish(self) -> None:
        if self._writer is None:
            return
        for shard in self._writer.close():
            self.records.append(shard_record(shard, self._side_name))
        if self._side is not None:
            self._side.close()
        self._writer = self._side = self._side_name = None

    def read(self, row: dict[str, Any]) -> bytes:
        """A clip's audio bytes, where its row says they are."""
        fetched = self._fetched.pop((row["shard"], int(row["offset"])), None)
        if fetched is not None:
            return fetched
        return self._read(row["shard"], int(row["offset"]), int(row["size"]))

    def fetch(self, rows: list[dict[str, Any]]) -> None:
        """Shuffled: read the next clips' bytes together.

        On object stores fsspec sends the ranged requests concurrently, not one after
        another.
        """
        if not self._ranged or len(rows) < 2:
            return
        paths = [self._path(row["shard"]) for row in rows]
        starts = [int(row["offset"]) for row in rows]
        ends = [start + int(row["size"]) for start, row in zip(starts, rows, strict=True)]
        found = self._fs.cat_ranges(paths, starts, ends, on_error="raise")
        for row, start, data in zip(rows, starts, found, strict=True):
            self._fetched[(row["shard"], start)] = data

    def _path(self, shard: str) -> str:
        # Clips an earlier step left waiting are in the output; the rest in scratch.
        waiting = shard.startswith(f"{SHARDS_DIR}/")
        return f"{self._output_root if waiting else self._first_root}/{shard}"

    def _read(self, shard: str, offset: int, size: int) -> bytes:
        path = self._path(shard)
        if self._ranged:  # shuffled: one ranged read per clip, no read-ahead of neighbours
            data: bytes = self._fs.cat_file(path, start=offset, end=offset + size)
        else:  # in first-pass order: each source read front to back through one handle
            if self._source is None or self._source[0] != shard:
                if self._source is not None:
                    self._source[1].close()
                self._source = (shard, self._fs.open(path, "rb"))
            self._source[1].seek(offset)
            data = self._source[1].read(size)
        if len(data) != size:  # a first-pass shard cut short: never publish a partial clip
            raise OSError(f"{shard}: {size} bytes expected at {offset}, {len(data)} read")
        return data


class _Waiting:
    """The clips an equal-shards step leaves out, kept for the next step.

    One tar and a file of their clip rows, named by the step, in ``_shards/_waiting/``;
    only a step that is not the run's last keeps any.
    """

    def __init__(self, target: RepackTarget, codec: str) -> None:
        self._target, self._codec = target, codec
        stem = f"{SHARDS_DIR}/{WAITING_DIR}/{target.names.prefix}{target.names.run_id}"
        self.tar, self.rows = f"{stem}.tar", f"{stem}.jsonl"
        self._writer: ShardWriter | None = None
        self._rows: DataFile | None = None
        self.clips = 0

    def add(self, row: dict[str, Any], audio: bytes, key: str) -> None:
        """Keep one clip's audio, and its row pointing at it."""
        if self._writer is None:
            self._writer = ShardWriter(self._target.open, lambda _: self.tar, 1 << 62, 1 << 62)
            self._rows = self._target.open(self.rows)
        assert self._rows is not None
        placed = self._writer.add(key, [(self._codec, audio)], float(row["seconds"]))
        kept = CLIP.record({"shard": self.tar, "index": placed.index, "offset": placed.offset,
                            "size": placed.size, "seconds": row["seconds"],
                            "meta": row["meta"]})  # fmt: skip
        self._rows.write((json.dumps(kept) + "\n").encode())
        self.clips += 1

    def close(self) -> str | None:
        """Finish both files; the ``waiting_clips`` row naming them (None: no clip)."""
        if self._writer is None or self._rows is None:
            return None
        self._writer.close()
        self._rows.close()
        return json.dumps(
            WAITING.record({"name": self.tar, "rows": self.rows, "clips": self.clips})
        )

    def abort(self) -> None:
        """Drop both files (a failed task)."""
        if self._writer is not None:
            self._writer.abort()
        if self._rows is not None:
            self._rows.abort()


def repack_clip_batches(
    batches: Iterator[pa.RecordBatch],
    config: AudioConfig,
    plan: ShardPlan,
    target: RepackTarget,
    tasks: int,
) -> Iterator[pa.RecordBatch]:
    """Copy clips from the first-pass shards into the published ones (``mapInArrow``).

    Args:
        batches: A repack task's clip rows, as :func:`placed_rows` reads them.
        config: The ``audio`` settings.
        plan: The layout.
        target: Where this pass reads the clips and writes the numbered shards.
        tasks: The repack tasks.

    Yields:
        Batches of ``(kind, record)``: ``rejected_audio`` rows for the clips left out,
        one ``shard`` row per shard written, one ``audio_figures`` row.
    """
    import fsspec

    fs, first_root = fsspec.core.url_to_fs(target.first_pass)
    output_root = fsspec.core.url_to_fs(target.output)[1]
    packer = _Packer(config, fs, (first_root, output_root), target, ranged=plan.shuffled)
    waiting = _Waiting(target, config.codec)
    figures = AudioFigures()
    out = TaskRows()
    left_out = (
        f"left out so that each of the {plan.shards} shard(s) holds {plan.per_shard} clip(s)"
        if plan.shards
        else f"left out: too few clips to fill {config.world_size} shard(s) equally"
    )
    try:
        for row in _fetched_ahead(placed_rows(batches, plan, tasks), packer, plan):
            meta = json.loads(row["meta"])
            seconds = float(row["seconds"])
            if int(row["target"]) >= plan.shards and plan.carry:
                waiting.add(row, packer.read(row), meta["key"])
            elif int(row["target"]) >= plan.shards:  # seconds of window, as other losses
                figures.counts["clips_lost_equal_shards"] += 1
                figures.seconds["seconds_lost_equal_shards"] += meta["end"] - meta["start"]
                out.add(KIND_AUDIO_REJECTED, rejected_record(meta, "equal_shards", left_out))
            else:
                figures.counts["bytes_written"] += packer.add(row, meta)
                figures.counts["clips_written"] += 1
                figures.seconds["seconds_written"] += seconds
            if out.full():
                yield out.batch()
        packer.close()
        kept = waiting.close()
    except BaseException:
        packer.abort()
        waiting.abort()
        raise
    for record in packer.records:
        out.add(KIND_SHARD, record)
    if kept is not None:
        out.add(KIND_WAITING, kept)
    out.add(KIND_AUDIO_FIGURES, figures.record())
    yield out.batch()


#: Shuffled: clips read together, at most this many and about this many bytes.
_FETCH_CLIPS, _FETCH_BYTES = 64, 256 * 1024 * 1024


def _fetched_ahead(
    rows: Iterator[dict[str, Any]], packer: _Packer, plan: ShardPlan
) -> Iterator[dict[str, Any]]:
    """The clip rows, in order, each group's kept clips fetched before its first row is used.

    Unshuffled, nothing is fetched ahead (each source is read front to back).
    """
    group: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        group.append(row)
        size += int(row["size"])
        if len(group) >= _FETCH_CLIPS or size >= _FETCH_BYTES:
            packer.fetch([r for r in group if plan.carry or r["target"] < plan.shards])
            yield from group
            group, size = [], 0
    packer.fetch([r for r in group if plan.carry or r["target"] < plan.shards])
    yield from group


def repack_clips(
    clips_df: DataFrame,
    config: AudioConfig,
    plan: ShardPlan,
    target: RepackTarget,
    tasks: int,
) -> DataFrame:
    """The repack pass as a DataFrame of ``(kind, record)`` rows (nothing runs yet).

    Each task writes a run of the published shards (:meth:`ShardPlan.task_of`), its rows
    sent to it in one exchange (:func:`~alm_spark.engines.transforms.in_tasks`) and
    sorted: unshuffled, in first-pass order, so the task reads each first-pass shard
    front to back; shuffled, bucket by bucket in shuffle order, ranked as they are read.

    Args:
        clips_df: The first pass's committed clip rows
            (:func:`~alm_spark.audio.publish.read_clip_rows`); shuffled, ordered
            (:func:`order_clips`).
        config: The ``audio`` settings.
        plan: The published layout.
        target: Where the first pass's clips are and the numbered shards go.
        tasks: Repack tasks (no more than the shards, and the left-out clips, need).
    """
    if plan.shuffled:
        route, schema = partial(with_tasks, plan=plan, tasks=tasks), ROUTED_CLIP_SCHEMA
        # (shard, index) last: tied rows of a bucket sent to two tasks rank alike in both
        order: tuple[str, ...] = ("task", "bucket", "order", "key", "shard", "index")
    else:
        route, schema = partial(with_targets, plan=plan, tasks=tasks), TARGETED_CLIP_SCHEMA
        order = ("task", "target", "rank")
    routed = clips_df.mapInArrow(worker_task(route), schema)
    ordered = routed.transform(in_tasks, "task", tasks).sortWithinPartitions(*order)
    repack = partial(repack_clip_batches, config=config, plan=plan, target=target, tasks=tasks)
    return ordered.mapInArrow(worker_task(repack), AUDIO_RESULT_SCHEMA)
