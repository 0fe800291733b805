"""Benchmarks: the job against a plain Python script and against Spark's I/O floor.

For each dataset, every variant runs as its own process, side by side in one
invocation, and is measured from outside: wall time and the peak resident memory of
its whole process tree (driver, JVM and Python workers together).

Variants:
  job         alm-spark run, local[2] (the default fused engine)
  job_df      the same with spark.engine=dataframe (the DataFrame API's shape)
  plain       one Python process, json.loads per line, the literal spec transcription
              (the reference's algorithmic cost), json.dumps
  plain_fast  the same script with alm_spark's window logic
  floor       Spark reading the input as text and writing it back, local[2]

Usage: python benchmarks/bench.py [--smoke] [--datasets a,b] [--variants job,job_df]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from alm_spark.testing.datagen import generate, write_jsonl  # noqa: E402

BIN = Path(sys.executable).parent
MASTER = "local[2]"


@dataclass(frozen=True)
class Dataset:
    name: str
    profile: str
    lines: int
    seed: int = 1
    repeat: int = 1  # the file is the base data concatenated this many times
    variants: tuple[str, ...] = ("job", "job_df", "plain", "plain_fast", "floor")
    job_conf: dict[str, str] = field(default_factory=dict)

    @property
    def file(self) -> Path:
        suffix = f"x{self.repeat}" if self.repeat > 1 else ""
        return HERE / "data" / f"{self.profile}-{self.lines}-s{self.seed}{suffix}.jsonl"


LOW_MEMORY = {"spark.driver.memory": "1g"}
FULL = [
    Dataset("sample", "sample", 10_000, variants=("job", "plain", "plain_fast", "floor")),
    Dataset("production", "production", 300, job_conf=LOW_MEMORY),
    Dataset(
        "production_8x",
        "production",
        300,
        repeat=8,
        variants=("job", "plain_fast", "floor"),
        job_conf=LOW_MEMORY,
    ),
    Dataset("podcast", "podcast", 1, seed=0, variants=("job", "job_df", "plain", "plain_fast")),
]
#: A few shuffle tasks for a few lines, not Spark's 200 per stage (the DataFrame engine's
#: grouped stages): the smoke runs prove the harness, they measure nothing.
SMOKE_CONF = {"spark.sql.shuffle.partitions": "4"}
#: One Spark run per engine and the plain script beside each: enough to prove the harness.
SMOKE = [
    Dataset("smoke_sample", "sample", 40, variants=("job", "plain"), job_conf=SMOKE_CONF),
    Dataset("smoke_production", "production", 2, variants=("job_df", "plain"), job_conf=SMOKE_CONF),
]


def ensure_data(dataset: Dataset) -> Path:
    """Generate a dataset file once; later runs reuse it."""
    target = dataset.file
    if target.exists():
        return target
    base = HERE / "data" / f"{dataset.profile}-{dataset.lines}-s{dataset.seed}.jsonl"
    if not base.exists():
        print(f"generating {base.name} ...", flush=True)
        write_jsonl(base, generate(dataset.profile, dataset.lines, dataset.seed))
    if dataset.repeat > 1:
        with target.open("wb") as out:
            for _ in range(dataset.repeat):
                with base.open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 24)
    return target


def _tree_rss_kb(root: int) -> int:
    """Resident memory of a process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                stat = handle.read()
            with open(f"/proc/{entry}/statm") as handle:
                pages = int(handle.read().split()[1])
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * os.sysconf("SC_PAGE_SIZE") // 1024
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


def measure(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run a command; wall time and peak RSS of its process tree."""
    peak = 0
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss_kb(proc.pid))
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    return {
        "returncode": proc.returncode,
        "wall_seconds": round(wall, 3),
        "peak_rss_mb": round(peak / 1024, 1),
        "stdout": stdout,
        "stderr": stderr,
    }


def command_for(variant: str, dataset: Dataset, source: Path, out: Path) -> list[str]:
    if variant in ("job", "job_df"):
        conf = [f"spark.conf.{k}={v}" for k, v in dataset.job_conf.items()]
        engine = "dataframe" if variant == "job_df" else "fused"
        return [
            str(BIN / "alm-spark"), "run", "--quiet", f"input.manifest_path={source}",
            f"output.path={out}", f"spark.master={MASTER}", f"spark.engine={engine}", *conf,
        ]  # fmt: skip
    if variant in ("plain", "plain_fast"):
        impl = "oracle" if variant == "plain" else "fast"
        return [
            sys.executable,
            str(HERE / "plain_script.py"),
            str(source),
            str(out),
            "--impl",
            impl,
        ]
    return [sys.executable, str(HERE / "spark_floor.py"), str(source), str(out), MASTER]


def counts_for(variant: str, run: dict[str, Any], out: Path) -> dict[str, Any]:
    if variant in ("job", "job_df"):
        metrics = json.loads((out / "_metrics.json").read_text())
        return {"entries": metrics["entries_written"], "windows": metrics["builder_windows"]}
    lines = [line for line in run["stdout"].splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except OSError:
        mem_kb = 0
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def run_dataset(dataset: Dataset, results: Path, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    source = ensure_data(dataset)
    size_mb = source.stat().st_size / 1e6
    rows: dict[str, dict[str, Any]] = {}
    for variant in dataset.variants:
        out = results / dataset.name / variant
        shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        target = out / "out.jsonl" if variant in {"plain", "plain_fast"} else out / "output"
        target.parent.mkdir(parents=True, exist_ok=True)
        command = command_for(variant, dataset, source, target)
        print(f"{dataset.name:>16} {variant:<11} ...", end="", flush=True)
        run = measure(command, env)
        success = run["returncode"] == 0
        counts = counts_for(variant, run, target) if success else {}
        wall = run["wall_seconds"]
        metrics = {
            "success": success,
            "wall_seconds": wall,
            "input_mb": round(size_mb, 2),
            "mb_per_s": round(size_mb / wall, 2),
            "peak_rss_mb": run["peak_rss_mb"],
            **counts,
        }
        for key in ("entries", "windows"):
            if key in counts:
                metrics[f"{key}_per_s"] = round(counts[key] / wall, 1)
        params = {
            "dataset": dataset.name,
            "variant": variant,
            "profile": dataset.profile,
            "lines": dataset.lines * dataset.repeat,
            "seed": dataset.seed,
            "input": str(source),
            "command": command,
            "machine": machine(),
        }
        (out / "params.json").write_text(json.dumps(params, indent=2) + "\n")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        if not success:
            (out / "stderr.txt").write_text(run["stderr"])
        shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(
            missing_ok=True
        )
        status = "ok" if success else f"FAILED (exit {run['returncode']}, see stderr.txt)"
        rate, peak = metrics["mb_per_s"], run["peak_rss_mb"]
        print(f" {wall:8.1f} s  {rate:7.1f} MB/s  {peak:7.0f} MB  {status}")
        rows[variant] = metrics
    return rows


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> str:
    if not a or not b or not a.get("success") or not b.get("success"):
        return "-"
    return f"{a['wall_seconds'] / b['wall_seconds']:.2f}"


def summary_table(all_rows: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = [
        "| dataset | input MB | job s | job_df s | plain s | plain_fast s | floor s | job/plain | "
        "job/plain_fast | job/floor | job_df/job | job MB/s | job peak MB | job_df peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, rows in all_rows.items():
        job, job_df = rows.get("job"), rows.get("job_df")
        cells = {
            v: f"{r['wall_seconds']:.1f}" if (r := rows.get(v)) and r["success"] else "-"
            for v in ("job", "job_df", "plain", "plain_fast", "floor")
        }
        size = next(iter(rows.values()))["input_mb"]
        lines.append(
            f"| {name} | {size:.0f} | {cells['job']} | {cells['job_df']} | {cells['plain']} | "
            f"{cells['plain_fast']} | {cells['floor']} | {_ratio(job, rows.get('plain'))} | "
            f"{_ratio(job, rows.get('plain_fast'))} | {_ratio(job, rows.get('floor'))} | "
            f"{_ratio(job_df, job)} | {job['mb_per_s'] if job else '-'} | "
            f"{job['peak_rss_mb'] if job else '-'} | "
            f"{job_df['peak_rss_mb'] if job_df else '-'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny datasets (CI)")
    parser.add_argument("--datasets", help="comma-separated subset of dataset names")
    parser.add_argument("--variants", help="comma-separated subset of variants (e.g. job,job_df)")
    parser.add_argument("--results", default=str(HERE / "results"), help="results folder")
    args = parser.parse_args(argv)
    datasets = SMOKE if args.smoke else FULL
    if args.datasets:
        wanted = set(args.datasets.split(","))
        datasets = [d for d in datasets if d.name in wanted]
    if args.variants:
        keep = set(args.variants.split(","))
        datasets = [
            replace(d, variants=tuple(v for v in d.variants if v in keep)) for d in datasets
        ]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    results = Path(args.results) / stamp
    results.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable)
    print(f"machine: {json.dumps(machine())}")
    all_rows = {d.name: run_dataset(d, results, env) for d in datasets}
    table = summary_table(all_rows)
    (results / "summary.md").write_text(table + "\n")
    (results / "summary.json").write_text(json.dumps(all_rows, indent=2) + "\n")
    print()
    print(table)
    print(f"\nresults: {results}")
    failed = [
        f"{d}/{v}" for d, rows in all_rows.items() for v, r in rows.items() if not r["success"]
    ]
    # Every variant that builds windows must agree with the others on what it built.
    for name, rows in all_rows.items():
        built = {v: (r.get("entries"), r.get("windows")) for v, r in rows.items() if "windows" in r}
        if len(set(built.values())) > 1:
            failed.append(f"{name}: variants disagree on entries/windows {built}")
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
