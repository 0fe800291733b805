"""Input identities (alm_spark.storage.inputs, FileSystem.stat): one spelling, one version."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pytest

from alm_spark.storage.fs import FileStatus, FsspecFileSystem, HadoopFileSystem, file_status
from alm_spark.storage.inputs import identify, normalize_uri


@pytest.mark.parametrize(
    ("path", "normalized"),
    [
        ("s3a://bucket/in/a.jsonl", "s3://bucket/in/a.jsonl"),
        ("s3n://bucket/a.jsonl", "s3://bucket/a.jsonl"),
        ("s3://bucket/a.jsonl", "s3://bucket/a.jsonl"),
        ("dbfs:/Volumes/cat/sch/vol/a.jsonl", "/Volumes/cat/sch/vol/a.jsonl"),
        ("gs://bucket/a.jsonl.gz", "gs://bucket/a.jsonl.gz"),
        (
            "abfss://c@acct.dfs.core.windows.net/a.jsonl",
            "abfss://c@acct.dfs.core.windows.net/a.jsonl",
        ),
        ("hdfs://nn:8020/data/a.jsonl", "hdfs://nn:8020/data/a.jsonl"),
    ],
)
def test_remote_spellings_of_one_file_are_one(path: str, normalized: str) -> None:
    assert normalize_uri(path) == normalized


def test_a_local_file_is_its_real_path(tmp_path: Path) -> None:
    real = tmp_path / "data" / "a.jsonl"
    real.parent.mkdir()
    real.write_text("{}\n")
    (tmp_path / "link").symlink_to(tmp_path / "data")
    spellings = [
        str(real),
        f"file:{real}",
        f"file://{real}",
        f"file://localhost{real}",
        str(tmp_path / "link" / "a.jsonl"),
        str(tmp_path / "data" / ".." / "data" / "a.jsonl"),
    ]
    assert {normalize_uri(s) for s in spellings} == {os.path.realpath(real)}


@pytest.mark.parametrize(
    ("info", "version"),
    [
        (
            {"size": 5, "ETag": '"9b2cf535f27731c974343645a3985328"'},
            "etag:9b2cf535f27731c974343645a3985328",
        ),
        ({"size": 5, "etag": "0x8DC2B5E4D5A1F00"}, "etag:0x8DC2B5E4D5A1F00"),
        ({"size": 5, "generation": "1733400000123456"}, "generation:1733400000123456"),
        ({"size": 5, "mtime": 1700000000.25}, "mtime:1700000000250"),
        (
            {
                "size": 5,
                "LastModified": datetime.datetime(2026, 12, 6, tzinfo=datetime.timezone.utc),
            },
            "mtime:1796515200000",
        ),
    ],
)
def test_each_stores_version_is_read(info: dict, version: str) -> None:
    assert file_status(info) == FileStatus(5, version)


def test_a_store_without_a_version_is_refused() -> None:
    with pytest.raises(OSError, match=r"x\.jsonl: the store gives no version"):
        file_status({"name": "x.jsonl", "size": 5})


def test_hadoop_and_fsspec_identify_a_local_file_alike(spark, tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n')
    os.utime(path, ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    expected = identify(FsspecFileSystem(), str(path))
    assert expected.size == 9
    assert expected.version == "mtime:1700000000123"
    assert expected.uri == os.path.realpath(path)
    assert identify(HadoopFileSystem(spark), f"file:{path}") == expected
    path.write_text('{"a": 2}\n')  # same size, new time: a new version
    assert identify(FsspecFileSystem(), str(path)).version != expected.version


def test_remote_inputs_are_identified_many_at_a_time_in_order() -> None:
    """10^5 input files on S3 are 10^5 HEADs: asked one by one they keep the driver for
    minutes, so remote identities are asked for concurrently; the order is kept."""
    import threading
    import time

    from alm_spark.storage.commits import InputFile
    from alm_spark.storage.inputs import identify_all

    class SlowStore:
        def __init__(self) -> None:
            self.active = self.most = 0
            self.lock = threading.Lock()

        def stat(self, path: str) -> FileStatus:
            with self.lock:
                self.active += 1
                self.most = max(self.most, self.active)
            time.sleep(0.05)  # a request's round trip
            with self.lock:
                self.active -= 1
            return FileStatus(len(path), f"etag:{path[-8:-6]}")

    store = SlowStore()
    paths = [f"s3a://bucket/in/{n:02d}.jsonl" for n in range(40)]
    found = identify_all(store, paths)  # type: ignore[arg-type]
    assert found == [
        InputFile(f"s3://bucket/in/{n:02d}.jsonl", 24, f"etag:{n:02d}") for n in range(40)
    ]
    assert store.most > 1
