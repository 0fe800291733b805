"""Audio benchmark: hours of clips written per second per core, the job against a plain script.

For each source format (44.1 kHz stereo FLAC and MP3 by default) it generates
conversations with matching recordings, runs ``alm-spark run`` with ``audio.enabled``
(local[2], 16 kHz mono FLAC clips in WebDataset shards, the windows table on), then the
plain script (``audio_plain.py``: a ``soundfile.read`` per window and a soxr resample per
snippet, as NeMo Curator's snippet extraction does) over the same windows, each as its own
process measured from outside (wall time, peak RSS of the process tree). Last, the same
job runs again writing equal NeMo shards (the cut and the repack pass), and once more with
``audio.shuffle: false`` (one pass, clips in cut order) to price the shuffle: the default
run's audio step (cut plus the shuffling repack pass) against the unshuffled one's.

Figures: hours of clips per second of wall time per core (the job's 2 cores, the script's
1), for the whole job and for its audio step alone (``run.timings.audio``), and the ratio.

By default three production-shaped recordings per format (30 to 120 minutes each: long
files are where reading strategies differ; libsndfile's MP3 seek costs grow with the
position), generated once into benchmarks/data/.

Usage: python benchmarks/audio_bench.py [--smoke] [--profile P] [--entries N] [--formats flac,mp3]
       [--rounds N] [--shuffle-only]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench import BIN, MASTER, machine, measure  # noqa: E402

from alm_spark.testing.audiogen import write_audio  # noqa: E402
from alm_spark.testing.datagen import generate, write_jsonl  # noqa: E402
from alm_spark.testing.processes import spark_child_env  # noqa: E402

RATE, CHANNELS, CORES = 44100, 2, 2


def ensure_data(fmt: str, profile: str, entries: int) -> Path:
    """Generated conversations and their recordings, made once (MP3 encodes slowly)."""
    folder = HERE / "data" / f"audio-{profile}-{fmt}-{entries}"
    manifest = folder / "manifest.jsonl"
    if manifest.exists():
        return manifest
    # Written aside and renamed into place (a local folder): two benchmarks started at
    # once (the test suite's smokes) never read each other's half-written files.
    making = folder.with_name(f"{folder.name}.making-{os.getpid()}")
    shutil.rmtree(making, ignore_errors=True)
    (making / "audio").mkdir(parents=True)
    lines = []
    for k, entry in enumerate(generate(profile, entries, seed=3)):
        end = max(float(s["end"]) for s in entry["segments"])
        name = f"audio/{k:04d}.{fmt}"
        print(f"writing {folder.name}/{name} ({end / 60:.1f} min)", flush=True)
        write_audio(making / name, end + 1.0, RATE, CHANNELS, fmt)
        lines.append({**entry, "audio_filepath": name, "audio_sample_rate": RATE})
    write_jsonl(making / "manifest.jsonl", lines)
    if folder.exists() and not manifest.exists():  # left half-made by an older version
        shutil.rmtree(folder)
    try:
        making.rename(folder)
    except OSError:  # another process made it first: the same files
        shutil.rmtree(making, ignore_errors=True)
    return manifest


def _run_job(manifest: Path, out: Path, *overrides: str) -> tuple[dict[str, Any], Any]:
    """``alm-spark run`` with audio on, measured from outside; the figures and metrics."""
    job = measure(
        [str(BIN / "alm-spark"), "run", "--quiet", f"input.manifest_path={manifest}",
         f"output.path={out}", f"spark.master={MASTER}", "audio.enabled=true", *overrides],
        spark_child_env(),
    )  # fmt: skip
    if job["returncode"] != 0:
        raise SystemExit(f"job failed ({' '.join(overrides)}):\n{job['stderr'][-3000:]}")
    return job, json.loads((out / "_metrics.json").read_text())


def run_format(
    fmt: str, profile: str, entries: int, results: Path, rounds: int = 2
) -> dict[str, Any]:
    """The job and the plain script on one format's data."""
    manifest = ensure_data(fmt, profile, entries)
    out = results / f"job-{fmt}"
    job, metrics = _run_job(manifest, out, "output.windows_table=true")
    audio, timings = metrics["audio"], metrics["run"]["timings"]
    plain = measure(
        [sys.executable, str(HERE / "audio_plain.py"), str(out / "_windows"), str(manifest.parent)],
        spark_child_env(),
    )
    if plain["returncode"] != 0:
        raise SystemExit(f"plain script failed on {fmt}:\n{plain['stderr'][-3000:]}")
    figures = json.loads(plain["stdout"].strip().splitlines()[-1])
    nemo = _run_nemo(manifest, results / f"nemo-{fmt}")
    shuffle = _shuffle_cost(manifest, results, fmt, rounds, shuffled=metrics)
    hours = audio["hours_written"]
    job_rate = hours / job["wall_seconds"] / CORES
    step_rate = hours / (timings["audio"] + timings.get("audio_repack", 0.0)) / CORES
    plain_rate = figures["hours"] / plain["wall_seconds"]
    return {
        "format": fmt,
        "profile": profile,
        "entries": entries,
        "clips": audio["clips_written"],
        "clips_lost": sum(audio["clips_lost"].values()),
        "hours": round(hours, 4),
        "job": {
            "wall_seconds": job["wall_seconds"],
            "peak_rss_mb": job["peak_rss_mb"],
            "timings": timings,
            "hours_per_second_per_core": round(job_rate, 5),
            "audio_step_hours_per_second_per_core": round(step_rate, 5),
        },
        "plain": {
            "wall_seconds": plain["wall_seconds"],
            "peak_rss_mb": plain["peak_rss_mb"],
            "clips": figures["clips"],
            "hours": round(figures["hours"], 4),
            "phases": figures["phases"],
            "hours_per_second_per_core": round(plain_rate, 5),
        },
        "nemo": nemo,
        "shuffle": shuffle,
        "ratio_job_to_plain": round(job_rate / plain_rate, 2),
        "ratio_audio_step_to_plain": round(step_rate / plain_rate, 2),
        "ratio_nemo_step_to_plain": round(
            nemo["audio_step_hours_per_second_per_core"] / plain_rate, 2
        ),
    }


def _shuffle_cost(
    manifest: Path, results: Path, fmt: str, rounds: int = 2, shuffled: Any = None
) -> dict[str, Any]:
    """The audio step shuffled (cut + repack) against unshuffled (one pass), WebDataset.

    The two run alternately, ``rounds`` times each, and the fastest of each counts: this
    VM's speed drifts between runs by more than the repack costs. ``shuffled``: the
    metrics of a shuffled run already made (the format's main job, which shuffles by
    default), counted as the first round's instead of running another; it ran earlier,
    so that round is not side by side (``--shuffle-only`` keeps every pair together).
    """
    steps: dict[str, list[float]] = {"shuffled": [], "unshuffled": []}
    repack: list[float] = []
    for n in range(rounds):
        for name, setting in (("unshuffled", "false"), ("shuffled", "true")):
            if name == "shuffled" and n == 0 and shuffled is not None:
                metrics = shuffled
            else:
                _, metrics = _run_job(
                    manifest, results / f"{name}-{fmt}-{n}", f"audio.shuffle={setting}"
                )
            timings = metrics["run"]["timings"]
            steps[name].append(timings["audio"] + timings.get("audio_repack", 0.0))
            if name == "shuffled":
                repack.append(timings["audio_repack"])
    best = {name: min(values) for name, values in steps.items()}
    middle = {name: statistics.median(values) for name, values in steps.items()}
    return {
        "audio_step_seconds": round(best["shuffled"], 2),
        "repack_seconds": round(min(repack), 2),
        "unshuffled_audio_step_seconds": round(best["unshuffled"], 2),
        "runs": {name: [round(v, 2) for v in values] for name, values in steps.items()},
        "repack_runs": [round(v, 2) for v in repack],
        "cost": round(best["shuffled"] / best["unshuffled"] - 1, 3),
        "cost_of_medians": round(middle["shuffled"] / middle["unshuffled"] - 1, 3),
    }


def _run_nemo(manifest: Path, out: Path) -> dict[str, Any]:
    """The same job writing equal NeMo shards: the cut plus the repack pass."""
    job, metrics = _run_job(
        manifest, out, "audio.format=nemo", "audio.equal_shards=true", "audio.world_size=2",
        "audio.shard_max_clips=100",
    )  # fmt: skip
    audio, timings = metrics["audio"], metrics["run"]["timings"]
    step = timings["audio"] + timings["audio_repack"]
    return {
        "wall_seconds": job["wall_seconds"],
        "timings": timings,
        "clips": audio["clips_written"],
        "shards": audio["shards"],
        "clips_per_shard": audio["clips_per_shard"],
        "clips_left_out": audio["clips_lost"]["equal_shards"],
        "hours": round(audio["hours_written"], 4),
        "repack_share": round(timings["audio_repack"] / step, 3),
        "audio_step_hours_per_second_per_core": round(audio["hours_written"] / step / CORES, 5),
    }


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| source | clips | hours | job wall s | job h/s/core | audio step h/s/core "
        "| plain wall s | plain h/s/core | job ÷ plain | step ÷ plain "
        "| nemo step h/s/core (repack share) | nemo step ÷ plain | shuffle cost |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['format']} 44.1 kHz stereo | {r['clips']} | {r['hours']:.2f} "
            f"| {r['job']['wall_seconds']:.1f} | {r['job']['hours_per_second_per_core']:.4f} "
            f"| {r['job']['audio_step_hours_per_second_per_core']:.4f} "
            f"| {r['plain']['wall_seconds']:.1f} | {r['plain']['hours_per_second_per_core']:.4f} "
            f"| {r['ratio_job_to_plain']:.2f} | {r['ratio_audio_step_to_plain']:.2f} "
            f"| {r['nemo']['audio_step_hours_per_second_per_core']:.4f} "
            f"({r['nemo']['repack_share']:.0%}) | {r['ratio_nemo_step_to_plain']:.2f} "
            f"| {r['shuffle']['cost']:+.1%} |"
        )
    return "\n".join(lines) + "\n"


def audio_arguments(
    doc: str, name: str, more: Callable[[argparse.ArgumentParser], None] | None = None
) -> tuple[argparse.Namespace, str, int, Path]:
    """The audio benchmarks' command line: the arguments, the datagen profile and entries
    (``--smoke``: one demo conversation), and a new results folder ``<name>-<stamp>``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--smoke", action="store_true", help="one 10-minute conversation (CI)")
    parser.add_argument("--profile", default="production", help="datagen profile of the entries")
    parser.add_argument("--entries", type=int, default=3, help="recordings (per format)")
    parser.add_argument("--results", default=str(HERE / "results"))
    if more is not None:
        more(parser)
    args = parser.parse_args()
    profile, entries = ("demo", 1) if args.smoke else (args.profile, args.entries)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    results = Path(args.results) / f"{name}-{stamp}"
    results.mkdir(parents=True)
    return args, profile, entries, results


def _more_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--formats", default="flac,mp3")
    parser.add_argument("--rounds", type=int, default=0, help="shuffled/unshuffled pairs")
    parser.add_argument("--shuffle-only", action="store_true", help="only price the shuffle")


def main() -> int:
    """Run every format; write summary.json and summary.md; print the table."""
    args, profile, entries, results = audio_arguments(__doc__, "audio", _more_arguments)
    rounds = args.rounds or (1 if args.smoke else 2)
    if args.shuffle_only:  # the shuffle's price alone: shuffled and unshuffled runs alternate
        costs = {f: _shuffle_cost(ensure_data(f, profile, entries), results, f, rounds)
                 for f in args.formats.split(",")}  # fmt: skip
        (results / "shuffle.json").write_text(json.dumps(costs, indent=2) + "\n")
        print(json.dumps(costs, indent=2))
        print(f"results: {results}")
        return 0
    rows = [run_format(f, profile, entries, results, rounds) for f in args.formats.split(",")]
    summary = {"machine": machine(), "master": MASTER, "runs": rows}
    (results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = _table(rows)
    (results / "summary.md").write_text(table)
    print(table, end="")
    print(f"results: {results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
