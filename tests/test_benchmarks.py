"""The benchmark harness runs (tiny datasets); speed targets live in docs/PERFORMANCE.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_bench_smoke(tmp_path: Path) -> None:
    bench = str(REPO / "benchmarks" / "bench.py")
    proc = subprocess.run(
        [sys.executable, bench, "--smoke", "--results", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (run,) = tmp_path.iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary) == {"smoke_sample", "smoke_production"}
    job = summary["smoke_sample"]["job"]
    plain = summary["smoke_sample"]["plain"]
    assert job["success"]
    assert plain["success"]
    assert job["entries"] == plain["entries"] == 40
    assert job["windows"] == plain["windows"] > 0
    frames = summary["smoke_production"]["job_df"]
    assert frames["success"]
    assert frames["windows"] == summary["smoke_production"]["plain"]["windows"] > 0
    params = json.loads((run / "smoke_sample" / "job" / "params.json").read_text())
    assert params["lines"] == 40
    assert params["machine"]["cpus"] >= 1
    assert "| smoke_sample |" in (run / "summary.md").read_text()


@pytest.mark.slow
def test_window_logic_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "w.json"
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "window_logic.py"), "--repeat", "1",
         "--json", str(out)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    rows = json.loads(out.read_text())
    assert next(r["segments"] for r in rows) == 1000
    assert all(r["windows"] > 0 and r["fast_seconds"] > 0 for r in rows)


@pytest.mark.slow
def test_audio_bench_smoke(tmp_path: Path) -> None:
    bench = str(REPO / "benchmarks" / "audio_bench.py")
    proc = subprocess.run(
        [sys.executable, bench, "--smoke", "--formats", "flac", "--results", str(tmp_path)],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (run,) = tmp_path.iterdir()
    (row,) = json.loads((run / "summary.json").read_text())["runs"]
    assert row["format"] == "flac"
    assert row["clips_lost"] == 0
    assert row["clips"] == row["plain"]["clips"] > 0
    assert row["hours"] == pytest.approx(row["plain"]["hours"], rel=1e-9)
    assert row["job"]["audio_step_hours_per_second_per_core"] > 0
    shuffle = row["shuffle"]
    assert shuffle["repack_seconds"] > 0  # the default run shuffles: a second pass ran
    assert shuffle["unshuffled_audio_step_seconds"] > 0
    assert "| flac 44.1 kHz stereo |" in (run / "summary.md").read_text()


@pytest.mark.slow
def test_shards_bench_smoke(tmp_path: Path) -> None:
    bench = str(REPO / "benchmarks" / "shards_bench.py")
    proc = subprocess.run(
        [sys.executable, bench, "--smoke", "--results", str(tmp_path)],
        capture_output=True, text=True, timeout=900, check=False, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (run,) = tmp_path.iterdir()
    summary = json.loads((run / "summary.json").read_text())
    s3 = summary["s3"]
    assert s3["same_clips"]
    assert s3["clips"] > 0
    (recording,) = s3["recordings"]
    assert recording["gets"] >= 1
    assert 0 < recording["read_to_span_bound"] <= 1.0
    assert summary["verify"]["decode"]["hours_per_second_per_core"] > 0
    assert "verify --local (decode)" in proc.stdout
