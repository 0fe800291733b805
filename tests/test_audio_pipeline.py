"""A run with ``audio.enabled``: shards a WebDataset reader loads, sample-exact clips,
rejected audio with reasons, figures, and keys that do not change between reruns."""

from __future__ import annotations

import contextlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import webdataset as wds

from alm_spark.audio.cut import clip_key, frame_bounds, to_pcm16
from alm_spark.config import load_config
from alm_spark.names import ENGINES
from alm_spark.report.summary import format_summary
from alm_spark.run.job import run_pipeline
from alm_spark.storage.commits import live_files
from alm_spark.storage.fs import FsspecFileSystem
from alm_spark.testing.audiogen import signal, write_audio
from alm_spark.testing.compare import iter_jsonl
from alm_spark.testing.layout import OWN, output_problems
from alm_spark.testing.processes import spark_child_env
from tests.conftest import write_jsonl

#: Small windows, so a short recording gives several.
WINDOW_SETTINGS = [
    "builder.target_window_duration=10",
    "builder.tolerance=0.2",
    "overlap.target_duration=10",
]


def _entry(path: str | None, seconds: float, rate: int = 16000, **extra: Any) -> dict[str, Any]:
    """Two speakers taking turns every 2.5 s."""
    segments = [
        {
            "start": t,
            "end": t + 2.5,
            "speaker": "ab"[k % 2],
            "text": f"turn {k}",
            "metrics": {"bandwidth": 8000},
        }
        for k, t in enumerate(np.arange(0.0, seconds - 2.4, 2.5).tolist())
    ]
    entry = {"audio_sample_rate": rate, "segments": segments, **extra}
    if path is not None:
        entry["audio_filepath"] = path
    return entry


def _inputs(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    (folder / "audio").mkdir(parents=True)
    write_audio(folder / "audio" / "a.flac", 31.0, 16000, 1, "flac")
    write_audio(folder / "audio" / "b.wav", 21.0, 44100, 2, "wav")
    write_audio(folder / "audio" / "short.flac", 8.0, 16000, 1, "flac")
    lines = [
        _entry("audio/a.flac", 30.0),
        _entry("audio/b.wav", 20.0, rate=16000),  # the file says 44.1 kHz: decoded so
        _entry("audio/missing.flac", 20.0),
        _entry("audio/short.flac", 20.0),  # windows past 8 s
        _entry(None, 20.0),
    ]
    return write_jsonl(folder / "m.jsonl", [json.dumps(e) for e in lines])


def _run(spark: Any, source: Path, out: Path, *overrides: str) -> Any:
    config = load_config(
        None,
        [f"input.manifest_path={source}", f"output.path={out}", "audio.enabled=true",
         *WINDOW_SETTINGS, *overrides],
    )  # fmt: skip
    return run_pipeline(spark, config)


@pytest.fixture(scope="module")
def runs(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One input, run with audio by each engine, again in small shards, and without audio."""
    tmp_path = tmp_path_factory.mktemp("audio")
    source = _inputs(tmp_path)
    results = {"source": source}
    for engine in ENGINES:
        results[engine] = _run(spark, source, tmp_path / engine, f"spark.engine={engine}")
    results["rerun"] = _run(spark, source, tmp_path / "rerun", "audio.shard_max_clips=2")
    results["one_task"] = _run(
        spark, source, tmp_path / "one_task", "audio.shard_max_clips=2", "audio.partitions=1"
    )
    results["unshuffled"] = _run(
        spark, source, tmp_path / "unshuffled", "audio.shard_max_clips=2", "audio.shuffle=false"
    )
    results["nemo"] = _run(
        spark, source, tmp_path / "nemo", "audio.format=nemo", "audio.shard_max_clips=2"
    )
    results["nemo_equal"] = _run(
        spark, source, tmp_path / "nemo_equal", "audio.format=nemo", "audio.equal_shards=true",
        "audio.world_size=2", "audio.shard_max_clips=3",
    )  # fmt: skip
    config = load_config(
        None,
        [f"input.manifest_path={source}", f"output.path={tmp_path / 'plain'}", *WINDOW_SETTINGS],
    )
    results["plain"] = run_pipeline(spark, config)
    return results


def _out(result: Any) -> Path:
    return Path(str(result.output_path).removeprefix("file:"))


def _samples(shards: list[Path]) -> dict[str, dict[str, Any]]:
    dataset = wds.WebDataset([str(p) for p in shards], shardshuffle=False)
    return {sample["__key__"]: sample for sample in dataset}


@pytest.mark.parametrize("engine", ENGINES)
def test_every_kept_window_becomes_one_clip_or_one_reason(
    runs: dict[str, Any], engine: str
) -> None:
    source, result = runs["source"], runs[engine]
    out = _out(result)
    audio = result.metrics["audio"]
    windows = result.metrics["filtered_windows"]
    lost = sum(audio["clips_lost"].values())
    assert audio["clips_written"] + lost == windows
    shards = sorted((out / "_shards").glob("*.tar"))
    assert [p.name for p in shards] == audio["shard_files"]
    samples = _samples(shards)
    assert len(samples) == audio["clips_written"]
    rejected = [
        json.loads(line)
        for part in sorted((out / "_rejected_audio").glob("*.jsonl"))
        for line in part.read_text().splitlines()
    ]
    assert len(rejected) == lost
    by_line: dict[int, set[str]] = {}
    for row in rejected:
        by_line.setdefault(row["line"], set()).add(row["reason"])
    assert by_line[3] == {"missing"}
    assert by_line[4] == {"past_end"}
    assert by_line[5] == {"no_path"}
    assert 1 not in by_line
    assert 2 not in by_line
    assert audio["files_rate_mismatch"] == 1
    assert audio["clips_lost"]["missing"] == sum(r["line"] == 3 for r in rejected)
    source_uri = f"file:{source}"
    for row in rejected:
        assert row["key"] == clip_key(source_uri, row["line"], row["position"])
        assert row["key"] not in samples
    # Clips of the 16 kHz FLAC are its samples exactly; all have the right length.
    for key, sample in samples.items():
        meta = json.loads(sample["json"])
        assert key == clip_key(source_uri, meta["line"], meta["position"])
        clip, rate = sf.read(io.BytesIO(sample["flac"]), dtype="int16", always_2d=True)
        first, stop = frame_bounds(meta["start"], meta["end"], 16000)
        assert (rate, clip.shape) == (16000, (stop - first, 1))
        assert meta["duration"] == (stop - first) / 16000
        assert meta["segments"][0]["start"] == 0.0
        if meta["line"] == 1:
            assert np.array_equal(clip, to_pcm16(signal(first, stop - first, 16000, 1)))
            assert meta["audio_filepath"] == "audio/a.flac"
    seconds = sum(len(sf.read(io.BytesIO(s["flac"]))[0]) for s in samples.values()) / 16000
    assert audio["seconds_written"] == pytest.approx(seconds, rel=1e-12)
    report = (out / "_report.html").read_text()
    assert "<h2>Audio clips</h2>" in report
    assert "audio file missing" in report
    summary = format_summary(result.metrics, str(out))
    assert f"Audio clips:         {audio['clips_written']:>10}   (" in summary
    assert f"Audio clips lost:    {lost:>10}   see {out}/_rejected_audio/" in summary


def test_reruns_give_identical_keys_and_clips(runs: dict[str, Any]) -> None:
    clips = []
    for name, most in (("fused", 1000), ("dataframe", 1000), ("rerun", 2)):
        shards = sorted((_out(runs[name]) / "_shards").glob("*.tar"))
        assert all(_count(p) <= most for p in shards)
        clips.append({k: (s["flac"], s["json"]) for k, s in _samples(shards).items()})
    assert clips[0] == clips[1] == clips[2]
    assert len(clips[0]) > 4
    assert len(list((_out(runs["rerun"]) / "_shards").glob("*.tar"))) >= 3


def _keys_by_shard(result: Any) -> list[list[str]]:
    shards = sorted((_out(result) / "_shards").glob("*.tar"))
    with contextlib.ExitStack() as stack:
        tars = [stack.enter_context(tarfile.open(p)) for p in shards]
        return [[m.name.split(".")[0] for m in tar if m.name.endswith(".json")] for tar in tars]


def test_shuffled_shards_follow_the_seeded_order_whatever_the_partitioning(
    runs: dict[str, Any],
) -> None:
    from alm_spark.audio.plan import shuffle_order

    shuffled, unshuffled = _keys_by_shard(runs["rerun"]), _keys_by_shard(runs["unshuffled"])
    keys = sorted(k for shard in unshuffled for k in shard)
    # Shard after shard, the clips in the order of a hash of (seed 0, key), spread evenly.
    assert [k for shard in shuffled for k in shard] == sorted(
        keys, key=lambda k: (shuffle_order(0, k), k)
    )
    counts = [len(shard) for shard in shuffled]
    assert (len(counts), sum(counts), max(counts)) == (-(-len(keys) // 2), len(keys), 2)
    assert [p.name for p in sorted((_out(runs["rerun"]) / "_shards").glob("*.tar"))] == [
        f"shard-{n:06d}.tar" for n in range(len(counts))
    ]
    # Unshuffled, clips stay in cut order: each recording's clips side by side, in order.
    cut_order = [k for shard in unshuffled for k in shard]
    lines = [k.split("-")[2] for k in cut_order]
    runs_of_lines = [line for n, line in enumerate(lines) if n == 0 or lines[n - 1] != line]
    assert len(runs_of_lines) == len(set(lines)) == 2, cut_order  # lines 1 and 2 hold clips
    assert cut_order != [k for shard in shuffled for k in shard]
    # One task or many, the same bytes.
    for name in ("rerun", "one_task"):
        assert (
            runs[name].metrics["audio"]["shard_files"]
            == runs["rerun"].metrics["audio"]["shard_files"]
        )
    for tar in (_out(runs["rerun"]) / "_shards").glob("*.tar"):
        assert tar.read_bytes() == (_out(runs["one_task"]) / "_shards" / tar.name).read_bytes()


def _nemo_samples(shards_dir: Path) -> dict[int, list[tuple[dict[str, Any], bytes]]]:
    """Read NeMo's tarred layout as its loaders do: each tar with its shard manifest."""
    samples = {}
    for tar_path in shards_dir.glob("audio_*.tar"):
        shard_id = int(tar_path.stem.removeprefix("audio_"))
        manifest = shards_dir / "sharded_manifests" / f"manifest_{shard_id}.json"
        lines = [json.loads(line) for line in manifest.read_text().splitlines()]
        with tarfile.open(tar_path) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
        assert sorted(members) == sorted(line["audio_filepath"] for line in lines)
        samples[shard_id] = [(line, members[line["audio_filepath"]]) for line in lines]
    return samples


@pytest.mark.parametrize("name", ["nemo", "nemo_equal"])
def test_nemo_shards_load_with_a_nemo_style_reader(runs: dict[str, Any], name: str) -> None:
    result, out = runs[name], _out(runs[name])
    audio = result.metrics["audio"]
    shards = _nemo_samples(out / "_shards")
    assert sorted(shards) == list(range(audio["shards"]))  # audio__OP_0..N_CL_.tar
    assert sorted(p.name for p in (out / "_shards").iterdir()) == sorted(
        [*(f"audio_{n}.tar" for n in shards), "sharded_manifests"]
    )
    webdataset = _samples(sorted((_out(runs["fused"]) / "_shards").glob("*.tar")))
    clips = 0
    for shard_id, samples in shards.items():
        for line, data in samples:
            assert (line["shard_id"], line["offset"]) == (shard_id, 0)
            assert line["audio_filepath"] == f"{line['key']}.flac"
            frames = sf.info(io.BytesIO(data)).frames
            assert line["duration"] == frames / 16000
            assert data == webdataset[line["key"]]["flac"]  # the same clip as a WebDataset
            meta = json.loads(webdataset[line["key"]]["json"])
            assert line["text"] == meta["text"]
            assert line["source_audio_filepath"] == meta["audio_filepath"]
            assert line["segments"] == meta["segments"]
            clips += 1
    assert clips == audio["clips_written"]
    lost = sum(audio["clips_lost"].values())
    assert clips + lost == result.metrics["filtered_windows"]


def test_equal_nemo_shards_hold_as_many_clips_and_the_rest_is_rejected_with_its_reason(
    runs: dict[str, Any],
) -> None:
    result, out = runs["nemo_equal"], _out(runs["nemo_equal"])
    audio = result.metrics["audio"]
    shards = _nemo_samples(out / "_shards")
    per_shard = audio["clips_per_shard"]
    # 5 clips, at most 3 a shard, 2 ranks: 2 shards of 2, one clip left out.
    assert (audio["shards"], per_shard) == (2, 2)
    assert [len(shards[n]) for n in sorted(shards)] == [per_shard] * audio["shards"]
    all_clips = runs["fused"].metrics["audio"]["clips_written"]
    left_out = all_clips - per_shard * audio["shards"]
    assert audio["clips_lost"]["equal_shards"] == left_out > 0
    rejected = [
        json.loads(line)
        for part in sorted((out / "_rejected_audio").glob("*.jsonl"))
        for line in part.read_text().splitlines()
    ]
    equalized = [row for row in rejected if row["reason"] == "equal_shards"]
    assert len(equalized) == left_out
    kept = {line["key"] for samples in shards.values() for line, _ in samples}
    written = set(_samples(sorted((_out(runs["fused"]) / "_shards").glob("*.tar"))))
    assert {row["key"] for row in equalized} == written - kept
    assert equalized[0]["error"] == (
        f"left out so that each of the {audio['shards']} shard(s) holds {per_shard} clip(s)"
    )
    report = (out / "_report.html").read_text()
    assert "left out to give every shard as many clips" in report
    assert "nemo shards of 2 clips" in report


def _count(shard: Path) -> int:
    with tarfile.open(shard) as tar:
        return len([m for m in tar.getmembers() if m.name.endswith(".json")])


def test_no_attempt_files_are_left_and_the_output_lines_are_unchanged(
    runs: dict[str, Any],
) -> None:
    out = _out(runs["fused"])
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []
    assert all(".attempt-" not in p.name for p in (out / "_shards").iterdir())

    def lines(result: Any) -> list[Any]:
        return [e for p in sorted(_out(result).glob("part-*")) for e in iter_jsonl(p)]

    assert lines(runs["fused"]) == lines(runs["plain"])
    assert "audio" not in runs["plain"].metrics
    assert not (_out(runs["plain"]) / "_shards").exists()


def test_a_manifest_cannot_make_the_run_read_outside_its_root(spark: Any, tmp_path: Path) -> None:
    root = tmp_path / "in" / "audio"
    root.mkdir(parents=True)
    write_audio(root / "a.flac", 12.0, 16000, 1, "flac")
    write_audio(tmp_path / "secret.flac", 12.0, 16000, 1, "flac")  # real audio, outside
    paths = ["a.flac", "../../secret.flac", str(tmp_path / "secret.flac"),
             "http://169.254.169.254/latest/meta-data/a.flac", f"{root}/a.flac"]  # fmt: skip
    source = write_jsonl(
        tmp_path / "in" / "m.jsonl", [json.dumps(_entry(path, 10.0)) for path in paths]
    )
    result = _run(spark, source, tmp_path / "out", f"audio.root={root}")
    audio, out = result.metrics["audio"], _out(result)
    reasons = {
        (row["line"], row["reason"], row["error"])
        for part in sorted((out / "_rejected_audio").glob("*.jsonl"))
        for row in iter_jsonl(part)
    }
    assert reasons == {
        (2, "outside_root", "'../../secret.flac' resolves outside audio.root"),
        (3, "outside_root", f"'{tmp_path / 'secret.flac'}' resolves outside audio.root"),
        (4, "scheme_not_allowed",
         "'http://169.254.169.254/latest/meta-data/a.flac': scheme http is not in "
         "audio.allowed_schemes"),
    }  # fmt: skip
    per_entry = result.metrics["filtered_windows"] // len(paths)
    assert (audio["clips_written"], audio["files_read"]) == (2 * per_entry, 2)
    assert audio["clips_lost"]["outside_root"] == 2 * per_entry
    assert audio["clips_lost"]["scheme_not_allowed"] == per_entry
    recorded = json.loads((out / "_metrics.json").read_text())["config"]["audio"]
    assert (recorded["allow_outside_root"], recorded["allowed_schemes"][:2]) == (
        False,
        ["file", "s3"],
    )


def test_a_step_records_the_committed_attempts_shards_in_number_order(
    spark: Any, tmp_path: Path
) -> None:
    from alm_spark.audio.publish import committed_shards
    from alm_spark.storage.fs import filesystem_for

    staged = tmp_path / "staged"
    (staged / "kind=shard").mkdir(parents=True)
    # The rows Spark committed (another attempt's files are not among them).
    shards = [
        {"name": f"_shards/audio_{n}.tar", "clips": 2, "bytes": 10, "seconds": 1.5,
         "manifest": f"_shards/sharded_manifests/manifest_{n}.json"}
        for n in (10, 2, 9)
    ]  # fmt: skip
    lines = "".join(json.dumps(shard) + "\n" for shard in shards)
    (staged / "kind=shard" / "part-00000.txt").write_text(lines)
    found = committed_shards(spark, filesystem_for(spark), f"file:{staged}")
    assert [s["name"] for s in found] == [f"_shards/audio_{n}.tar" for n in (2, 9, 10)]
    assert found[0] == {**shards[1], "recordings": None}  # written without the count


@pytest.mark.slow
def test_a_run_killed_while_cutting_audio_leaves_the_old_output(run_cli, tmp_path: Path) -> None:
    import os
    import shutil
    import signal as signals
    import subprocess
    import sys
    import time

    folder = tmp_path / "in"
    (folder / "audio").mkdir(parents=True)
    entries = []
    write_audio(folder / "audio" / "0.flac", 301.0, 44100, 2, "flac")
    for k in range(4):
        if k:  # the generator is deterministic: the same bytes, written once
            shutil.copyfile(folder / "audio" / "0.flac", folder / "audio" / f"{k}.flac")
        entries.append(json.dumps(_entry(f"audio/{k}.flac", 300.0)))
    source = write_jsonl(folder / "m.jsonl", entries)
    out = tmp_path / "out"
    env = spark_child_env()
    command = [
        str(Path(sys.executable).parent / "alm-spark"), "run", "-q",
        f"input.manifest_path={source}", f"output.path={out}", "spark.master=local[2]",
        "audio.enabled=true", "audio.shard_max_clips=5", "audio.shuffle=false",
        *WINDOW_SETTINGS,
    ]  # fmt: skip  # one pass: the cut tasks write the shards in place

    def complete_run() -> None:
        """The same command run to its end, in this process (only the killed run needs a
        process of its own)."""
        run = run_cli(command[1:])
        assert run.code == 0, run.err[-3000:]

    complete_run()
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    proc = subprocess.Popen(
        command, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if list(out.glob("_shards/*part-0002-*")):
                break  # the second run is writing shards (in place, or their hidden temps)
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before its audio step was seen"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signals.SIGKILL)
        proc.wait(timeout=60)
    # The old output is still the live one by the commit log, every file as it was.
    live = {Path(p) for p in live_files(FsspecFileSystem(), str(out))}
    assert live == {p for p in before if p.parts[0] != "_commits" and p.name not in OWN}
    assert all((out / p).read_bytes() == before[p] for p in (*live, Path("_metrics.json")))
    assert not (out / "_SUCCESS").exists()  # removed when the run started its work
    # The next run clears what the killed run left and publishes.
    complete_run()
    assert output_problems(out) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    # The same clips, byte for byte, in shards of the new generation.
    def clips(shards: dict[str, bytes]) -> dict[str, bytes]:
        found = {}
        for data in shards.values():
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                found.update({m.name: tar.extractfile(m).read() for m in tar.getmembers()})
        return found

    after = {p.name: p.read_bytes() for p in (out / "_shards").iterdir()}
    assert all(name.startswith("part-0003-") for name in after)
    assert clips(after) == clips({str(p): d for p, d in before.items() if p.parts[0] == "_shards"})


def test_a_recut_from_a_finished_output_gives_the_runs_clips_and_keys(
    spark: Any, runs: dict[str, Any], tmp_path: Path
) -> None:
    from alm_spark.run.recut import recut_audio

    finished = runs["fused"]
    config = load_config(
        None, [f"output.path={tmp_path / 'nemo'}", "audio.enabled=true", "audio.format=nemo",
               "audio.shard_max_clips=2"],
    )  # fmt: skip
    result = recut_audio(spark, config, str(_out(finished)))
    out = _out(result)

    # The same windows cut the same way as the run that built them as NeMo shards.
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    assert files(out / "_shards") == files(_out(runs["nemo"]) / "_shards")
    assert result.metrics["audio"] == runs["nemo"].metrics["audio"]
    assert result.metrics["recut_from"] == str(finished.output_path)
    assert result.metrics["filtered_windows"] == finished.metrics["filtered_windows"]
    assert result.metrics["config"]["builder"] == finished.metrics["config"]["builder"]
    assert result.metrics["config"]["audio"]["format"] == "nemo"
    assert sorted(p.name for p in out.iterdir()) == [
        "_SUCCESS", "_commits", "_metrics.json", "_rejected_audio", "_report.html",
        "_shard_index", "_shards",
    ]  # fmt: skip
    assert output_problems(out) == []
    summary = format_summary(result.metrics, str(out))
    assert f"Windows from:        {finished.output_path}" in summary
    # The finished output is only read.
    assert (_out(finished) / "_SUCCESS").exists()


def test_a_recut_refuses_what_it_cannot_read(
    spark: Any, runs: dict[str, Any], tmp_path: Path
) -> None:
    from alm_spark.errors import ConfigError, InputError, OutputError
    from alm_spark.run.recut import recut_audio

    def recut(finished: Path, *overrides: str) -> None:
        config = load_config(None, ["audio.enabled=true", *overrides])
        recut_audio(spark, config, str(finished))

    plain = _out(runs["plain"])
    with pytest.raises(InputError) as err:
        recut(plain, f"output.path={tmp_path / 'a'}")
    assert str(err.value) == (
        f"file:{plain}: has no _windows/ table to re-cut from (runs write it with "
        "audio.enabled or output.windows_table: true)"
    )
    with pytest.raises(InputError, match="not a finished alm_spark output"):
        recut(runs["source"].parent, f"output.path={tmp_path / 'b'}")
    fused = _out(runs["fused"])
    with pytest.raises(OutputError, match="must not contain each other"):
        recut(fused, f"output.path={fused / 'inside'}")
    with pytest.raises(ConfigError, match=r"^audio\.path_field: a re-cut reads the path"):
        recut(fused, f"output.path={tmp_path / 'c'}", "audio.path_field=path")
    assert not (tmp_path / "a").exists()
    # A re-cut holds no windows; an older version's table lacks columns.
    recut_out = tmp_path / "recut_out"
    recut_out.mkdir()
    (recut_out / "_SUCCESS").write_text("")
    (recut_out / "_metrics.json").write_text(
        json.dumps({"producer": "alm_spark", "recut_from": "file:/data/out"})
    )
    with pytest.raises(InputError) as err:
        recut(recut_out, f"output.path={tmp_path / 'd'}")
    assert str(err.value) == (
        f"file:{recut_out}: is a re-cut and has no _windows/ table; re-cut file:/data/out instead"
    )
    old = tmp_path / "old"
    old.mkdir()
    (old / "_SUCCESS").write_text("")
    (old / "_metrics.json").write_text(json.dumps({"producer": "alm_spark"}))
    spark.createDataFrame([("m.jsonl", 1)], "source string, line long").write.parquet(
        str(old / "_windows")
    )
    with pytest.raises(InputError, match="_windows/ table lacks audio_filepath, audio_sample_rate"):
        recut(old, f"output.path={tmp_path / 'e'}")


def _clips(out: Path) -> dict[str, bytes]:
    """Every member of every shard, by name."""
    found: dict[str, bytes] = {}
    for shard in sorted((out / "_shards").glob("*.tar")):
        with tarfile.open(shard) as tar:
            found.update({m.name: tar.extractfile(m).read() for m in tar.getmembers()})
    return found


def _nemo_lines(out: Path) -> list[str]:
    """The shard manifests' lines, less the shard number (a grown output's are later)."""
    rows = iter_jsonl(out / "_shards" / "sharded_manifests")
    return sorted(json.dumps({**r, "shard_id": None}, sort_keys=True) for r in rows)


def _rejected_clips(out: Path) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in iter_jsonl(out / "_rejected_audio"))


def _rejected_lines(out: Path) -> list[tuple[str, int, str]]:
    rows = iter_jsonl(out / "_rejected")
    return sorted((Path(r["source"]).name, r["line"], r["error"]) for r in rows)


def _numbers(out: Path) -> set[int]:
    return {int(p.stem.split("_")[1]) for p in (out / "_shards").glob("audio_*.tar")}


@pytest.mark.slow  # end to end on the pinned Spark only: the lanes run the Spark layer
def test_an_audio_output_grows_and_a_changed_file_replaces_its_clips(
    spark: Any, tmp_path: Path
) -> None:
    """``update`` with NeMo shards: new clips go into shards numbered on, a changed file's
    step is cut again (its old shards retired), and the output equals a clean run's."""
    folder = tmp_path / "in"
    (folder / "audio").mkdir(parents=True)
    write_audio(folder / "audio" / "a.flac", 31.0, 16000, 1, "flac")
    write_audio(folder / "audio" / "b.wav", 21.0, 16000, 1, "wav")
    write_jsonl(folder / "m1.jsonl", [json.dumps(_entry("audio/a.flac", 30.0))])
    write_jsonl(folder / "m2.jsonl", [json.dumps(_entry("audio/b.wav", 20.0))])
    out, settings = tmp_path / "out", ("audio.format=nemo", "audio.shard_max_clips=2")
    grow = (*settings, "output.mode=update", "output.step_files=1")
    first = _run(spark, folder, out, *grow)
    assert first.metrics["audio"]["shards"] == len(_numbers(out)) == max(_numbers(out)) + 1
    kept = {p.name: p.read_bytes() for p in (out / "_shards").glob("audio_*.tar")}

    write_jsonl(folder / "m3.jsonl", [json.dumps(_entry("audio/missing.flac", 20.0))])
    write_jsonl(folder / "m4.jsonl", [json.dumps(_entry("audio/a.flac", 20.0))])
    _run(spark, folder, out, *grow)
    assert min(_numbers(out) - {int(n[6:-4]) for n in kept}) == len(kept)  # numbered on
    assert all((out / "_shards" / name).read_bytes() == data for name, data in kept.items())

    write_jsonl(folder / "m2.jsonl", [json.dumps(_entry("audio/b.wav", 15.0))])  # changed
    changed = _run(spark, folder, out, *grow)
    assert changed.metrics["run"]["update"]["retired_steps"] == [2]
    clean_out = tmp_path / "clean"
    clean = _run(spark, folder, clean_out, *settings)
    assert _clips(out) == _clips(clean_out)
    assert _nemo_lines(out) == _nemo_lines(clean_out)
    assert _rejected_clips(out) == _rejected_clips(clean_out)
    assert output_problems(out) == []
    ours, theirs = changed.metrics["audio"], clean.metrics["audio"]
    for key in ("clips_written", "bytes_written", "entries", "files_read", "clips_lost"):
        assert ours[key] == theirs[key], key
    assert ours["seconds_written"] == pytest.approx(theirs["seconds_written"], rel=1e-9)
    assert ours["shard_files"] == [f"audio_{n}.tar" for n in sorted(_numbers(out))]


def _shard_sizes(out: Path) -> dict[int, int]:
    """Clips per NeMo shard, by number."""
    sizes = {}
    for shard in (out / "_shards").glob("audio_*.tar"):
        with tarfile.open(shard) as tar:
            sizes[int(shard.stem.split("_")[1])] = len(tar.getmembers())
    return sizes


@pytest.mark.slow  # end to end on the pinned Spark only: the lanes run the Spark layer
def test_equal_shards_over_steps_carry_leftover_clips_to_the_next_step(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Equal shards in commit steps: the clips per shard are fixed by the first step, each
    step publishes whole rounds of ``world_size`` shards, leftover clips wait (recorded)
    for the next step and only the run's last step rejects them. A run failing in its
    second step is finished by ``update`` as a clean run; an update adds shards numbered
    on; a changed input has every step cut again, as a clean run would."""
    import shutil

    from alm_spark.rows import KIND_WAITING
    from alm_spark.run import job
    from alm_spark.storage.commits import CommitLog

    folder = tmp_path / "in"
    (folder / "audio").mkdir(parents=True)
    write_audio(folder / "audio" / "a.flac", 31.0, 16000, 1, "flac")
    for n, seconds in enumerate((30.0, 20.0, 20.0), 1):
        write_jsonl(folder / f"m{n}.jsonl", [json.dumps(_entry("audio/a.flac", seconds))])
    settings = ("audio.format=nemo", "audio.equal_shards=true", "audio.world_size=2",
                "audio.shard_max_clips=2", "output.step_files=1")  # fmt: skip
    reference = _run(spark, folder, tmp_path / "reference", *settings)
    ref_out = _out(reference)
    audio = reference.metrics["audio"]
    per_shard = audio["clips_per_shard"]
    sizes = _shard_sizes(ref_out)
    assert per_shard == 2  # step 1 (3 clips) fills no round of 2 x 2: all wait
    assert set(sizes.values()) == {per_shard}
    assert sorted(sizes) == list(range(len(sizes)))
    assert len(sizes) % 2 == 0
    windows = reference.metrics["filtered_windows"]
    lost = audio["clips_lost"]["equal_shards"]
    assert audio["clips_written"] + lost == windows
    assert 0 < lost < 2 * per_shard
    assert not list((ref_out / "_shards" / "_waiting").glob("*"))
    assert output_problems(ref_out) == []

    # Step 2 fails: step 1 stays committed with its waiting clips; update finishes it.
    out = tmp_path / "out"
    real_write_text, calls = job._write_text, []

    def fails_in_step_two(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("executor lost")
        return real_write_text(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(job, "_write_text", fails_in_step_two)
        with pytest.raises(RuntimeError, match="executor lost"):
            _run(spark, folder, out, *settings)
    pending = CommitLog(FsspecFileSystem(), str(out)).read().pending
    assert pending is not None
    waiting = [f.path for f in pending.files.values() if f.kind == KIND_WAITING]
    assert sorted(Path(p).suffix for p in waiting) == [".jsonl", ".tar"]
    assert all((out / path).exists() for path in waiting)
    resumed = _run(spark, folder, out, *settings, "output.mode=update")
    assert _clips(out) == _clips(ref_out)
    assert _nemo_lines(out) == _nemo_lines(ref_out)
    assert _rejected_clips(out) == _rejected_clips(ref_out)
    assert _shard_sizes(out) == sizes
    assert resumed.metrics["audio"] == audio
    assert not any((out / path).exists() for path in waiting)  # placed, then retired
    assert output_problems(out) == []

    # A new file: shards numbered on, as many clips each; its leftover rejected.
    write_jsonl(folder / "m4.jsonl", [json.dumps(_entry("audio/a.flac", 30.0))] * 2)
    grown = _run(spark, folder, out, *settings, "output.mode=update")
    added = {n: c for n, c in _shard_sizes(out).items() if n not in sizes}
    assert min(added) == len(sizes)
    assert len(added) % 2 == 0
    assert set(added.values()) == {per_shard}
    more = grown.metrics["audio"]
    assert (
        more["clips_written"] + more["clips_lost"]["equal_shards"]
        == (grown.metrics["filtered_windows"])
    )
    assert output_problems(out) == []

    # A changed file: every step is cut again (a step's clips fill the next one's shards),
    # into a new generation, as overwrite would: the old one is live until it closes.
    write_jsonl(folder / "m2.jsonl", [json.dumps(_entry("audio/a.flac", 25.0))])
    live = CommitLog(FsspecFileSystem(), str(out)).read().live
    assert live is not None
    changed = _run(spark, folder, out, *settings, "output.mode=update")
    update = changed.metrics["run"]["update"]
    assert (update["changed"], update["processed"], update["retired_steps"]) == (1, 4, [])
    now = CommitLog(FsspecFileSystem(), str(out)).read().live
    assert now is not None
    assert now.number == live.number + 1
    assert not any((out / path).exists() for path in live.files)
    clean = _run(spark, folder, tmp_path / "clean", *settings)
    assert _clips(out) == _clips(_out(clean))
    assert _nemo_lines(out) == _nemo_lines(_out(clean))
    assert _rejected_clips(out) == _rejected_clips(_out(clean))
    ours, theirs = changed.metrics["audio"], clean.metrics["audio"]
    assert {**ours, "shard_files": None} == {**theirs, "shard_files": None}
    assert output_problems(out) == []

    # Failed in step 2, whose input is then gone: a step with no input places the
    # waiting clip (rejected: it cannot fill a round of shards alone).
    alone = tmp_path / "alone"
    shutil.copytree(folder, alone, ignore=shutil.ignore_patterns("m3.jsonl", "m4.jsonl"))
    calls.clear()
    with monkeypatch.context() as patch:
        patch.setattr(job, "_write_text", fails_in_step_two)
        with pytest.raises(RuntimeError, match="executor lost"):
            _run(spark, alone, tmp_path / "out2", *settings)
    (alone / "m2.jsonl").unlink()
    placed = _run(spark, alone, tmp_path / "out2", *settings, "output.mode=update")
    step_one = placed.metrics["audio"]
    assert (step_one["shards"], step_one["clips_lost"]["equal_shards"]) == (2, 1)
    assert step_one["clips_written"] + 1 == placed.metrics["filtered_windows"]
    assert not list((tmp_path / "out2" / "_shards" / "_waiting").glob("*"))
    assert output_problems(tmp_path / "out2") == []

    # A step with no kept window (its only line is rejected) passes the waiting clips on.
    (alone / "m0.jsonl").write_text("{not json\n")
    (alone / "m2.jsonl").write_text(json.dumps(_entry("audio/a.flac", 20.0)) + "\n")
    gaps = _run(spark, alone, tmp_path / "out3", *settings)
    assert gaps.metrics["lines_rejected"] == 1
    assert gaps.metrics["audio"]["clips_written"] == 4  # 3 waiting + 2: 4 shards of 1, 1 out
    assert output_problems(tmp_path / "out3") == []


@pytest.mark.slow
def test_numbered_shards_of_a_killed_step_are_deleted_by_the_next_run(
    run_cli: Any, tmp_path: Path
) -> None:
    """A run killed after its second step wrote NeMo shards, before that step's record:
    the shards' names carry no step, yet the next run deletes them (the step noted them
    first), and the output is a clean run's."""
    import os
    import signal as signals
    import subprocess
    import sys

    from alm_spark.run.crash import CRASH_ENV

    folder = tmp_path / "in"
    (folder / "audio").mkdir(parents=True)
    write_audio(folder / "audio" / "a.flac", 31.0, 16000, 1, "flac")
    write_jsonl(folder / "m1.jsonl", [json.dumps(_entry("audio/a.flac", 30.0))])
    write_jsonl(folder / "m2.jsonl", [json.dumps(_entry("audio/a.flac", 20.0))])
    out = tmp_path / "out"
    settings = [
        f"input.manifest_path={folder}", f"output.path={out}", "audio.enabled=true",
        "audio.format=nemo", "audio.shard_max_clips=2", "output.step_files=1", *WINDOW_SETTINGS,
    ]  # fmt: skip
    env = spark_child_env()
    command = [str(Path(sys.executable).parent / "alm-spark"), "run", "-q", *settings]
    proc = subprocess.Popen(
        [*command, "spark.master=local[2]"], env={**env, CRASH_ENV: "before_record:2"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    _, err = proc.communicate(timeout=600)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signals.SIGKILL)  # its JVM and Python workers, if any remain
    assert proc.returncode == -signals.SIGKILL, err[-3000:]
    left = sorted(p.name for p in (out / "_shards").glob("audio_*.tar"))
    assert len(left) > 2  # step 1's two shards, and the killed step's
    (folder / "m2.jsonl").unlink()  # the killed step's input is gone: nothing rewrites them
    resumed = run_cli(["run", "-q", *settings, "output.mode=update"])
    assert resumed.code == 0, resumed.err[-3000:]
    assert output_problems(out) == []
    assert sorted(p.name for p in (out / "_shards").glob("audio_*.tar")) == left[:2]
    clean = run_cli(["run", "-q", settings[0], f"output.path={tmp_path / 'clean'}", *settings[2:]])
    assert clean.code == 0
    assert _clips(out) == _clips(tmp_path / "clean")


@pytest.mark.slow  # end to end on the pinned Spark only: the lanes run the Spark layer
def test_a_failed_audio_step_deletes_only_its_own_numbered_shards(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NeMo shards, two steps: step 2 fails after writing its shards. Step 1's shards,
    committed but not yet live, stay; step 2's go; ``update`` finishes the run."""
    from alm_spark.audio import passes

    folder = tmp_path / "in"
    (folder / "audio").mkdir(parents=True)
    write_audio(folder / "audio" / "a.flac", 31.0, 16000, 1, "flac")
    write_jsonl(folder / "m1.jsonl", [json.dumps(_entry("audio/a.flac", 30.0))])
    write_jsonl(folder / "m2.jsonl", [json.dumps(_entry("audio/a.flac", 20.0))])
    out, settings = tmp_path / "out", ("audio.format=nemo", "audio.shard_max_clips=2")
    real = passes._drop_unrecorded_audio
    calls: list[int] = []

    def fails_in_step_two(*args: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("executor lost")
        real(*args)

    monkeypatch.setattr(passes, "_drop_unrecorded_audio", fails_in_step_two)
    with pytest.raises(RuntimeError, match="executor lost"):
        _run(spark, folder, out, *settings, "output.step_files=1")
    monkeypatch.undo()
    step_one = sorted(p.name for p in (out / "_shards").glob("audio_*.tar"))
    assert step_one == ["audio_0.tar", "audio_1.tar"]  # step 2's are gone
    resumed = _run(spark, folder, out, *settings, "output.step_files=1", "output.mode=update")
    assert resumed.metrics["run"]["update"]["skipped"] == 1
    assert output_problems(out) == []
    _run(spark, folder, tmp_path / "clean", *settings)
    assert _clips(out) == _clips(tmp_path / "clean")


def _figures(metrics: dict[str, Any]) -> dict[str, Any]:
    """The figures as JSON text, floats rounded to 9 significant digits (summed per step),
    and how many shards rather than their names (numbers go on after a replaced output's)."""
    kept = {k: v for k, v in metrics.items() if k not in ("run", "config")}
    if "audio" in kept:
        kept["audio"] = {**kept["audio"], "shard_files": len(kept["audio"]["shard_files"])}
    return json.loads(json.dumps(kept), parse_float=lambda text: float(f"{float(text):.9g}"))


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_run_killed_at_each_named_point_is_finished_by_update(
    run_cli: Any, tmp_path: Path
) -> None:
    """SIGKILL at each crash point of a three-step NeMo run with equal shards replacing an
    older output, in its first step and in a later one, then ``update``: the same entries,
    rejected lines, figures, clips (by key and bytes), shard manifests and rejected clips
    as a clean run, no file the log does not call live, and a second ``update`` changes
    nothing. Step 1's clips all wait for step 2, whose leftover waits for step 3."""
    import os
    import shutil
    import signal as signals
    import subprocess
    import sys

    from alm_spark.run.crash import CRASH_ENV, CRASH_POINTS
    from alm_spark.testing.compare import compare_paths

    folder, old = tmp_path / "in", tmp_path / "old"
    for where in (folder, old):
        (where / "audio").mkdir(parents=True)
        write_audio(where / "audio" / "a.flac", 31.0, 16000, 1, "flac")
    write_jsonl(folder / "m1.jsonl", [json.dumps(_entry("audio/a.flac", 30.0)), "{not json"])
    write_jsonl(
        folder / "m2.jsonl",
        [json.dumps(_entry(e, 20.0)) for e in ("audio/a.flac", "audio/gone.flac")],
    )
    write_jsonl(folder / "m3.jsonl", ["[1]", json.dumps(_entry("audio/a.flac", 12.0))])
    write_jsonl(old / "old.jsonl", [json.dumps(_entry("audio/a.flac", 25.0))])
    common = ["audio.enabled=true", "audio.format=nemo", "audio.shard_max_clips=2",
              "audio.equal_shards=true", "audio.world_size=2", "output.step_files=1",
              *WINDOW_SETTINGS]  # fmt: skip

    def command(source: Path, out: Path, *more: str) -> list[str]:
        return ["run", "-q", f"input.manifest_path={source}", f"output.path={out}", *common, *more]

    reference, old_out = tmp_path / "reference", tmp_path / "old_out"
    assert run_cli(command(folder, reference)).code == 0
    expected = _figures(json.loads((reference / "_metrics.json").read_text()))
    assert (expected["audio"]["shards"], expected["audio"]["clips_per_shard"]) == (2, 2)
    assert expected["audio"]["clips_lost"]["equal_shards"] == 2
    assert run_cli(command(old, old_out)).code == 0
    env = spark_child_env()
    binary = str(Path(sys.executable).parent / "alm-spark")
    points = ("after_data_write", "after_data_write:2", "before_record", "before_record:2",
              "between_records", "during_cleanup")  # fmt: skip
    assert {point.partition(":")[0] for point in points} == set(CRASH_POINTS)

    def killed_run(point: str) -> tuple[Path, subprocess.Popen[str]]:
        out = tmp_path / point.replace(":", "-")
        shutil.copytree(old_out, out)  # the older output the run replaces
        proc = subprocess.Popen(
            [binary, *command(folder, out, "spark.master=local[2]")],
            env={**env, CRASH_ENV: point}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )  # fmt: skip
        return out, proc

    # The next point's run starts while this one's update is checked (each kills itself at
    # its named point, whatever the timing): one killed run ahead, never more.
    ahead = [killed_run(points[0])]
    try:
        for n, point in enumerate(points):
            out, proc = ahead.pop(0)
            _, err = proc.communicate(timeout=600)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signals.SIGKILL)  # its JVM and Python workers, if any remain
            if n + 1 < len(points):
                ahead.append(killed_run(points[n + 1]))
            assert proc.returncode == -signals.SIGKILL, (point, err[-3000:])
            assert not (out / "_SUCCESS").exists(), point
            resumed = run_cli(command(folder, out, "output.mode=update"))
            assert resumed.code == 0, (point, resumed.err[-3000:])
            assert compare_paths(out, reference).equal, point
            assert _rejected_lines(out) == _rejected_lines(reference), point
            assert _figures(json.loads((out / "_metrics.json").read_text())) == expected, point
            assert _clips(out) == _clips(reference), point
            assert _nemo_lines(out) == _nemo_lines(reference), point
            assert _rejected_clips(out) == _rejected_clips(reference), point
            assert output_problems(out) == [], point
            before = _files(out)
            assert run_cli(command(folder, out, "output.mode=update")).code == 0
            assert _files(out) == before, point
    finally:  # a failed point leaves no run of ours behind
        for _, proc in ahead:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signals.SIGKILL)
            proc.wait(timeout=60)
