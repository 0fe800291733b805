"""``alm-spark verify``: a shard's members, keys and durations; an output against its metrics."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from alm_spark.audio.verify import check_shard
from alm_spark.run.verify import Checks, verify_output
from tests.conftest import write_jsonl


def _flac(frames: int, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(frames, dtype="int16"), rate, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def _tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _meta(key: str, frames: int, rate: int = 16000, **more: Any) -> bytes:
    facts = {"key": key, "duration": frames / rate, "sample_rate": rate, "channels": 1, **more}
    return json.dumps(facts).encode()


def _open(root: Path) -> Any:
    return lambda relative: open(root / relative, "rb")


def test_a_sound_webdataset_shard_passes(tmp_path: Path) -> None:
    _tar(tmp_path / "s.tar", [
        ("a.flac", _flac(16000)), ("a.json", _meta("a", 16000)),
        ("b.flac", _flac(8000)), ("b.json", _meta("b", 8000)),
    ])  # fmt: skip
    check = check_shard(_open(tmp_path), "s.tar", decode=True)
    assert (check.problems, check.clips, check.seconds, check.keys) == ([], 2, 1.5, ["a", "b"])


def test_every_problem_of_a_shard_is_one_line_naming_the_member(tmp_path: Path) -> None:
    _tar(tmp_path / "s.tar", [
        ("a.flac", _flac(16000)),  # no JSON
        ("b.json", _meta("b", 100)),  # no audio
        ("c.flac", _flac(16000)), ("c.json", _meta("c", 17000)),  # duration disagrees
        ("d.flac", b"not audio"), ("d.json", _meta("d", 10)),
        ("e.flac", _flac(160)), ("e.json", _meta("x", 160)),  # the JSON names another key
        ("f.flac", _flac(160, 8000)), ("f.json", _meta("f", 160, 16000)),  # rate disagrees
        ("g.txt", b"?"),
        ("h.flac", _flac(160)), ("h.json", b"{"),
        ("i.flac", _flac(160)), ("i.json", b"[1, 2]"),
    ])  # fmt: skip
    check = check_shard(_open(tmp_path), "s.tar")
    assert check.problems == [
        "s.tar: d.flac: not readable audio: Format not recognised.",
        "s.tar: g.txt: neither a clip's audio nor its JSON",
        "s.tar: h.json: not valid JSON: Expecting property name enclosed in double quotes: "
        "line 1 column 2 (char 1)",
        "s.tar: i.json: not a JSON object",
        "s.tar: a.flac: no facts for it in the shard",
        "s.tar: h.flac: no facts for it in the shard",
        "s.tar: i.flac: no facts for it in the shard",
        "s.tar: b.json: no audio member for it in s.tar",
        "s.tar: d.json: no audio member for it in s.tar",
        "s.tar: c.flac: the facts say 1.0625 s, the audio holds 1.0 s",
        "s.tar: e.json: its key is 'x', not 'e'",
        "s.tar: f.flac: the facts say 0.01 s, the audio holds 0.02 s",
        "s.tar: f.flac: the facts say 16000 Hz, the audio is 8000 Hz",
    ]
    assert (check.clips, check.keys) == (3, ["c", "e", "f"])
    (tmp_path / "cut.tar").write_bytes((tmp_path / "s.tar").read_bytes()[:600])  # in a.flac
    assert check_shard(_open(tmp_path), "cut.tar").problems == [
        "cut.tar: -: cannot read the tar: unexpected end of data"
    ]


def test_a_nemo_shard_is_checked_against_its_manifest(tmp_path: Path) -> None:
    _tar(tmp_path / "audio_0.tar", [("a.flac", _flac(1600)), ("b.flac", _flac(1600))])
    lines = [
        {"audio_filepath": "a.flac", "duration": 0.1, "shard_id": 0},
        {"audio_filepath": "c.flac", "duration": 0.1, "shard_id": 0},
        {"audio_filepath": "a.flac", "duration": 0.1, "shard_id": 0},
        {"no": "path"},
    ]
    write_jsonl(tmp_path / "manifest_0.json", [json.dumps(line) for line in lines])
    check = check_shard(_open(tmp_path), "audio_0.tar", "manifest_0.json")
    assert check.problems == [
        "audio_0.tar: manifest_0.json:3: a second line for a",
        "audio_0.tar: manifest_0.json:4: not a manifest line: KeyError('audio_filepath')",
        "audio_0.tar: b.flac: no facts for it in manifest_0.json",
        "audio_0.tar: manifest_0.json (c): no audio member for it in audio_0.tar",
    ]
    assert check.clips == 1
    (tmp_path / "cuts.000000.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"\x00" * 6 + b"junk")
    broken = check_shard(_open(tmp_path), "audio_0.tar", "cuts.000000.jsonl.gz").problems
    assert broken[0].startswith("audio_0.tar: cuts.000000.jsonl.gz: cannot read the shard's side")


def test_a_shar_shard_pairs_each_clip_with_its_cut_and_its_recording_json(tmp_path: Path) -> None:
    def recording(key: str, samples: int, rate: int = 16000, **more: Any) -> bytes:
        facts = {"id": key, "num_samples": samples, "sampling_rate": rate, **more}
        return json.dumps(facts).encode()

    _tar(tmp_path / "recording.000000.tar", [
        ("a.flac", _flac(1600)), ("a.json", recording("a", 1600)),
        ("b.flac", _flac(1600)),  # no recording JSON
        ("c.json", recording("c", 1600)), ("c.flac", _flac(1600)),  # the JSON first
        ("d.flac", _flac(1600)), ("d.json", recording("x", 1600, 8000)),
    ])  # fmt: skip
    cuts = [{"id": k, "duration": 0.1} for k in "abcd"]
    gz = gzip.compress("".join(json.dumps(c) + "\n" for c in cuts).encode(), mtime=0)
    (tmp_path / "cuts.000000.jsonl.gz").write_bytes(gz)
    check = check_shard(_open(tmp_path), "recording.000000.tar", "cuts.000000.jsonl.gz")
    assert check.problems == [
        "recording.000000.tar: c.json: not right after its audio member (Lhotse reads each "
        "clip's audio, then its JSON)",
        "recording.000000.tar: b.flac: no recording JSON for it in the shard",
        "recording.000000.tar: d.json: its id is 'x', not 'd'",
        "recording.000000.tar: d.json: it says 1600 samples at 8000 Hz, the audio holds 1600 "
        "at 16000 Hz",
    ]
    assert check.clips == 4


@pytest.fixture(scope="module")
def outputs(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small shuffled WebDataset and equal NeMo outputs of two recordings."""
    from alm_spark.config import load_config
    from alm_spark.run.job import run_pipeline
    from alm_spark.testing.audiogen import with_audio
    from alm_spark.testing.datagen import generate

    root = tmp_path_factory.mktemp("verify")
    manifest = write_jsonl(
        root / "m.jsonl",
        [json.dumps(e) for e in with_audio(generate("demo", 2), root / "audio", root)],
    )
    found = {}
    for name, more in (
        ("webdataset", ["audio.shard_max_clips=3"]),
        ("nemo", ["audio.format=nemo", "audio.equal_shards=true", "audio.world_size=2"]),
        ("shar", ["audio.format=shar", "audio.shard_max_clips=4"]),
        ("shar_again", ["audio.format=shar", "audio.shard_max_clips=4", "audio.partitions=1"]),
    ):
        overrides = [f"input.manifest_path={manifest}", f"output.path={root / name}",
                     "audio.enabled=true", *more]  # fmt: skip
        run_pipeline(spark, load_config(None, overrides))
        found[name] = root / name
    return found


@pytest.mark.parametrize("layout", ["webdataset", "nemo", "shar"])
def test_a_finished_output_verifies_on_spark_and_here_alike(
    spark: Any, outputs: dict[str, Path], layout: str
) -> None:
    out = outputs[layout]
    metrics = json.loads((out / "_metrics.json").read_text())["audio"]
    here = verify_output(str(out), None, Checks(decode=True))
    there = verify_output(str(out), spark)
    assert here == dataclasses.replace(there, seconds=here.seconds)  # summed in another order
    assert there.seconds == pytest.approx(here.seconds, rel=1e-12)
    assert (here.ok, here.problems, here.clips) == (True, (), metrics["clips_written"])
    assert here.shards == here.live_shards == metrics["shards"]
    assert here.seconds == pytest.approx(metrics["seconds_written"], rel=1e-12)
    # The shard index: a line per live shard, as the shards hold them; its spread in metrics.
    (fragment,) = (out / "_shard_index").glob("*-index.json")
    index = json.loads(fragment.read_text())["shards"]
    assert [row["name"] for row in index] == metrics["shard_files"]
    assert sum(row["clips"] for row in index) == metrics["clips_written"]
    for row in index:  # its members' bytes; the file adds two zero blocks, then pads
        size = (out / "_shards" / row["name"]).stat().st_size  # to tar's 10,240-byte records
        assert (size % 10240, 1024 <= size - row["bytes"] < 1024 + 10240) == (0, True)
    assert all(1 <= row["recordings"] <= 2 for row in index)
    balance = metrics["shard_balance"]
    assert balance["clips"]["max"] == max(row["clips"] for row in index)
    assert sum(balance["hours_histogram"]["counts"]) == metrics["shards"]
    sampled = verify_output(str(out), None, Checks(sample=1, seed=4))
    assert (sampled.shards, sampled.live_shards, sampled.ok) == (1, metrics["shards"], True)


def test_a_damaged_output_fails_with_one_line_per_problem(
    spark: Any, outputs: dict[str, Path], tmp_path: Path, run_cli: Any
) -> None:
    out = tmp_path / "out"
    shutil.copytree(outputs["webdataset"], out)
    shards = sorted((out / "_shards").glob("*.tar"))
    first = shards[0]
    with tarfile.open(first) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]
    _tar(first, members[:-1])  # the last clip's JSON is gone
    _tar(shards[1], [*members[:2], *_members(shards[1])])  # the first clip again
    lost_key = members[-1][0].split(".")[0]
    twice = members[0][0].split(".")[0]
    found = verify_output(str(out), spark, Checks(max_problems=2))
    every = verify_output(str(out), None)
    assert every.problems == (
        "_metrics.json: audio.seconds_written: says " + every.problems[0].split("says ", 1)[1],
        f"_shards/{first.name}: -: the shard index says 3 clip(s), the shard holds 2",
        f"_shards/{first.name}: {lost_key}.flac: no facts for it in the shard",
        f"_shards/{shards[1].name}: -: the shard index says 2 clip(s), the shard holds 3",
        f"_shards: {twice}: the key appears in 2 clips",
    )
    assert (found.problems, found.problem_count) == (every.problems[:2], 5)
    cli = run_cli(["verify", str(out), "--max-problems", "1"])
    assert cli.code == 1
    assert cli.out.splitlines() == [
        every.problems[0],
        "... and 4 more problem(s)",
        f"verified {every.shards} shard(s), {every.clips} clip(s), "
        f"{every.seconds / 3600:.3f} h: 5 problem(s)",
    ]
    assert cli.stops == 1
    assert run_cli(["verify", str(outputs["nemo"]), "--local"]).code == 0
    missing = run_cli(["verify", str(tmp_path), "--local"])
    assert (missing.code, missing.err) == (
        2,
        f"alm-spark: error: {tmp_path}: not a finished output (no live generation in _commits/)\n",
    )
    (out / "_SUCCESS").unlink()
    unfinished = run_cli(["verify", str(out), "--local"])
    assert (unfinished.code, unfinished.err) == (
        2,
        f"alm-spark: error: {out}: no _SUCCESS: a run is writing it, or an update was "
        "interrupted (finish it with output.mode=update)\n",
    )
    assert run_cli(["verify", str(out), "output.path=x"]).err == (
        "alm-spark: error: output.path=x: verify takes spark.* settings only\n"
    )


def _members(shard: Path) -> list[tuple[str, bytes]]:
    with tarfile.open(shard) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar]  # type: ignore[union-attr]


def test_shar_shards_are_lhotse_s_layout_and_the_same_bytes_on_every_run(
    outputs: dict[str, Path],
) -> None:
    import gzip

    shards = outputs["shar"] / "_shards"
    names = sorted(p.name for p in shards.iterdir())
    count = len(names) // 2
    assert names == sorted(
        [f"cuts.{n:06d}.jsonl.gz" for n in range(count)]
        + [f"recording.{n:06d}.tar" for n in range(count)]
    )
    for n in range(count):
        cuts = gzip.decompress((shards / f"cuts.{n:06d}.jsonl.gz").read_bytes()).splitlines()
        raw = (shards / f"cuts.{n:06d}.jsonl.gz").read_bytes()
        assert raw[4:8] == b"\0\0\0\0"  # gzip's time: fixed, so reruns give the same bytes
        with tarfile.open(shards / f"recording.{n:06d}.tar") as tar:
            members = [m.name for m in tar]
        ids = [json.loads(line)["id"] for line in cuts]
        assert members == [f"{i}.{ext}" for i in ids for ext in ("flac", "json")]
    again = outputs["shar_again"] / "_shards"
    assert {p.name: p.read_bytes() for p in shards.iterdir()} == {
        p.name: p.read_bytes() for p in again.iterdir()
    }
