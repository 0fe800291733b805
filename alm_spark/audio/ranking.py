"""Where each clip goes in the repack pass: its shuffle order, rank, shard and task.

Pure row functions for ``mapInArrow`` (and :func:`order_clips`, the DataFrame step that
applies one). Unshuffled, a clip's rank and shard follow from its place in the first pass
(:class:`~alm_spark.audio.plan.ShardPlan`); shuffled, from a hash of (seed, key) and
the clips counted per bucket of that hash: a bucket's rows go to each repack task its
ranks reach, and the task ranks them as it reads them (:func:`placed_rows`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from typing import Any

import pyarrow as pa
from pyspark.sql import DataFrame

from alm_spark.audio.plan import ShardPlan, order_bucket, shuffle_order
from alm_spark.rows import ORDERED_CLIP, ROUTED_CLIP, TARGETED_CLIP
from alm_spark.storage.schemas import ORDERED_CLIP_SCHEMA
from alm_spark.worker import worker_task


def with_targets(
    batches: Iterator[pa.RecordBatch], plan: ShardPlan, tasks: int
) -> Iterator[pa.RecordBatch]:
    """Unshuffled: add each clip row's ``rank``, ``target`` shard and repack ``task``."""
    for batch in batches:
        shards = batch.column("shard").to_pylist()
        indexes = batch.column("index").to_pylist()
        places = list(zip(shards, indexes, strict=True))
        ranks = [plan.rank(shard, index) for shard, index in places]
        targets = [plan.slot(plan.target(shard, index)) for shard, index in places]
        columns = [
            *batch.columns,
            pa.array(ranks, pa.int64()),
            pa.array(targets, pa.int64()),
            pa.array([plan.task_of(t, tasks) for t in targets], pa.int64()),
        ]
        yield pa.RecordBatch.from_arrays(columns, schema=TARGETED_CLIP.arrow_schema())


def with_order(
    batches: Iterator[pa.RecordBatch], seed: int, waiting: bool
) -> Iterator[pa.RecordBatch]:
    """Add each clip row's ``key``, shuffle ``order`` and ``bucket`` (``mapInArrow``)."""
    for batch in batches:
        keys = [json.loads(meta)["key"] for meta in batch.column("meta").to_pylist()]
        orders = [shuffle_order(seed, key) for key in keys]
        columns = [
            *batch.columns,
            pa.array(keys, pa.string()),
            pa.array(orders, pa.int64()),
            pa.array([order_bucket(waiting, order) for order in orders], pa.int64()),
        ]
        yield pa.RecordBatch.from_arrays(columns, schema=ORDERED_CLIP.arrow_schema())


def order_clips(clips_df: DataFrame, seed: int, waiting: bool) -> DataFrame:
    """Clip rows with their place in the seeded shuffle (:data:`~alm_spark.rows.ORDERED_CLIP`).

    Args:
        clips_df: Clip rows (:data:`~alm_spark.rows.CLIP`).
        seed: ``audio.seed``.
        waiting: Whether these are clips earlier steps left waiting (ranked first).
    """
    order = partial(with_order, seed=seed, waiting=waiting)
    return clips_df.mapInArrow(worker_task(order), ORDERED_CLIP_SCHEMA)


def with_tasks(
    batches: Iterator[pa.RecordBatch], plan: ShardPlan, tasks: int
) -> Iterator[pa.RecordBatch]:
    """Shuffled: send each ordered clip row to the repack tasks of its bucket (``mapInArrow``).

    A row goes to every task whose shards its bucket's ranks reach (mostly one); the
    task ranks the bucket's rows and keeps the clips of its own shards
    (:func:`placed_rows`).
    """
    reached: dict[int, range] = {}
    for batch in batches:
        picked: list[int] = []
        routed: list[int] = []
        for row, bucket in enumerate(batch.column("bucket").to_pylist()):
            if bucket not in reached:
                reached[bucket] = plan.bucket_tasks(bucket, tasks)
            for task in reached[bucket]:
                picked.append(row)
                routed.append(task)
        columns = [*batch.take(pa.array(picked, pa.int64())).columns, pa.array(routed, pa.int64())]
        yield pa.RecordBatch.from_arrays(columns, schema=ROUTED_CLIP.arrow_schema())


def placed_rows(
    batches: Iterator[pa.RecordBatch], plan: ShardPlan, tasks: int
) -> Iterator[dict[str, Any]]:
    """The clip rows a repack task writes, each with its ``rank`` and ``target``, in order.

    Unshuffled, the rows carry both already. Shuffled, a task's rows arrive bucket by
    bucket, sorted by order then key: a clip's rank is its bucket's first rank plus its
    place among them, and the task keeps the clips whose shard it writes (a bucket
    shared with a neighbouring task reaches both).

    Args:
        batches: A task's rows (:data:`~alm_spark.rows.TARGETED_CLIP`; shuffled,
            :data:`~alm_spark.rows.ROUTED_CLIP` sorted by task, bucket, order, key).
        plan: The published layout.
        tasks: The repack tasks.
    """
    group: tuple[int, int] | None = None
    place = 0
    for batch in batches:
        for row in batch.to_pylist():
            if not plan.shuffled:
                yield row
                continue
            current = (row["task"], row["bucket"])
            place = place + 1 if current == group else 0
            group = current
            rank = plan.bucket_ranks[row["bucket"]] + place
            target = plan.slot(plan.target_of(rank))
            if plan.task_of(target, tasks) == row["task"]:
                yield {**row, "rank": rank, "target": target}
