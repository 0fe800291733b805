"""Shards benchmark: the audio step reading recordings from an S3 server against local files,
and ``alm-spark verify`` throughput (hours of audio checked per second per core).

Recordings are generated as ``audio_bench.py`` does (44.1 kHz stereo FLAC, conversations
of the given datagen profile), put on a local S3-compatible server (moto, the tests'
``tests/s3server.py``, on 127.0.0.1, stopped by its PID, every request's bytes logged),
and the same job runs twice: recordings on ``s3://`` (``audio.root``, the endpoint in
``audio.storage_options``) and on local disk. Figures: each run's audio step time, their
ratio, and the bytes the server sent per recording against the recording's size and
against its windows' span (first window start to last window end) plus one read-ahead
block. Then ``alm-spark verify --local`` (one process, one core) checks the local run's
output with and without ``--decode``.

Usage: python benchmarks/shards_bench.py [--smoke] [--profile P] [--entries N]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from audio_bench import _run_job, audio_arguments, ensure_data  # noqa: E402
from bench import BIN, machine, measure  # noqa: E402

from alm_spark.audio.cut import READ_AHEAD  # noqa: E402
from alm_spark.testing.processes import spark_child_env  # noqa: E402
from tests.s3server import BUCKET, s3_server  # noqa: E402


def _spans(metrics_out: Path) -> dict[str, tuple[float, float]]:
    """Each recording's first window start and last window end (from ``_windows/``)."""
    import pyarrow.parquet as pq

    spans: dict[str, tuple[float, float]] = {}
    columns = ["audio_filepath", "start", "end"]
    for part in sorted((metrics_out / "_windows").glob("*.parquet")):
        for row in pq.read_table(part, columns=columns).to_pylist():
            name = row["audio_filepath"]
            low, high = spans.get(name, (row["start"], row["end"]))
            spans[name] = (min(low, row["start"]), max(high, row["end"]))
    return spans


def s3_against_local(manifest: Path, results: Path) -> dict[str, Any]:
    """The same audio job with recordings on the S3 server and on local disk."""
    import fsspec
    import soundfile

    folder = manifest.parent
    recordings = sorted((folder / "audio").iterdir())
    (results / "s3").mkdir(parents=True)
    with s3_server(results / "s3") as server:
        fs = fsspec.filesystem("s3")
        for path in recordings:
            fs.put_file(str(path), f"{BUCKET}/bench/audio/{path.name}", ACL="public-read")
        options = json.dumps({"s3": {"endpoint_url": server.url, "anon": True}})
        _, remote = _run_job(
            manifest, results / "remote", f"audio.root=s3://{BUCKET}/bench",
            f"audio.storage_options={options}", "output.windows_table=true",
        )  # fmt: skip
        reads = {p.name: server.bytes_read(f"bench/audio/{p.name}") for p in recordings}
    _, local = _run_job(manifest, results / "local", f"audio.root={folder}")
    spans = _spans(results / "remote")
    per_file = []
    for path in recordings:
        sent, gets = reads[path.name]
        size = path.stat().st_size
        start, end = spans.get(f"audio/{path.name}", (0.0, 0.0))
        duration = soundfile.info(str(path)).duration
        bound = size * (end - start) / duration + READ_AHEAD
        per_file.append({
            "recording": path.name, "bytes": size, "bytes_read": sent, "gets": gets,
            "read_to_size": round(sent / size, 3), "read_to_span_bound": round(sent / bound, 3),
        })  # fmt: skip
    step = {name: m["run"]["timings"]["audio"] + m["run"]["timings"].get("audio_repack", 0.0)
            for name, m in (("remote", remote), ("local", local))}  # fmt: skip
    return {
        "clips": remote["audio"]["clips_written"],
        "same_clips": remote["audio"]["clips_written"] == local["audio"]["clips_written"],
        "audio_step_seconds": step,
        "s3_to_local": round(step["remote"] / step["local"], 3),
        "recordings": per_file,
    }


def verify_throughput(output: Path) -> dict[str, Any]:
    """``alm-spark verify --local`` on a finished output, headers only and decoding."""
    hours = json.loads((output / "_metrics.json").read_text())["audio"]["hours_written"]
    found = {"hours": round(hours, 4)}
    for name, more in (("headers", []), ("decode", ["--decode"])):
        command = [str(BIN / "alm-spark"), "verify", str(output), "--local", *more]
        run = measure(command, spark_child_env())
        if run["returncode"] != 0:
            raise SystemExit(f"verify failed:\n{run['stdout'][-2000:]}{run['stderr'][-2000:]}")
        found[name] = {
            "wall_seconds": run["wall_seconds"],
            "hours_per_second_per_core": round(hours / run["wall_seconds"], 3),
        }
    return found


def main() -> int:
    """Run both measurements; write summary.json; print the figures."""
    _, profile, entries, results = audio_arguments(__doc__, "shards")
    manifest = ensure_data("flac", profile, entries)
    s3 = s3_against_local(manifest, results)
    verified = verify_throughput(results / "local")
    summary = {"machine": machine(), "profile": profile, "entries": entries, "s3": s3,
               "verify": verified}  # fmt: skip
    (results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    step = s3["audio_step_seconds"]
    print(f"audio step: s3 {step['remote']:.1f} s, local {step['local']:.1f} s "
          f"(s3 / local = {s3['s3_to_local']:.2f}); {s3['clips']} clips")  # fmt: skip
    for row in s3["recordings"]:
        print(f"  {row['recording']}: {row['bytes_read']:,} of {row['bytes']:,} bytes in "
              f"{row['gets']} GET(s): {row['read_to_size']:.2f} of the file, "
              f"{row['read_to_span_bound']:.2f} of its span + one block")  # fmt: skip
    for name in ("headers", "decode"):
        figures = verified[name]
        print(f"verify --local ({name}): {verified['hours']:.2f} h in "
              f"{figures['wall_seconds']:.1f} s = {figures['hours_per_second_per_core']:.2f} "
              "h/s/core")  # fmt: skip
    print(f"results: {results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
