"""Object storage for real: the commit log, the lock and shards on an S3-compatible server.

The tests start ``moto``'s server on a free loopback port (stopped by its PID) and reach
it through ``s3fs``, as executors and the driver's fsspec file system do. Spark is not
involved: it cannot write ``s3a://`` here (no hadoop-aws jar), so what our code writes
is checked at our own layer, and the server's request log tells how each file was
written: one PUT under its final name, never a temporary name copied into place.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from alm_spark.audio.repack import RepackTarget
from alm_spark.audio.tasks import cut_window_batches
from alm_spark.config import AudioConfig
from alm_spark.errors import OutputError
from alm_spark.names import SHARDS_DIR
from alm_spark.rows import AUDIO_WINDOW, KIND_SHARD
from alm_spark.storage.commits import (
    Commit,
    CommitConflict,
    CommitLog,
    DataFile,
    InputFile,
    LogState,
    live_files,
    record_path,
)
from alm_spark.storage.datafiles import StepNames
from alm_spark.storage.fs import FsspecFileSystem
from alm_spark.storage.lock import OutputLock
from alm_spark.storage.outputs import FileNames
from alm_spark.testing.audiogen import write_audio
from tests.s3server import BUCKET, S3Server

s3fs = pytest.importorskip("s3fs", reason="the s3 extra: pip install 'alm-spark[s3]'")
pytest.importorskip("moto.server", reason="moto[server] (the test extra)")

A = InputFile("s3://alm-test/in/a.jsonl", 10, "etag:1")


def test_commit_records_are_created_exclusively_on_s3(s3: S3Server) -> None:
    fs, output = FsspecFileSystem(), f"s3://{BUCKET}/log"
    commits = CommitLog(fs, output)
    state = commits.append(LogState(), Commit(1, 1, "r1", opens=True, settings={"a": 1}))
    part = DataFile("part-0001-000001-r1-00000-1.jsonl", "entries", (A.uri,))
    state = commits.append(state, Commit(2, 1, "r1", step=1, inputs=(A,), added=(part,)))
    # A rival took record 3 first: the store refuses the second create (412), we abort.
    rival = CommitLog(fs, output)
    rival.append(state, Commit(3, 1, "rival", closes=True))
    with pytest.raises(CommitConflict, match="another run committed record 3"):
        commits.append(state, Commit(3, 1, "r1", closes=True))
    assert fs.create_exclusive(record_path(output, 3), "{}") is False
    assert json.loads(fs.read_text(record_path(output, 3)))["run_id"] == "rival"
    # Readers see the live files by the log.
    assert list(live_files(fs, output)) == [part.path]
    assert CommitLog(fs, output).read().live is not None


def test_one_run_holds_an_output_on_s3(s3: S3Server) -> None:
    fs, output = FsspecFileSystem(), f"s3://{BUCKET}/locked"
    with OutputLock(fs, output, "run-1"), pytest.raises(OutputError, match="run-1"):
        OutputLock(fs, output, "run-2").acquire()
    with OutputLock(fs, output, "run-3"):  # released: the next run takes it
        pass


def _windows(recording: Path) -> pa.RecordBatch:
    rows = [
        {
            "source": "file:/in/m.jsonl", "line": 1, "audio_filepath": str(recording),
            "swift_audio_filepath": None, "audio_sample_rate": 16000.0, "position": n,
            "window": n, "start": 2.0 * n, "end": 2.0 * n + 1.5, "duration": 1.5,
            "speakers": [("a", 1.5)], "speaker_durations": [1.5], "segments": [],
            "text": f"window {n}", "audio_path": str(recording),
        }
        for n in range(5)
    ]  # fmt: skip
    return pa.RecordBatch.from_pylist(rows, schema=AUDIO_WINDOW.arrow_schema())


def _open_step(names: StepNames, root: str) -> None:
    """The step's fence, as the driver writes it before the step's jobs."""
    import fsspec

    with fsspec.open(names.fence(root), "w", auto_mkdir=True) as fence:
        fence.write("")


def _cut(batch: pa.RecordBatch, root: str) -> list[dict[str, Any]]:
    config = AudioConfig(enabled=True, shard_max_clips=2)
    names = StepNames(1, 1, "20261206T000000Z-0000abcd")
    _open_step(names, root)
    where = FileNames(root, SHARDS_DIR, names)
    out = pa.Table.from_batches(list(cut_window_batches(iter([batch]), config, where)))
    rows = zip(out.column("kind").to_pylist(), out.column("record").to_pylist(), strict=True)
    return [json.loads(record) for kind, record in rows if kind == KIND_SHARD]


def test_shards_are_uploaded_once_under_their_final_names(s3: S3Server, tmp_path: Path) -> None:
    """A task's shards on S3: one PUT per shard under its final name, bytes as on disk."""
    import fsspec

    recording = tmp_path / "a.flac"
    write_audio(recording, 12.0, 16000, 1, "flac")
    batch = _windows(recording)
    (tmp_path / "local" / SHARDS_DIR).mkdir(parents=True)  # the driver makes folders
    local = _cut(batch, str(tmp_path / "local"))
    remote = _cut(batch, f"s3://{BUCKET}/shards")
    assert [s["name"] for s in remote] == [s["name"] for s in local]
    assert [s["clips"] for s in remote] == [2, 2, 1]
    fs = fsspec.filesystem("s3")
    for shard in remote:
        data = fs.cat_file(f"{BUCKET}/shards/{shard['name']}")
        assert data == (tmp_path / "local" / shard["name"]).read_bytes()
    # Locally a hidden temporary name is renamed in its folder (free there); on S3, none.
    assert s3.puts("shards/_shards/") == Counter(f"shards/{s['name']}" for s in remote)


def test_a_numbered_shard_is_replaced_whole_and_an_aborted_one_leaves_nothing(
    s3: S3Server,
) -> None:
    import fsspec

    fs = fsspec.filesystem("s3")
    target = RepackTarget("unused", f"s3://{BUCKET}/nemo", StepNames(1, 2, "r"), 0)
    _open_step(target.names, target.output)
    for attempt in range(2):  # two attempts of one task write the same bytes
        file = target.open("_shards/audio_0.tar")
        file.write(b"same bytes")
        file.close()
        assert fs.cat_file(f"{BUCKET}/nemo/_shards/audio_0.tar") == b"same bytes", attempt
    failed = target.open("_shards/audio_1.tar")
    failed.write(b"x" * 1000)
    failed.abort()
    assert not fs.exists(f"{BUCKET}/nemo/_shards/audio_1.tar")
    assert s3.puts("nemo/_shards/") == Counter({"nemo/_shards/audio_0.tar": 2})


def test_input_identities_on_s3_are_sizes_and_etags(s3: S3Server) -> None:
    import fsspec

    from alm_spark.storage.inputs import identify, identify_all

    fs = fsspec.filesystem("s3")
    paths = [f"s3a://{BUCKET}/inputs/m{n}.jsonl" for n in range(12)]
    for n, path in enumerate(paths):
        fs.pipe_file(path.replace("s3a://", ""), b"{}\n" * (n + 1))
    found = identify_all(FsspecFileSystem(), paths)
    assert found == [identify(FsspecFileSystem(), path) for path in paths]
    assert [(f.uri, f.size) for f in found] == [
        (path.replace("s3a://", "s3://"), 3 * (n + 1)) for n, path in enumerate(paths)
    ]
    assert all(re.fullmatch(r"etag:[0-9a-f]{32}", f.version) for f in found)
