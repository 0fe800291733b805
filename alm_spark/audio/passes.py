"""The audio step on the driver: the cut pass, the repack pass, and placing shards.

The driver plans; executors cut (:mod:`alm_spark.audio.tasks`) and repack
(:mod:`alm_spark.audio.repack`) into the run's scratch folder. The committed attempts'
shards are recorded as moves into ``_shards/``, and the windows whose clip could not be
cut as moves into ``_rejected_audio/``; the commit that makes them live moves them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame

from alm_spark.audio.cut import audio_metrics, repacked_figures
from alm_spark.audio.publish import (
    first_pass_shards,
    placed_shards,
    read_clip_rows,
    sum_audio_figures,
)
from alm_spark.audio.repack import repack_clips
from alm_spark.audio.shards import ShardPlan, plan_shards
from alm_spark.audio.tasks import cut_audio
from alm_spark.names import AUDIO_COUNTS, AUDIO_SECONDS, REJECTED_AUDIO_DIR, SHARDS_DIR
from alm_spark.rows import KIND_AUDIO_REJECTED, KIND_SHARD, KIND_SHARD_MANIFEST
from alm_spark.run.failures import wait_for_running_tasks
from alm_spark.storage.fs import join, relative_to
from alm_spark.storage.publish import part_moves

if TYPE_CHECKING:
    from alm_spark.run.context import RunContext
    from alm_spark.run.output import OutputStep

log = logging.getLogger(__name__)


def cut_audio_into(
    ctx: RunContext, windows_df: DataFrame, counts: tuple[int, int], step: OutputStep
) -> dict[str, Any]:
    """Cut every kept window's clip into shards for ``step``; the ``audio`` metrics block.

    Args:
        ctx: The run (``audio`` settings, scratch folder, progress, timings).
        windows_df: One row per kept window (:data:`~alm_spark.rows.AUDIO_WINDOW`).
        counts: How many windows and entries ``windows_df`` holds.
        step: The commit step the shards and rejected clips are recorded in.
    """
    audio = ctx.config.audio
    windows, entries = counts
    audio_dir = join(ctx.data_dir, "_audio")
    attempts_dir = join(ctx.scratch, "shard-attempts")
    ctx.step(f"cutting {windows:,} clip(s) into {audio.format} shards")
    figures: dict[str, Any] = dict.fromkeys([*AUDIO_COUNTS, *AUDIO_SECONDS], 0)
    with ctx.timed("audio"):
        if windows:
            partitions = audio.partitions or max(1, min(entries, ctx.parallelism() * 2))
            progress = ctx.progress
            counters = None if progress.clips is None else (progress.clips, progress.audio_ms)
            audio_df = cut_audio(windows_df, audio, attempts_dir, partitions, counters)
            progress.audio = True
            with progress:
                audio_df.write.mode("overwrite").partitionBy("kind").text(audio_dir)
            progress.audio = False
            figures = sum_audio_figures(ctx.spark, audio_dir)
    staged_dirs, plan = [audio_dir], None
    if audio.repacked:
        repack_dir, repack_attempts = (
            join(ctx.data_dir, "_repack"),
            join(ctx.scratch, "repack-attempts"),
        )
        with ctx.timed("audio_repack"):
            plan = _repack(ctx, (audio_dir, attempts_dir), (repack_dir, repack_attempts))
            if plan.first_ranks:
                figures = repacked_figures(figures, sum_audio_figures(ctx.spark, repack_dir))
        staged_dirs.append(repack_dir)
        audio_dir, attempts_dir = repack_dir, repack_attempts
    wait_for_running_tasks(ctx.spark)  # a killed speculative attempt may still be writing
    shards, moves = placed_shards(ctx.spark, ctx.fs, audio_dir, attempts_dir)
    for source, name in moves:
        kind = KIND_SHARD if name.endswith(".tar") else KIND_SHARD_MANIFEST
        step.move(relative_to(ctx.output, source), f"{SHARDS_DIR}/{name}", kind)
    for folder in (SHARDS_DIR, REJECTED_AUDIO_DIR):
        ctx.fs.mkdirs(join(ctx.output, folder))
        step.folders.add(folder)
    for staged_dir in staged_dirs:
        rejected_dir = join(staged_dir, f"kind={KIND_AUDIO_REJECTED}")
        for source, target in part_moves(ctx.fs, rejected_dir, REJECTED_AUDIO_DIR):
            step.move(relative_to(ctx.output, source), target, KIND_AUDIO_REJECTED)
    return audio_metrics(figures, shards, audio, plan)


def _repack(ctx: RunContext, first: tuple[str, str], second: tuple[str, str]) -> ShardPlan:
    """Plan the published shards and copy the first pass's clips into them.

    Args:
        ctx: The run.
        first: The first pass's staged rows and its attempts' shards.
        second: Where this pass's rows and attempts' shards go.
    """
    audio, fs = ctx.config.audio, ctx.fs
    (first_dir, first_attempts), (repack_dir, repack_attempts) = first, second
    plan = plan_shards(
        first_pass_shards(ctx.spark, fs, first_dir),
        audio.equal_shards,
        audio.world_size,
        audio.shard_max_clips,
        max(1, int(audio.shard_max_mb * 1e6)),
    )
    if plan.first_ranks:
        each = f" of {plan.per_shard:,} clip(s)" if plan.per_shard is not None else ""
        ctx.step(f"repacking the clips into {plan.shards:,} {audio.format} shard(s){each}")
        if plan.shards == 0:
            log.warning(
                "audio.equal_shards: %d clip(s) cannot fill %d shard(s) equally; none is kept "
                "(see _rejected_audio/)",
                plan.clips,
                audio.world_size,
            )
        most = max(1, plan.shards)  # a task per shard at most
        partitions = min(audio.partitions or ctx.parallelism() * 2, most)
        clips_df = read_clip_rows(ctx.spark, first_dir)
        attempts = (first_attempts, repack_attempts)
        repack_df = repack_clips(clips_df, audio, plan, attempts, partitions)
        with ctx.progress:
            repack_df.write.mode("overwrite").partitionBy("kind").text(repack_dir)
    if fs.exists(first_attempts):
        fs.delete(first_attempts)  # the first pass's shards: every clip was copied out
    return plan
