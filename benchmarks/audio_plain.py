"""The plain way to cut windows out of recordings, as NeMo Curator's snippet extraction does.

One process; for every kept window a ``soundfile.read`` of its frames (the file opened and
sought each time), the mean of the channels, a soxr resample of the snippet (the same
resampler and quality alm_spark uses, so the comparison isolates the reading strategy),
and a 16-bit FLAC encoding in memory. Reads the windows from the job's ``_windows/``
table, so both cut the same windows. Prints one JSON line: clips, hours, and the seconds
spent reading, resampling and encoding.

Usage: python benchmarks/audio_plain.py WINDOWS_DIR MANIFEST_FOLDER [--rate 16000]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alm_spark.audio.cut import to_pcm16


def main() -> int:
    """Cut every window of the table; print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("windows")
    parser.add_argument("folder", help="where the manifest's relative audio paths resolve")
    parser.add_argument("--rate", type=int, default=16000)
    args = parser.parse_args()
    rows = pq.read_table(args.windows, columns=["audio_filepath", "start", "end"]).to_pylist()
    phases = {"read": 0.0, "resample": 0.0, "encode": 0.0}
    clips, frames_out = 0, 0
    started = time.perf_counter()
    for row in rows:
        path = Path(args.folder) / row["audio_filepath"]
        clock = time.perf_counter()
        rate = sf.info(str(path)).samplerate
        first, stop = round(row["start"] * rate), round(row["end"] * rate)
        data, _ = sf.read(str(path), start=first, stop=stop, dtype="float32", always_2d=True)
        phases["read"] += time.perf_counter() - clock
        clock = time.perf_counter()
        mono = data.mean(axis=1, keepdims=True)
        out = soxr.resample(mono, rate, args.rate, quality="HQ")
        want = round(row["end"] * args.rate) - round(row["start"] * args.rate)
        out = out[:want] if len(out) >= want else np.pad(out, ((0, want - len(out)), (0, 0)))
        phases["resample"] += time.perf_counter() - clock
        clock = time.perf_counter()
        buffer = io.BytesIO()
        sf.write(buffer, to_pcm16(out), args.rate, format="FLAC", subtype="PCM_16")
        phases["encode"] += time.perf_counter() - clock
        clips += 1
        frames_out += want
    wall = time.perf_counter() - started
    print(
        json.dumps(
            {
                "clips": clips,
                "hours": frames_out / args.rate / 3600,
                "seconds": round(wall, 3),
                "phases": {k: round(v, 3) for k, v in phases.items()},
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
