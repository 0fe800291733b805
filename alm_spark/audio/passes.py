"""The audio step on the driver: the cut pass, the repack pass, and what the step records.

The driver plans; executors cut (:mod:`alm_spark.audio.tasks`) and repack
(:mod:`alm_spark.audio.repack`). Shards are written into ``_shards/`` under their final
names and windows whose clip could not be cut into ``_rejected_audio/``; the step's
record names the committed attempts' files, and the files of other attempts are deleted
by the step's name prefix. Nothing is moved or copied afterwards.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame

from alm_spark.audio.cut import audio_metrics, repacked_figures
from alm_spark.audio.plan import EqualLayout, ShardPlan, plan_shards
from alm_spark.audio.publish import (
    clips_per_bucket,
    committed_shards,
    committed_waiting,
    first_pass_shards,
    read_clip_rows,
    sum_audio_figures,
    waiting_clip_rows,
    waiting_tars,
)
from alm_spark.audio.ranking import order_clips
from alm_spark.audio.repack import RepackTarget, numbered_paths, repack_clips
from alm_spark.audio.shards import index_rows, shard_balance
from alm_spark.audio.tasks import cut_audio
from alm_spark.config import AudioConfig
from alm_spark.names import (
    AUDIO_COUNTS,
    AUDIO_SECONDS,
    NEMO_MANIFESTS_DIR,
    NUMBERED_INTENT,
    REJECTED_AUDIO_DIR,
    SHARD_INDEX_DIR,
    SHARD_INDEX_SUFFIX,
    SHARDS_DIR,
    WAITING_DIR,
)
from alm_spark.rows import (
    KIND_AUDIO_REJECTED,
    KIND_CLIP,
    KIND_SHARD,
    KIND_SHARD_INDEX,
    KIND_SHARD_MANIFEST,
    KIND_WAITING,
)
from alm_spark.run.failures import wait_for_running_tasks
from alm_spark.storage.datafiles import fsspec_url
from alm_spark.storage.fs import join
from alm_spark.storage.io import escape_glob, write_text_in_place
from alm_spark.storage.outputs import FileNames
from alm_spark.storage.publish import drop_unrecorded

if TYPE_CHECKING:
    from alm_spark.run.context import RunContext
    from alm_spark.run.output import OutputStep
    from alm_spark.storage.commits import Generation

log = logging.getLogger(__name__)


def audio_folders(config: AudioConfig) -> tuple[str, ...]:
    """The folders the audio step's tasks write into."""
    nemo = (f"{SHARDS_DIR}/{NEMO_MANIFESTS_DIR}",) if config.format == "nemo" else ()
    waiting = (f"{SHARDS_DIR}/{WAITING_DIR}",) if config.equal_shards else ()
    return (SHARDS_DIR, *nemo, *waiting, SHARD_INDEX_DIR, REJECTED_AUDIO_DIR)


def equal_layout(
    config: AudioConfig,
    generation: Generation | None,
    carry: bool,
    retiring: Iterable[int] = (),
) -> EqualLayout | None:
    """Equal shards' layout for the next step of ``generation`` (None without them).

    The clips per shard are those of the generation's first step that published shards,
    leaving out the steps the next step's record retires.
    """
    if not config.equal_shards:
        return None
    gone = set(retiring)
    figures = sorted(generation.figures.items()) if generation is not None else []
    steps = [f["audio"] for n, f in figures if n not in gone and "audio" in f]
    fixed = [s["clips_per_shard"] for s in steps if s.get("clips_per_shard")]
    return EqualLayout(config.world_size, fixed[0] if fixed else None, carry)


def waiting_files(generation: Generation | None, retiring: Iterable[str] = ()) -> list[str]:
    """The files of clips earlier steps left waiting (tars and their rows).

    Less those the step retires anyway (a changed input's steps).
    """
    files = generation.files.values() if generation is not None else ()
    gone = set(retiring)
    return sorted(f.path for f in files if f.kind == KIND_WAITING and f.path not in gone)


def cut_audio_into(
    ctx: RunContext,
    windows_df: DataFrame | None,
    counts: tuple[int, int],
    step: OutputStep,
    equal: tuple[EqualLayout | None, Sequence[str]] = (None, ()),
) -> None:
    """Cut every kept window's clip into shards for ``step``; its figures go in the step.

    Args:
        ctx: The run (``audio`` settings, scratch folder, progress, timings).
        windows_df: One row per kept window (:data:`~alm_spark.rows.AUDIO_WINDOW`);
            None for a step with no input (equal shards' waiting clips only).
        counts: How many windows and entries ``windows_df`` holds.
        step: The commit step the shards and rejected clips are recorded in; its
            ``first_shard`` numbers a repacked format's shards.
        equal: Equal shards' layout for this step, and the files of the clips earlier
            steps left waiting (placed first; the step retires them).
    """
    audio = ctx.config.audio
    windows, entries = counts
    for folder in audio_folders(audio):  # tasks never make folders
        ctx.fs.mkdirs(join(ctx.output, folder))
        if not folder.endswith(WAITING_DIR):  # empty once the run's last step is done
            step.folders.add(folder)
    rows_dir = join(ctx.data_dir, "_audio")
    first_dir = join(ctx.scratch, "clips") if audio.repacked else None
    ctx.step(f"cutting {windows:,} clip(s) into {audio.format} shards")
    figures: dict[str, Any] = dict.fromkeys([*AUDIO_COUNTS, *AUDIO_SECONDS], 0)
    with ctx.timed("audio"):
        if windows and windows_df is not None:
            partitions = audio.partitions or max(1, min(entries, ctx.parallelism() * 2))
            progress = ctx.progress
            counters = None if progress.clips is None else (progress.clips, progress.audio_ms)
            where = first_dir or FileNames(fsspec_url(ctx.output), SHARDS_DIR, step.names)
            audio_df = cut_audio(windows_df, audio, where, partitions, counters)
            progress.audio = True
            with progress:
                audio_df.write.mode("overwrite").partitionBy("kind").text(rows_dir)
            progress.audio = False
            figures = sum_audio_figures(ctx.spark, rows_dir)
    staged_dirs, plan = [rows_dir], None
    if first_dir is not None:
        repack_dir = join(ctx.data_dir, "_repack")
        with ctx.timed("audio_repack"):
            plan = _repack(ctx, step, (rows_dir, first_dir), repack_dir, equal)
            if plan.first_ranks:
                figures = repacked_figures(figures, sum_audio_figures(ctx.spark, repack_dir))
        staged_dirs.append(repack_dir)
    wait_for_running_tasks(ctx.spark)  # a killed speculative attempt may still be writing
    shards = committed_shards(ctx.spark, ctx.fs, staged_dirs[-1])
    for shard in shards:
        step.add(shard["name"], KIND_SHARD)
        if shard["manifest"] is not None:
            step.add(shard["manifest"], KIND_SHARD_MANIFEST)
    if shards:
        step.add(_write_shard_index(ctx, step, shards), KIND_SHARD_INDEX)
    for path in committed_waiting(ctx.spark, ctx.fs, staged_dirs[-1]):
        step.add(path, KIND_WAITING)
    for file in _write_rejected_audio(ctx, staged_dirs, step):
        step.add(file["path"], KIND_AUDIO_REJECTED)
    _drop_unrecorded_audio(ctx, step)
    per_shard = plan.per_shard if plan is not None and plan.shards else None
    fixed = equal[0].per_shard if equal[0] is not None else None
    step.figures["audio"] = {**figures, "clips_per_shard": fixed or per_shard}


def _write_shard_index(ctx: RunContext, step: OutputStep, shards: list[dict[str, Any]]) -> str:
    """Write the step's fragment of the shard index; returns its path in the output.

    One line of figures per shard the step published (a fragment per step: the index is
    never rewritten, and a step's fragment goes when the step is retired).
    """
    rows = [
        {
            "name": shard["name"].removeprefix(f"{SHARDS_DIR}/"),
            "clips": shard["clips"],
            "seconds": shard["seconds"],
            "hours": shard["seconds"] / 3600,
            "bytes": shard["bytes"],
            "recordings": shard["recordings"],
        }
        for shard in shards
    ]
    path = f"{SHARD_INDEX_DIR}/{step.names.prefix}{step.names.run_id}-{SHARD_INDEX_SUFFIX}"
    ctx.fs.write_text(join(ctx.output, path), json.dumps({"shards": rows}, indent=1) + "\n")
    return path


def shard_index(ctx: RunContext, generation: Generation | None) -> list[dict[str, Any]]:
    """The live shards' figures, from the live steps' index fragments (a row per shard)."""
    files = generation.files.values() if generation is not None else ()
    fragments = [f.path for f in files if f.kind == KIND_SHARD_INDEX]
    return index_rows(lambda path: ctx.fs.read_text(join(ctx.output, path)), fragments)


def _write_rejected_audio(
    ctx: RunContext, staged_dirs: Iterable[str], step: OutputStep
) -> list[dict[str, Any]]:
    """Write both passes' ``rejected_audio`` rows into ``_rejected_audio/`` (final names)."""
    found = [join(d, f"kind={KIND_AUDIO_REJECTED}") for d in staged_dirs]
    found = [escape_glob(path) for path in found if ctx.fs.exists(path)]
    if not found:
        return []
    lines_df = ctx.spark.read.text(found)
    where = FileNames(fsspec_url(ctx.output), REJECTED_AUDIO_DIR, step.names)
    return write_text_in_place(lines_df, where, "none", KIND_AUDIO_REJECTED)


def _drop_unrecorded_audio(ctx: RunContext, step: OutputStep) -> None:
    """Delete the audio files (and temporary files) of attempts the step did not keep."""
    wait_for_running_tasks(ctx.spark)
    recorded = {file.path for file in step.added}
    folders = audio_folders(ctx.config.audio)
    dropped = drop_unrecorded(ctx.fs, ctx.output, folders, step.names.prefix, recorded)
    if dropped:
        log.info("removed %d audio file(s) of task attempts Spark did not keep", dropped)


def _repack(
    ctx: RunContext,
    step: OutputStep,
    first: tuple[str, str],
    repack_dir: str,
    equal: tuple[EqualLayout | None, Sequence[str]],
) -> ShardPlan:
    """Plan the numbered shards and copy the first pass's clips into them.

    The names the pass will write are noted in the step's scratch folder first
    (:data:`~alm_spark.names.NUMBERED_INTENT`), so that a run killed meanwhile has
    them deleted by the next one: numbered names carry no step.

    Args:
        ctx: The run.
        step: The commit step (its naming, its first shard number).
        first: The first pass's staged rows and its attempts' shards (in scratch).
        repack_dir: Where this pass's rows go.
        equal: Equal shards' layout, and the waiting clips' files (placed first).
    """
    audio, fs = ctx.config.audio, ctx.fs
    first_dir, first_attempts = first
    layout, waiting = equal
    cut_any = fs.exists(join(first_dir, f"kind={KIND_CLIP}"))  # none when every cut failed
    clips_df = read_clip_rows(ctx.spark, first_dir) if cut_any else None
    rows_files = [join(ctx.output, path) for path in waiting if path.endswith(".jsonl")]
    waiting_df = waiting_clip_rows(ctx.spark, rows_files) if rows_files else None
    waiting_shards = waiting_tars(waiting_df) if waiting_df is not None else None
    if audio.shuffle:  # ranked by a hash of (seed, key): the buckets' counts place them
        if waiting_df is not None:
            waiting_df = order_clips(waiting_df, audio.seed, True)
        if clips_df is not None:
            clips_df = order_clips(clips_df, audio.seed, False)
    sources = [df for df in (waiting_df, clips_df) if df is not None]
    all_clips = sources[0] if sources else None
    if len(sources) == 2:
        all_clips = sources[0].unionByName(sources[1])
    if audio.shuffle and all_clips is not None:  # counted, then ranked: hashed once
        all_clips = all_clips.persist()
    try:
        plan = plan_shards(
            first_pass_shards(ctx.spark, fs, first_dir),
            layout,
            (audio.shard_max_clips, max(1, int(audio.shard_max_mb * 1e6))),
            waiting_shards,
            clips_per_bucket(all_clips) if audio.shuffle and all_clips is not None else None,
        )
        step.retired.extend(waiting)
        if plan.first_ranks:
            each = f" of {plan.per_shard:,} clip(s)" if plan.per_shard is not None else ""
            ctx.step(f"repacking the clips into {plan.shards:,} {audio.format} shard(s){each}")
            if plan.left_out and not plan.carry:
                log.warning(
                    "audio.equal_shards: %d clip(s) cannot fill a round of %d shard(s) equally; "
                    "they are not kept (see _rejected_audio/)",
                    plan.left_out,
                    audio.world_size,
                )
            numbers = range(step.first_shard, step.first_shard + plan.shards)
            fs.write_text(
                join(ctx.scratch, NUMBERED_INTENT), json.dumps(numbered_paths(audio, numbers))
            )
            partitions = min(audio.partitions or ctx.parallelism() * 2, plan.task_targets)
            target = RepackTarget(
                fsspec_url(first_attempts), fsspec_url(ctx.output), step.names, step.first_shard
            )
            if all_clips is None:
                raise RuntimeError("clips were planned but no clip rows were read")
            repack_df = repack_clips(all_clips, audio, plan, target, partitions)
            with ctx.progress:
                repack_df.write.mode("overwrite").partitionBy("kind").text(repack_dir)
    finally:  # a failed repack leaves no cached clip rows in a long-lived session
        if audio.shuffle and all_clips is not None:
            all_clips.unpersist()
    if fs.exists(first_attempts):
        fs.delete(first_attempts)  # the first pass's shards: every clip was copied out
    return plan


def output_audio_metrics(ctx: RunContext, generation: Generation | None) -> dict[str, Any]:
    """The ``audio`` block of ``_metrics.json`` for a whole output: its live steps summed."""
    config = ctx.config.audio
    steps: list[Mapping[str, Any]] = []
    if generation is not None:
        steps = [f["audio"] for _, f in sorted(generation.figures.items()) if "audio" in f]
    names = [*AUDIO_COUNTS, *AUDIO_SECONDS]
    # A step recorded before a reason existed lost no clip for it.
    figures = {name: sum((step.get(name, 0) for step in steps), 0) for name in names}
    files = generation.files.values() if generation is not None else ()
    shards = sorted(
        (f.path.removeprefix(f"{SHARDS_DIR}/") for f in files if f.kind == KIND_SHARD),
        key=lambda name: (len(name), name),  # audio_2 before audio_10
    )
    sizes = [step["clips_per_shard"] for step in steps if step.get("clips_per_shard")]
    metrics = audio_metrics(figures, shards, config, sizes[0] if sizes else None)
    metrics["shard_balance"] = shard_balance(shard_index(ctx, generation))
    return metrics
